"""The per-device model that devices learn locally and the aggregator averages.

Weights (all plain floats, so FedAvg is a weighted mean of each one):

- ``hr30_mean``, ``hr30_sq_mean``: mean and E[x^2] of the device's 30 s window heart rates. Averaging
  them weighted by sample counts gives the pooled moments of all devices (law of total variance),
  i.e. a population baseline that a new device can start from.
- ``hr300_mean``, ``hr300_sq_mean``: the same for the 5 min windows (the 30 s moments stand in
  until a device has two 5 min windows).
- ``ar``: a self-supervised linear autoregression that predicts the next 30 s heart rate from the
  previous three, all centred on the device's baseline mean: ``y - mu = w . (x_t - mu, x_t-1 - mu,
  x_t-2 - mu, 1)``. Fitted by ridge regression towards the device's prior weights, so a device with
  little data stays close to the global model and one with much data becomes personal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from federated.welford import Welford

AR_ORDER = 3
AR_SIZE = AR_ORDER + 1  # three lags and a bias
RIDGE = 4.0  # pseudo-observations that pull the AR weights towards the prior
SCALAR_KEYS = ("hr30_mean", "hr30_sq_mean", "hr300_mean", "hr300_sq_mean")


@dataclass(frozen=True)
class ModelWeights:
    hr30_mean: float
    hr30_sq_mean: float
    hr300_mean: float
    hr300_sq_mean: float
    ar: tuple[float, ...] = (0.0,) * AR_SIZE

    def as_arrays(self) -> list[np.ndarray]:
        """Flower-style parameters (a list of numpy arrays), the layout FedAvg and Flower average."""
        return [
            np.array([self.hr30_mean, self.hr30_sq_mean], dtype=np.float64),
            np.array([self.hr300_mean, self.hr300_sq_mean], dtype=np.float64),
            np.array(self.ar, dtype=np.float64),
        ]

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray]) -> ModelWeights:
        hr30, hr300, ar = (np.asarray(a, dtype=np.float64) for a in arrays)
        return cls(float(hr30[0]), float(hr30[1]), float(hr300[0]), float(hr300[1]),
                   tuple(float(v) for v in ar))

    def to_json(self) -> dict[str, Any]:
        return {"hr30_mean": self.hr30_mean, "hr30_sq_mean": self.hr30_sq_mean, "hr300_mean": self.hr300_mean,
                "hr300_sq_mean": self.hr300_sq_mean, "ar": list(self.ar)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelWeights:
        ar = tuple(float(v) for v in data["ar"])
        if len(ar) != AR_SIZE:
            raise ValueError(f"ar must have {AR_SIZE} weights, got {len(ar)}")
        hr30_mean, hr30_sq_mean, hr300_mean, hr300_sq_mean = (float(data[key]) for key in SCALAR_KEYS)
        weights = cls(hr30_mean, hr30_sq_mean, hr300_mean, hr300_sq_mean, ar)
        if not all(math.isfinite(v) for a in weights.as_arrays() for v in a):
            raise ValueError("weights must be finite")
        return weights

    @property
    def hr30(self) -> tuple[float, float]:
        """(mean, standard deviation) of 30 s window heart rates."""
        return self.hr30_mean, math.sqrt(max(self.hr30_sq_mean - self.hr30_mean**2, 0.0))

    @property
    def hr300(self) -> tuple[float, float]:
        return self.hr300_mean, math.sqrt(max(self.hr300_sq_mean - self.hr300_mean**2, 0.0))


def ar_features(history: Sequence[float], mean: float) -> np.ndarray:
    """Feature vector of the AR model: the last AR_ORDER values (newest first), centred, and 1."""
    lags = [history[-1 - i] - mean for i in range(AR_ORDER)]
    return np.array([*lags, 1.0], dtype=np.float64)


def ar_predict(weights: Sequence[float], history: Sequence[float], mean: float) -> float:
    """Predicted next 30 s heart rate from the last AR_ORDER values (needs len(history) >= AR_ORDER)."""
    return mean + float(np.dot(np.asarray(weights, dtype=np.float64), ar_features(history, mean)))


@dataclass(frozen=True)
class LocalModel:
    """What one device learned from its own data (its prior is kept apart, not double counted)."""

    own30: Welford = field(default_factory=Welford)
    own300: Welford = field(default_factory=Welford)
    xtx: tuple[float, ...] = (0.0,) * (AR_SIZE * AR_SIZE)
    xty: tuple[float, ...] = (0.0,) * AR_SIZE
    ar_samples: int = 0
    prior_ar: tuple[float, ...] = (0.0,) * AR_SIZE

    def add_window(self, hr30: float) -> LocalModel:
        return _replace(self, own30=self.own30.update(hr30))

    def add_long_window(self, hr300: float) -> LocalModel:
        return _replace(self, own300=self.own300.update(hr300))

    def add_ar_sample(self, history: Sequence[float], mean: float, target: float) -> LocalModel:
        x = ar_features(history, mean)
        xtx = np.asarray(self.xtx).reshape(AR_SIZE, AR_SIZE) + np.outer(x, x)
        xty = np.asarray(self.xty) + x * (target - mean)
        return _replace(self, xtx=tuple(xtx.ravel().tolist()), xty=tuple(xty.tolist()),
                        ar_samples=self.ar_samples + 1)

    @property
    def ar(self) -> tuple[float, ...]:
        """Ridge solution towards the prior: (X'X + lambda I) w = X'y + lambda w0."""
        xtx = np.asarray(self.xtx).reshape(AR_SIZE, AR_SIZE) + RIDGE * np.eye(AR_SIZE)
        xty = np.asarray(self.xty) + RIDGE * np.asarray(self.prior_ar)
        return tuple(float(v) for v in np.linalg.solve(xtx, xty))

    @property
    def n_samples(self) -> int:
        return int(self.own30.n)

    def weights(self) -> ModelWeights | None:
        """The local update's weights; None before the device has a complete 30 s window."""
        if self.own30.n < 1:
            return None
        long = self.own300 if self.own300.n >= 2 else self.own30
        return ModelWeights(self.own30.mean, self.own30.sq_mean, long.mean, long.sq_mean, self.ar)


def _replace(model: LocalModel, **changes: Any) -> LocalModel:
    from dataclasses import replace

    return replace(model, **changes)
