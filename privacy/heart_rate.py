"""Heart rate from R-peaks (numpy only): slope energy -> threshold regions -> RR intervals."""

from __future__ import annotations

import math

import numpy as np

MIN_BPM = 20.0
MAX_BPM = 300.0
REFRACTORY_S = 0.2  # no two R-peaks closer than this (300 bpm)
SMOOTH_S = 0.08  # integration window, about one QRS width
THRESHOLD = 0.3  # fraction of the robust peak energy a QRS must reach
LOWPASS_S = 0.016  # moving-average low-pass (about 60 Hz cut-off)
SLOPE_S = 0.01  # slope span
MIN_SNR = 20.0  # 99th vs 20th percentile energy: ~5 for pure noise, >50 with QRS complexes


def detect_r_peaks(samples: np.ndarray, fs: float) -> np.ndarray:
    """Return sample indices of detected R-peaks (sorted)."""
    x = np.asarray(samples, dtype=np.float64)
    if fs <= 0 or x.shape[0] < 3 or not np.all(np.isfinite(x)):
        return np.empty(0, dtype=np.intp)
    # Band-pass: a short moving average removes high-frequency noise, then a slope over ~10 ms
    # removes baseline wander and favours the steep QRS over P/T waves (scale-free in fs).
    lp = max(1, int(round(LOWPASS_S * fs)))
    xs = np.convolve(x, np.ones(lp) / lp, mode="same") if lp > 1 else x
    h = max(1, int(round(SLOPE_S * fs)))
    slope = np.zeros_like(xs)
    slope[h:-h] = xs[2 * h :] - xs[: -2 * h]
    energy = slope**2
    win = max(1, int(round(SMOOTH_S * fs)))
    energy = np.convolve(energy, np.ones(win) / win, mode="same")
    # Order statistics via one partition (np.percentile is several times slower per call).
    m = energy.shape[0]
    lo_i, hi_i = int(0.20 * (m - 1)), int(0.99 * (m - 1))
    part = np.partition(energy, (lo_i, hi_i))
    ref, background = float(part[hi_i]), float(part[lo_i])
    # No QRS standing out from the background (flat line, pure noise): not derivable.
    if not ref > 1e-12 or ref < MIN_SNR * background:
        return np.empty(0, dtype=np.intp)
    above = energy > THRESHOLD * ref
    edges = np.diff(above.astype(np.int8))
    starts = np.flatnonzero(edges == 1) + 1
    ends = np.flatnonzero(edges == -1) + 1
    if above[0]:
        starts = np.r_[0, starts]
    if above[-1]:
        ends = np.r_[ends, above.shape[0]]
    if starts.shape[0] == 0:
        return np.empty(0, dtype=np.intp)
    # R-peak = largest absolute deviation from the region's median inside each region.
    mid = xs.shape[0] // 2
    dev = np.abs(xs - float(np.partition(xs, mid)[mid]))
    peaks = np.array([s + int(np.argmax(dev[s:e])) for s, e in zip(starts.tolist(), ends.tolist(), strict=True)])
    # Refractory merge: loop over detected beats (a handful per second), not over samples.
    min_gap = REFRACTORY_S * fs
    kept: list[int] = []
    for p in peaks.tolist():
        if kept and p - kept[-1] < min_gap:
            if dev[p] > dev[kept[-1]]:
                kept[-1] = p
            continue
        kept.append(p)
    return np.asarray(kept, dtype=np.intp)


def derive_hr_bpm(samples: np.ndarray, fs: float) -> float:
    """Heart rate in bpm from the median RR interval; ``nan`` if fewer than 2 plausible beats."""
    peaks = detect_r_peaks(samples, fs)
    if peaks.shape[0] < 2:
        return math.nan
    rr = np.diff(peaks) / float(fs)
    hr = 60.0 / float(np.median(rr))
    return hr if MIN_BPM <= hr <= MAX_BPM else math.nan
