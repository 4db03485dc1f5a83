"""privacy.heart_rate: R-peak detection on synthetic ECG."""

from __future__ import annotations

import math

import numpy as np
import pytest

from privacy.heart_rate import derive_hr_bpm, detect_r_peaks
from testkit.privacy_workload import synth_ecg


@pytest.mark.parametrize("bpm", [40.0, 60.0, 72.0, 110.0, 150.0, 190.0])
@pytest.mark.parametrize("fs", [125.0, 250.0, 500.0])
def test_hr_within_three_bpm(bpm: float, fs: float) -> None:
    rng = np.random.default_rng(int(bpm * fs))
    x = synth_ecg(bpm, fs, int(6 * fs), rng)
    assert derive_hr_bpm(x, fs) == pytest.approx(bpm, abs=3.0)


def test_peaks_land_on_r_waves() -> None:
    fs = 250.0
    x = synth_ecg(60.0, fs, 1250, np.random.default_rng(0))
    peaks = detect_r_peaks(x, fs)
    # synth_ecg puts R at 0.2 s + n * period
    assert np.allclose(peaks / fs, 0.2 + np.arange(len(peaks)), atol=0.02)


@pytest.mark.parametrize(
    "signal",
    [np.zeros(1250), np.random.default_rng(1).normal(0, 0.05, 1250), np.array([0.1, 0.2]), np.array([1.0])],
)
def test_not_derivable_gives_nan(signal: np.ndarray) -> None:
    assert math.isnan(derive_hr_bpm(signal, 250.0))


def test_non_finite_input_gives_nan() -> None:
    x = synth_ecg(70.0, 250.0, 1250, np.random.default_rng(2))
    x[10] = np.nan
    assert math.isnan(derive_hr_bpm(x, 250.0))
