"""Welford running moments: known numbers, merge = one stream, moments round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from federated.welford import Welford


def feed(values: list[float]) -> Welford:
    state = Welford()
    for value in values:
        state = state.update(value)
    return state


def test_known_numbers() -> None:
    # 2, 4, 4, 4, 5, 5, 7, 9: mean 5, population variance 4, sample variance 32/7.
    state = feed([2, 4, 4, 4, 5, 5, 7, 9])
    assert state.n == 8 and state.mean == 5.0 and state.m2 == 32.0
    assert state.variance == 4.0 and state.std == 2.0
    assert state.sample_variance == pytest.approx(32 / 7)
    assert state.sq_mean == 29.0  # (4+16+16+16+25+25+49+81) / 8


def test_empty_and_single() -> None:
    assert math.isnan(Welford().variance) and math.isnan(Welford().std)
    one = Welford().update(72.0)
    assert (one.n, one.mean, one.variance) == (1.0, 72.0, 0.0)
    assert math.isnan(one.sample_variance)


def test_numerically_stable_for_large_offsets() -> None:
    # The textbook sum-of-squares formula loses every digit here; Welford keeps them.
    state = feed([1e9 + 4, 1e9 + 7, 1e9 + 13, 1e9 + 16])
    assert state.mean == 1e9 + 10 and state.variance == pytest.approx(22.5)


def test_merge_equals_one_stream() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(80, 12, 101).tolist()
    whole = feed(values)
    merged = feed(values[:37]).merge(feed(values[37:]))
    assert merged.n == whole.n
    assert merged.mean == pytest.approx(whole.mean, rel=1e-12)
    assert merged.m2 == pytest.approx(whole.m2, rel=1e-10)
    assert Welford().merge(whole) == whole and whole.merge(Welford()) == whole


def test_from_moments_is_a_prior_of_pseudo_observations() -> None:
    prior = Welford.from_moments(4, 70.0, 70.0**2 + 25.0)  # 4 pseudo-windows, 70 +- 5 bpm
    assert (prior.n, prior.mean, prior.variance) == (4.0, 70.0, 25.0)
    # Four windows at 80 bpm pull the mean half way.
    assert prior.merge(feed([80.0] * 4)).mean == 75.0
