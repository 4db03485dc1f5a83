"""FedAvg with known numbers: weights by n_samples, one client, empty round, order independence."""

from __future__ import annotations

import itertools

import pytest

from federated.fedavg import ClientUpdate, fedavg
from federated.model import ModelWeights


def weights(hr: float, ar0: float = 0.0) -> ModelWeights:
    return ModelWeights(hr, hr * hr + 16.0, hr, hr * hr + 4.0, (ar0, 0.0, 0.0, 1.0))


def test_weighted_by_n_samples() -> None:
    result = fedavg([ClientUpdate("a", weights(60.0, 0.5), 1), ClientUpdate("b", weights(90.0, -0.1), 3)])
    assert result is not None
    assert result.n_samples == 4 and result.clients == 2
    assert result.weights.hr30_mean == pytest.approx((60.0 * 1 + 90.0 * 3) / 4)  # 82.5
    assert result.weights.ar[0] == pytest.approx((0.5 - 0.3) / 4)  # 0.05
    assert result.weights.ar[3] == pytest.approx(1.0)
    # Pooled moments: E[x^2] averaged, so the variance includes the spread between devices.
    mean, std = result.weights.hr30
    assert mean == pytest.approx(82.5)
    expected_sq = (60.0**2 + 16.0) * 0.25 + (90.0**2 + 16.0) * 0.75
    assert std == pytest.approx((expected_sq - 82.5**2) ** 0.5)


def test_one_client_is_returned_unchanged() -> None:
    result = fedavg([ClientUpdate("a", weights(71.5, 0.3), 17)])
    assert result is not None and result.weights == weights(71.5, 0.3) and result.n_samples == 17


def test_empty_round() -> None:
    assert fedavg([]) is None
    assert fedavg([ClientUpdate("a", weights(70.0), 0)]) is None  # no samples, no information


def test_same_bits_in_any_arrival_order() -> None:
    updates = [ClientUpdate(f"p{i}", weights(55.0 + 7.3 * i, 0.01 * i), 3 + i) for i in range(6)]
    results = {fedavg(list(order)) for order in itertools.permutations(updates)}
    assert len(results) == 1  # bit-identical, not only approximately equal
