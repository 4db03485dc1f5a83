"""Synthetic anonymization windows shared by the privacy benchmark and tests (numpy only)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from privacy.model import Frame
from privacy.pseudonym import pseudonymize

BENCH_SECRET = b"benchmark-secret-not-for-production"
SEXES = np.array(["F", "M", "U"])


@dataclass(frozen=True)
class Population:
    """Raw per-patient attributes (the 'patient table' before anonymization)."""

    patient_ids: list[str]
    pids: list[str]
    age: np.ndarray  # int64
    sex: np.ndarray  # str
    zip: np.ndarray  # str
    hr: np.ndarray  # true heart rate used to synthesize the ECG
    sensitive: list[str | None]


def make_population(n_patients: int, seed: int = 0, n_zip_areas: int = 40) -> Population:
    """Patients with a plausible QI distribution: adult ages, 3 sexes, clustered 5-digit zips."""
    rng = np.random.default_rng(seed)
    ids = [f"MRN-{seed:03d}-{i:07d}" for i in range(n_patients)]
    pids = [pseudonymize(pid, BENCH_SECRET) for pid in ids]
    age = np.clip(np.round(rng.normal(58, 17, n_patients)), 0, 120).astype(np.int64)
    sex = SEXES[rng.choice(3, size=n_patients, p=[0.49, 0.49, 0.02])]
    areas = 10000 + rng.choice(np.arange(n_zip_areas) * 137 % 90000, size=n_patients)
    # Zipf-like: a few areas hold most patients, as around a hospital.
    zip_int = (areas // 100) * 100 + rng.integers(0, 100, n_patients) % (1 + rng.integers(1, 30, n_patients))
    zips = np.array([f"{z:05d}" for z in zip_int.tolist()])
    hr = rng.uniform(50, 110, n_patients)
    diag = ["I48", "I10", "I21", "R00", None]
    sensitive = [diag[i] for i in rng.integers(0, len(diag), n_patients).tolist()]
    return Population(ids, pids, age, sex, zips, hr, sensitive)


def synth_ecg(hr_bpm: float, fs: float, n: int, rng: np.random.Generator, t0: float = 0.0) -> np.ndarray:
    """Gaussian P-QRS-T beats at ``hr_bpm`` plus baseline wander and noise (millivolts)."""
    t = t0 + np.arange(n) / fs
    period = 60.0 / hr_bpm
    beats = np.arange(math.floor(t[0] / period) - 1, math.ceil(t[-1] / period) + 2) * period + 0.2
    d = t[None, :] - beats[:, None]
    x = (
        1.1 * np.exp(-0.5 * (d / 0.012) ** 2)
        + 0.25 * np.exp(-0.5 * ((d - 0.25) / 0.045) ** 2)
        + 0.1 * np.exp(-0.5 * ((d + 0.16) / 0.025) ** 2)
    ).sum(axis=0)
    return x + 0.08 * np.sin(2 * np.pi * 0.3 * t) + rng.normal(0, 0.02, n)


def make_window(
    pop: Population,
    frames_per_patient: int = 5,
    samples_per_frame: int = 250,
    fs: float = 250.0,
    t0_ms: int = 1_763_812_800_000,
    hr_given_fraction: float = 0.5,
    seed: int = 0,
    patients: np.ndarray | None = None,
) -> list[Frame]:
    """Frames of one window: every (selected) patient sends ``frames_per_patient`` frames."""
    rng = np.random.default_rng(seed)
    idx = np.arange(len(pop.pids)) if patients is None else np.asarray(patients)
    frames: list[Frame] = []
    dt = samples_per_frame / fs
    for i in idx.tolist():
        sig = synth_ecg(float(pop.hr[i]), fs, frames_per_patient * samples_per_frame, rng)
        given = bool(rng.random() < hr_given_fraction)
        qi = {"age": int(pop.age[i]), "sex": str(pop.sex[i]), "zip": str(pop.zip[i])}
        for j in range(frames_per_patient):
            frames.append(
                Frame(
                    pid=pop.pids[i],
                    lead="II",
                    ts_ms=t0_ms + round(j * dt * 1000),
                    fs=fs,
                    samples=sig[j * samples_per_frame : (j + 1) * samples_per_frame].copy(),
                    qi=qi,
                    hr_bpm=float(round(pop.hr[i], 1)) if given else math.nan,
                    sensitive=pop.sensitive[i],
                )
            )
    return frames
