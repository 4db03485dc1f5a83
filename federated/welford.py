"""Running mean and variance (Welford 1962), mergeable (Chan et al. 1979), picklable."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Welford:
    """Count, mean and sum of squared deviations (M2) of a stream of numbers.

    Immutable: ``update`` returns a new value, so a state read from Flink keyed state is never
    changed in place by accident.
    """

    n: float = 0.0  # float: a prior may count for a non-integer number of pseudo-observations
    mean: float = 0.0
    m2: float = 0.0

    def update(self, x: float) -> Welford:
        n = self.n + 1.0
        delta = x - self.mean
        mean = self.mean + delta / n
        return Welford(n, mean, self.m2 + delta * (x - mean))

    def merge(self, other: Welford) -> Welford:
        """The statistics of both streams together (Chan, Golub, LeVeque)."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * other.n / n
        return Welford(n, mean, self.m2 + other.m2 + delta * delta * self.n * other.n / n)

    @property
    def variance(self) -> float:
        """Population variance (M2 / n); nan while empty."""
        return self.m2 / self.n if self.n > 0 else math.nan

    @property
    def sample_variance(self) -> float:
        return self.m2 / (self.n - 1.0) if self.n > 1 else math.nan

    @property
    def std(self) -> float:
        return math.sqrt(max(self.variance, 0.0)) if self.n > 0 else math.nan

    @property
    def sq_mean(self) -> float:
        """E[x^2]: with the mean, the moments that FedAvg can average (pooled moments)."""
        return self.variance + self.mean * self.mean if self.n > 0 else math.nan

    @classmethod
    def from_moments(cls, n: float, mean: float, sq_mean: float) -> Welford:
        """A Welford state of ``n`` (pseudo-)observations with this mean and E[x^2]."""
        variance = max(sq_mean - mean * mean, 0.0)
        return cls(float(n), float(mean), float(n) * variance)
