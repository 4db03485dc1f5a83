"""testkit.cardio_evaluation and testkit.cardio_synthetic: matching with known numbers, exact synthetic beat times."""

from __future__ import annotations

import numpy as np

from testkit.cardio_evaluation import agreement, compare, consensus, match_pairs
from testkit.cardio_synthetic import synthetic_ecg


def test_compare_counts_one_to_one_within_tolerance() -> None:
    ref = np.array([1000.0, 2000.0, 3000.0, 4000.0])
    det = np.array([1049.0, 1990.0, 2005.0, 3051.0, 5000.0])
    m = compare(ref, det)
    # 1000<->1049 and 2000<->2005 (closest wins, 1990 is left over); 3000 has no match within 50 ms.
    assert (m.true_positives, m.false_negatives, m.false_positives) == (2, 2, 3)
    assert m.sensitivity == 0.5 and m.ppv == 0.4
    np.testing.assert_allclose(sorted(m.errors_ms), [5.0, 49.0])
    assert match_pairs(np.array([]), det).shape == (0, 2)


def test_agreement_ignores_disputed_beats() -> None:
    a = np.array([1000.0, 2000.0, 3000.0, 4000.0])  # reference A finds a beat at 4000 that B misses
    b = np.array([1010.0, 2010.0, 3010.0])
    agreed, disputed = consensus(a, b)
    np.testing.assert_allclose(agreed, [1005.0, 2005.0, 3005.0])
    np.testing.assert_allclose(disputed, [4000.0])
    result = agreement(np.array([1000.0, 3000.0, 4000.0, 6000.0]), a, b)
    assert (result.hits, result.misses, result.on_disputed, result.extra) == (2, 1, 1, 1)
    assert result.sensitivity == 2 / 3 and result.ppv == 2 / 3


def test_synthetic_beats_sit_on_the_r_waves() -> None:
    ecg = synthetic_ecg(20.0, 500.0, 70.0, seed=1)
    idx = np.round(ecg.beat_times_s * 500).astype(int)
    # Each true beat time is the local maximum of the clean signal within +-100 ms.
    for i in idx:
        window = ecg.signal[i - 50 : i + 51]
        assert abs(int(np.argmax(window)) - 50) <= 1
    rr = np.diff(ecg.beat_times_s)
    assert 60 / rr.mean() == np.clip(60 / rr.mean(), 65, 75)


def test_synthetic_noise_levels_and_pvcs() -> None:
    clean = synthetic_ecg(60.0, 360.0, 80.0, seed=3)
    noisy = synthetic_ecg(60.0, 360.0, 80.0, seed=3, snr_db=6.0)
    noise = noisy.signal - clean.signal
    snr = 10 * np.log10(np.mean((clean.signal - clean.signal.mean()) ** 2) / np.mean(noise**2))
    assert abs(snr - 6.0) < 0.3
    pvc = synthetic_ecg(120.0, 360.0, 80.0, seed=3, pvc_fraction=0.1)
    assert 0.05 < pvc.is_pvc.mean() < 0.15
    assert np.all(np.diff(pvc.beat_times_s) >= 0.22)
