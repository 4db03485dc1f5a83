"""Optional DP-FedAvg on the local updates: clip + Gaussian noise (off by default).

Each device's update is clipped, in a normalised weight space, to L2 norm ``clip_norm`` around a
fixed public reference, and Gaussian noise with standard deviation ``noise_multiplier * clip_norm``
is added to every coordinate before the update leaves the device's operator (so the published
local update, and everything averaged from it, is noised: McMahan et al. 2018, "Learning
Differentially Private Recurrent Language Models", with the noise added per client as in local DP).

One release is then the Gaussian mechanism with L2 sensitivity ``2 * clip_norm`` (any two clipped
updates differ by at most that) and sigma = ``noise_multiplier * clip_norm``; for epsilon < 1 it is
(epsilon, delta)-DP with ``epsilon = 2 * sqrt(2 ln(1.25/delta)) / noise_multiplier`` (Dwork & Roth
2014, Thm. A.1). Releases of one device compose over rounds; docs/anomalies.md has the numbers.

The noise is drawn from a generator seeded with HMAC(secret, pid, round): replays add exactly the
same noise (identical update ids and content after a restore), yet nobody without the secret can
predict or subtract it.
"""

from __future__ import annotations

import hashlib
import hmac
import math

import numpy as np

from federated.model import AR_SIZE, ModelWeights

# Normalisation: heart rates in 100 bpm, squared ones in 10^4 bpm^2, AR weights as they are, so
# one clip norm suits every coordinate.
SCALE = np.array([100.0, 1e4, 100.0, 1e4] + [1.0] * AR_SIZE)
# Public reference the deltas are measured from: 75 +- 10 bpm, no autoregression.
REFERENCE = ModelWeights(75.0, 75.0**2 + 100.0, 75.0, 75.0**2 + 25.0)


def to_vector(weights: ModelWeights) -> np.ndarray:
    return np.concatenate(weights.as_arrays()) / SCALE


def from_vector(vector: np.ndarray) -> ModelWeights:
    raw = vector * SCALE
    return ModelWeights.from_arrays([raw[0:2], raw[2:4], raw[4:]])


def clip(delta: np.ndarray, clip_norm: float) -> np.ndarray:
    norm = float(np.linalg.norm(delta))
    return delta if norm <= clip_norm else delta * (clip_norm / norm)


def noise_generator(secret: bytes, pid: str, round_number: int) -> np.random.Generator:
    digest = hmac.new(secret, f"dp-fedavg|{pid}|{round_number}".encode(), hashlib.sha256).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "big"))


def privatize(weights: ModelWeights, *, clip_norm: float, noise_multiplier: float, secret: bytes, pid: str,
              round_number: int) -> ModelWeights:
    """Clipped and noised copy of a device's weights (the device keeps its exact model)."""
    if clip_norm <= 0 or noise_multiplier < 0:
        raise ValueError("clip_norm must be > 0 and noise_multiplier >= 0")
    reference = to_vector(REFERENCE)
    delta = clip(to_vector(weights) - reference, clip_norm)
    noise = noise_generator(secret, pid, round_number).normal(0.0, noise_multiplier * clip_norm, delta.shape)
    return from_vector(reference + delta + noise)


def epsilon_one_release(noise_multiplier: float, delta: float = 1e-5) -> float:
    """Classical Gaussian-mechanism epsilon of one local update (valid where it is < 1)."""
    if noise_multiplier <= 0:
        return math.inf
    return 2.0 * math.sqrt(2.0 * math.log(1.25 / delta)) / noise_multiplier
