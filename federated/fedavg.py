"""FedAvg (McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks from
Decentralized Data", Algorithm 1): the global weights are the mean of the clients' weights,
each weighted by its number of training samples n_k / sum(n_k).

Deterministic to the last bit: clients are summed in the order of their pid, never in arrival
order (floating-point addition is not associative), so a replay produces the same global model.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from federated.model import ModelWeights


@dataclass(frozen=True)
class ClientUpdate:
    pid: str
    weights: ModelWeights
    n_samples: int


@dataclass(frozen=True)
class Aggregate:
    weights: ModelWeights
    n_samples: int
    clients: int


def fedavg(updates: Iterable[ClientUpdate]) -> Aggregate | None:
    """Weighted mean of the clients' weights; None for an empty round (nothing to average).

    Clients with n_samples <= 0 carry no information and are left out.
    """
    usable = sorted((u for u in updates if u.n_samples > 0), key=lambda u: u.pid)
    if not usable:
        return None
    total = sum(u.n_samples for u in usable)
    layers = [np.zeros_like(a) for a in usable[0].weights.as_arrays()]
    for update in usable:
        share = update.n_samples / total
        for layer, array in zip(layers, update.weights.as_arrays(), strict=True):
            layer += share * array
    return Aggregate(ModelWeights.from_arrays(layers), total, len(usable))
