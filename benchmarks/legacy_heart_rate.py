"""The R-peak/HR code privacy.heart_rate used before it switched to the streaming detector (cardio/),
kept unchanged as the baseline of benchmarks/beat_detection_benchmark.py (section "HR fill").

Original docstring: heart rate from R-peaks, vectorized over many signals at once (numpy only).

Per signal: band-pass (short moving average, then a ~10 ms slope), slope energy smoothed over one
QRS width, a threshold relative to the signal's own 99th-percentile energy, R-peak = the largest
deviation from the median inside its +-200 ms neighbourhood (refractory period) where the energy is
above threshold; HR = 60 / median RR. Signals without QRS standing out from the background
(flat line, pure noise) or with < 2 beats give ``nan``.
"""

from __future__ import annotations

import math

import numpy as np

MIN_BPM = 20.0
MAX_BPM = 300.0
REFRACTORY_S = 0.2  # no two R-peaks closer than this (300 bpm)
SMOOTH_S = 0.08  # energy integration window, about one QRS width
THRESHOLD = 0.3  # fraction of the robust peak energy a QRS must reach
LOWPASS_S = 0.016  # moving-average low-pass (about 60 Hz cut-off)
SLOPE_S = 0.01  # slope span
MIN_SNR = 20.0  # 99th vs 20th percentile energy: ~5 for pure noise, >50 with QRS complexes


def _moving_average(x: np.ndarray, w: int) -> np.ndarray:
    """Centered moving average along axis 1 with zero padding (like np.convolve mode='same')."""
    if w <= 1:
        return x
    left = w // 2
    padded = np.pad(x, ((0, 0), (left + 1, w - 1 - left)))
    cs = np.cumsum(padded, axis=1)
    return (cs[:, w:] - cs[:, :-w]) / w


def _forward_max(a: np.ndarray, r: int) -> np.ndarray:
    """m[:, i] = max(a[:, i+1 .. i+r]) (-inf past the end), by doubling: O(log r) passes."""
    n = a.shape[1]
    m = np.empty_like(a)
    m[:, : n - 1] = a[:, 1:]
    m[:, n - 1] = -np.inf
    span = 1
    while span < r and span < n:
        step = min(span, r - span, n - 1)
        # In place; numpy buffers the overlapping operands. The tail keeps its shorter window,
        # which is exactly the max up to the end of the signal.
        np.maximum(m[:, : n - step], m[:, step:], out=m[:, : n - step])
        span += step
    return m


CHUNK_ROWS = 128  # rows per pass: keeps the temporaries cache-sized instead of 50 MB each


def detect_r_peaks_batch(signals: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """R-peaks of each row of ``signals`` (m x n, one sampling rate): ``(rows, cols)`` sorted."""
    x = np.atleast_2d(np.asarray(signals, dtype=np.float64))
    if x.shape[0] <= CHUNK_ROWS:
        return _detect_chunk(x, fs)
    parts = [_detect_chunk(x[i : i + CHUNK_ROWS], fs) for i in range(0, x.shape[0], CHUNK_ROWS)]
    rows = np.concatenate([r + i * CHUNK_ROWS for i, (r, _) in enumerate(parts)])
    cols = np.concatenate([c for _, c in parts])
    return rows, cols


def _detect_chunk(x: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    m, n = x.shape
    empty = (np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp))
    h = max(1, round(SLOPE_S * fs))
    if fs <= 0 or m == 0 or n < 2 * h + 3:
        return empty
    finite = np.all(np.isfinite(x), axis=1)
    x = np.where(finite[:, None], x, 0.0)
    xs = _moving_average(x, max(1, round(LOWPASS_S * fs)))
    # The slope removes baseline wander and favours the steep QRS over P/T waves.
    slope = np.zeros_like(xs)
    slope[:, h:-h] = xs[:, 2 * h :] - xs[:, : -2 * h]
    energy = _moving_average(slope * slope, max(1, round(SMOOTH_S * fs)))
    lo_i, hi_i = int(0.20 * (n - 1)), int(0.99 * (n - 1))
    part = np.partition(energy, (lo_i, hi_i), axis=1)
    ref, background = part[:, hi_i], part[:, lo_i]
    usable = finite & (ref > 1e-12) & (ref >= MIN_SNR * background)
    above = (energy > THRESHOLD * ref[:, None]) & usable[:, None]
    mid = n // 2
    dev = np.abs(xs - np.partition(xs, mid, axis=1)[:, mid : mid + 1])
    r = max(1, round(REFRACTORY_S * fs))
    # Strictly larger than the previous r samples, >= the next r: one peak per neighbourhood,
    # so detected peaks are always more than the refractory period apart.
    left = _forward_max(dev[:, ::-1], r)[:, ::-1]
    right = _forward_max(dev, r)
    peaks = above & (dev > left) & (dev >= right)
    rows, cols = np.nonzero(peaks)
    return rows, cols


def derive_hr_bpm_batch(signals: np.ndarray, fs: float) -> np.ndarray:
    """Heart rate (bpm) per row of ``signals`` (m x n); ``nan`` where not derivable."""
    x = np.atleast_2d(np.asarray(signals, dtype=np.float64))
    m = x.shape[0]
    out = np.full(m, np.nan)
    rows, cols = detect_r_peaks_batch(x, fs)
    if rows.size < 2:
        return out
    same = rows[1:] == rows[:-1]
    rr_rows = rows[1:][same]
    rr = (cols[1:] - cols[:-1])[same] / float(fs)
    if rr.size == 0:
        return out
    # Per-row median of a ragged set: sort by (row, rr), then pick the middle of each run.
    order = np.lexsort((rr, rr_rows))
    rr_rows, rr = rr_rows[order], rr[order]
    counts = np.bincount(rr_rows, minlength=m)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    has = counts > 0
    lo = starts[has] + (counts[has] - 1) // 2
    hi = starts[has] + counts[has] // 2
    median = (rr[lo] + rr[hi]) / 2.0
    hr = 60.0 / median
    hr[(hr < MIN_BPM) | (hr > MAX_BPM)] = np.nan
    out[has] = hr
    return out


def detect_r_peaks(samples: np.ndarray, fs: float) -> np.ndarray:
    """Sample indices of the R-peaks of one signal (sorted)."""
    _, cols = detect_r_peaks_batch(np.asarray(samples, dtype=np.float64)[None, :], fs)
    return cols.astype(np.intp)


def derive_hr_bpm(samples: np.ndarray, fs: float) -> float:
    """Heart rate in bpm of one signal from the median RR interval; ``nan`` if not derivable."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1 or x.shape[0] == 0:
        return math.nan
    return float(derive_hr_bpm_batch(x[None, :], fs)[0])
