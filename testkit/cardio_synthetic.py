"""Synthetic ECG whose beat times are known exactly, for measuring detectors.

Each beat is a sum of Gaussian waves (P, Q, R, S, T as in devstack.ecg_data, with beat-to-beat
amplitude and width variation); the beat time is the centre of its R wave (for an ectopic beat, of
its main deflection), so the ground truth is exact by construction. RR intervals follow an HR
trajectory (a mean HR, slow drifts, respiratory sinus arrhythmia and random variability), optionally
with premature ventricular beats (wide, tall, no P wave, compensatory pause). Noise: white Gaussian
at a given SNR (power of the clean ECG over power of the noise), baseline wander (respiration-like
sinusoids 0.1-0.5 Hz of a given amplitude), optional mains hum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# (offset from R in s at 60 bpm, amplitude mV, width s); P/T offsets scale with sqrt(RR).
NORMAL_WAVES = (
    (-0.20, 0.15, 0.025),  # P
    (-0.03, -0.12, 0.010),  # Q
    (0.00, 1.20, 0.012),  # R
    (0.03, -0.25, 0.010),  # S
    (0.30, 0.30, 0.060),  # T
)
# Premature ventricular beat: one wide main deflection, a discordant T wave, no P wave.
PVC_WAVES = (
    (0.00, 1.6, 0.035),
    (0.06, -0.5, 0.030),
    (0.32, -0.45, 0.070),
)
PVC_MIN_COUPLING_S = 0.30  # shorter coupling (R-on-T) is rare; at 170 bpm 0.6 RR would be 0.21 s


@dataclass(frozen=True)
class SyntheticEcg:
    signal: np.ndarray  # mV
    fs: float
    beat_times_s: np.ndarray  # exact R times from the start of the signal
    is_pvc: np.ndarray  # bool per beat

    @property
    def beat_times_ms(self) -> np.ndarray:
        return self.beat_times_s * 1000.0


def beat_times(
    seconds: float,
    hr_bpm: float,
    rng: np.random.Generator,
    *,
    hrv: float = 0.03,
    hr_drift_bpm: float = 0.0,
    pvc_fraction: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """R times (s) in [0.3, seconds - 0.3] and a PVC flag per beat."""
    times: list[float] = []
    pvc: list[bool] = []
    drift_phase = rng.uniform(0, 2 * math.pi)
    rsa_phase = rng.uniform(0, 2 * math.pi)
    t = rng.uniform(0.3, 0.3 + 60.0 / hr_bpm)
    previous_pvc = False
    while t < seconds - 0.3:
        times.append(t)
        pvc.append(previous_pvc)
        hr = hr_bpm + hr_drift_bpm * math.sin(2 * math.pi * t / 60.0 + drift_phase)
        rr = 60.0 / max(hr, 20.0)
        # RSA (0.25 Hz, half of the variability) plus random beat-to-beat variability.
        rr *= 1.0 + 0.5 * hrv * math.sin(2 * math.pi * 0.25 * t + rsa_phase) + hrv * rng.standard_normal() * 0.5
        if previous_pvc:
            rr *= 1.4  # compensatory pause after a PVC (coupling 0.6 + pause 1.4 = 2 RR)
            previous_pvc = False
        elif pvc_fraction > 0 and rng.random() < pvc_fraction:
            rr = max(0.6 * rr, PVC_MIN_COUPLING_S)
            previous_pvc = True
        t += max(rr, 0.22)
    return np.array(times), np.array(pvc, dtype=bool)


def render(times: np.ndarray, is_pvc: np.ndarray, seconds: float, fs: float, rng: np.random.Generator) -> np.ndarray:
    """Clean ECG (mV) with a beat at each time; per-beat amplitude (+-15 %) and width (+-10 %) vary."""
    n = round(seconds * fs)
    t = np.arange(n) / fs
    out = np.zeros(n)
    rr = np.diff(times, prepend=times[0] - 60.0 / 70.0) if times.size else times
    for beat, pvc, interval in zip(times.tolist(), is_pvc.tolist(), rr.tolist(), strict=True):
        waves = PVC_WAVES if pvc else NORMAL_WAVES
        stretch = math.sqrt(max(interval, 0.25))
        gain = 1.0 + 0.15 * (2 * rng.random() - 1)
        widen = 1.0 + 0.10 * (2 * rng.random() - 1)
        polarity = -1.0 if pvc and rng.random() < 0.3 else 1.0
        for offset, amplitude, width in waves:
            centre = beat + (offset * stretch if abs(offset) > 0.05 else offset)
            sigma = width * widen
            low = max(0, int((centre - 5 * sigma) * fs))
            high = min(n, int((centre + 5 * sigma) * fs) + 2)
            if low < high:
                seg = t[low:high]
                out[low:high] += polarity * gain * amplitude * np.exp(-0.5 * ((seg - centre) / sigma) ** 2)
    return out


def synthetic_ecg(
    seconds: float,
    fs: float,
    hr_bpm: float,
    seed: int,
    *,
    snr_db: float | None = None,
    wander_mv: float = 0.0,
    mains_mv: float = 0.0,
    hrv: float = 0.03,
    hr_drift_bpm: float = 0.0,
    pvc_fraction: float = 0.0,
) -> SyntheticEcg:
    """A synthetic record with exact beat times. ``snr_db=None``: no white noise."""
    rng = np.random.default_rng(seed)
    times, pvc = beat_times(seconds, hr_bpm, rng, hrv=hrv, hr_drift_bpm=hr_drift_bpm, pvc_fraction=pvc_fraction)
    clean = render(times, pvc, seconds, fs, rng)
    signal = clean.copy()
    t = np.arange(clean.size) / fs
    if snr_db is not None:
        power = float(np.mean((clean - clean.mean()) ** 2))
        signal += rng.standard_normal(clean.size) * math.sqrt(power / 10 ** (snr_db / 10))
    if wander_mv > 0:
        # Respiration (0.2-0.35 Hz) plus a slower drift (0.05-0.15 Hz), peak amplitude wander_mv.
        f1, f2 = rng.uniform(0.2, 0.35), rng.uniform(0.05, 0.15)
        w = np.sin(2 * np.pi * f1 * t + rng.uniform(0, 2 * np.pi)) + 0.7 * np.sin(
            2 * np.pi * f2 * t + rng.uniform(0, 2 * np.pi)
        )
        signal += wander_mv * w / 1.7
    if mains_mv > 0:
        signal += mains_mv * np.sin(2 * np.pi * 50.0 * t + rng.uniform(0, 2 * np.pi))
    return SyntheticEcg(signal=signal, fs=fs, beat_times_s=times, is_pvc=pvc)
