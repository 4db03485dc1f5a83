"""devstack.population: the realistic population shared by the simulator and the benchmarks."""

from __future__ import annotations

import numpy as np

from devstack.population import (
    MAX_AGE,
    Stay,
    benchmark_ward,
    hospital_age_weights,
    ward_age_weights,
    ward_profile,
)


def test_hospital_age_weights_follow_census_times_hospital_rate() -> None:
    w = hospital_age_weights()
    assert w.shape == (MAX_AGE + 1,) and np.isclose(w.sum(), 1.0) and np.all(w >= 0)
    per_decade = [w[a : a + 10].sum() for a in range(0, 100, 10)]
    assert per_decade[8] > 2 * per_decade[3]  # 80-89 in hospital far more often than 30-39
    assert w[90:].sum() > 0 and w[104] < w[90]


def test_ward_profiles_shape_age_and_sex() -> None:
    geriatrics = ward_age_weights(ward_profile(3))
    assert ward_profile(3).name == "geriatrics" and geriatrics[:70].sum() == 0
    gyn = benchmark_ward(1, 4, 200, churn=False)
    assert gyn.profile.name == "gynecology"
    assert np.mean([p.sex == "F" for p in gyn.patients]) > 0.9
    cardio = benchmark_ward(1, 1, 200, churn=False)
    assert np.mean([p.sex == "F" for p in cardio.patients]) < 0.5


def test_benchmark_wards_are_deterministic_and_churn_keeps_the_window_size() -> None:
    a = benchmark_ward(7, 0, 20, churn=True)
    assert a == benchmark_ward(7, 0, 20, churn=True)
    assert len(benchmark_ward(7, 0, 20, churn=False).patients) == 20
    assert len(a.patients) == round(20 / 0.7)
    present = [sum(p.stay.start <= t < p.stay.end for p in a.patients) for t in np.linspace(0, 0.99, 50)]
    assert 10 <= np.mean(present) <= 30
    assert all(0.0 <= p.stay.start < p.stay.end <= 1.0 for p in a.patients)


def test_stay_frames() -> None:
    assert Stay().frames(12) == (0, 12)
    assert Stay(0.5, 0.75).frames(12) == (6, 9)
    assert Stay(0.99, 1.0).frames(12) == (11, 12)  # at least one frame
