"""A realistic hospital population for the simulator and the benchmarks (numpy only, deterministic).

* Ages per year of age: a census age pyramid (Germany) weighted by how often each age group is in
  hospital, then shaped per ward type (a geriatric ward is old, a gynecology ward is female and
  mostly 18-50, ...).
* Sex: a female share per ward type (cardiology ~38 %, geriatrics ~62 %, ...), 0.5 % "U".
* Zips: a few dominant 3-digit prefixes around the hospital (Zipf weights) and a long tail of
  other prefixes; 2-digit suffixes Zipf-distributed within a prefix.
* Churn: every patient is present for a random 40-100 % of the run; a ward may start late or stop
  early (then its patients' stays fall inside the ward's active span).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Population of Germany by 5-year age group (0-4, 5-9, ..., 85-89, 90+), thousands, end of 2022,
# approximate figures after Destatis (GENESIS table 12411-0005, population by single year of age).
# What matters here is the shape of the pyramid (baby boomers at 55-64, a thin 90+), not the digits.
CENSUS_5Y_THOUSANDS = (
    3960, 3970, 3870, 3910, 4560, 4880, 5600, 5570, 5290, 4980,
    6330, 6990, 6250, 5270, 4330, 3350, 3840, 1790, 900,
)  # fmt: skip
# Hospital cases per 100,000 inhabitants by age group, approximate figures after Destatis' hospital
# diagnosis statistics (same bands): being in hospital is ~5x as likely at 80 as at 30.
HOSPITAL_RATE_PER_100K = (
    22000, 6500, 6000, 9500, 11000, 12000, 13000, 13000, 13000, 14500,
    18000, 22000, 27000, 33000, 40000, 48000, 58000, 68000, 75000,
)  # fmt: skip
MAX_AGE = 104  # the 90+ band is spread over 90..104 with a falling weight

SEX_UNKNOWN_SHARE = 0.005
# Prefixes near the hospital (Berlin-like), each with a Zipf weight, and how many patients come from
# the long tail of other prefixes.
DOMINANT_ZIP_PREFIXES = ("101", "104", "120", "133", "140", "106", "122", "125")
ZIP_TAIL_SHARE = 0.18
ZIP_TAIL_PREFIXES = 150
ZIP_SUFFIXES = 25


@dataclass(frozen=True)
class WardProfile:
    name: str
    female_share: float
    age_min: int = 0
    age_max: int = MAX_AGE
    age_tilt: float = 0.0  # weight *= exp(tilt * (age - 50) / 10): > 0 older, < 0 younger


WARD_PROFILES = (
    WardProfile("internal-medicine", 0.50),
    WardProfile("cardiology", 0.38, 18, MAX_AGE, 0.15),
    WardProfile("surgery", 0.46, 16, MAX_AGE, -0.05),
    WardProfile("geriatrics", 0.62, 70, MAX_AGE, 0.0),
    WardProfile("gynecology", 0.97, 16, 90, -0.45),
    WardProfile("neurology", 0.48, 18, MAX_AGE, 0.05),
)


def ward_profile(index: int) -> WardProfile:
    """Profile of the ward with 0-based ``index`` (the simulator's ward-1 is index 0)."""
    return WARD_PROFILES[index % len(WARD_PROFILES)]


def hospital_age_weights() -> np.ndarray:
    """Probability per year of age 0..MAX_AGE of a hospital patient (census x hospital rate)."""
    weights = np.zeros(MAX_AGE + 1)
    for band, (people, rate) in enumerate(zip(CENSUS_5Y_THOUSANDS, HOSPITAL_RATE_PER_100K, strict=True)):
        if band < len(CENSUS_5Y_THOUSANDS) - 1:
            weights[5 * band : 5 * band + 5] = people * rate / 5
        else:  # 90+: geometric decline over 90..104
            tail = 0.75 ** np.arange(MAX_AGE - 90 + 1)
            weights[90:] = people * rate * tail / tail.sum()
    return weights / weights.sum()


def ward_age_weights(profile: WardProfile) -> np.ndarray:
    weights = hospital_age_weights() * np.exp(profile.age_tilt * (np.arange(MAX_AGE + 1) - 50) / 10)
    weights[: profile.age_min] = 0.0
    weights[profile.age_max + 1 :] = 0.0
    return weights / weights.sum()


def _zipf(n: int, s: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** s
    return w / w.sum()


@dataclass(frozen=True)
class ZipModel:
    prefixes: tuple[str, ...]
    prefix_weights: np.ndarray
    suffix_weights: np.ndarray

    @classmethod
    def build(cls, rng: np.random.Generator) -> ZipModel:
        tail: list[str] = []
        while len(tail) < ZIP_TAIL_PREFIXES:
            p = f"{int(rng.integers(10, 1000)):03d}"
            if p not in DOMINANT_ZIP_PREFIXES and p not in tail:
                tail.append(p)
        weights = np.concatenate(
            (
                (1 - ZIP_TAIL_SHARE) * _zipf(len(DOMINANT_ZIP_PREFIXES), 1.1),
                ZIP_TAIL_SHARE * np.full(ZIP_TAIL_PREFIXES, 1.0 / ZIP_TAIL_PREFIXES),
            )
        )
        return cls(DOMINANT_ZIP_PREFIXES + tuple(tail), weights, _zipf(ZIP_SUFFIXES, 1.2))

    def draw(self, rng: np.random.Generator, n: int) -> list[str]:
        prefix = rng.choice(len(self.prefixes), size=n, p=self.prefix_weights)
        # Suffix ranks are permuted per prefix (by a hash of it) so "00" is not always the busiest.
        rank = rng.choice(ZIP_SUFFIXES, size=n, p=self.suffix_weights)
        out = []
        for pi, r in zip(prefix.tolist(), rank.tolist(), strict=True):
            p = self.prefixes[pi]
            out.append(f"{p}{(int(p) * 37 + r * 7) % 100:02d}")
        return out


@dataclass(frozen=True)
class Stay:
    """Fraction of the run [start, end) during which a patient sends frames."""

    start: float = 0.0
    end: float = 1.0

    def frames(self, total_frames: int) -> tuple[int, int]:
        """[first, last) frame indices; at least one frame."""
        first = min(total_frames - 1, int(np.floor(self.start * total_frames + 1e-9)))
        last = max(first + 1, min(total_frames, int(np.ceil(self.end * total_frames - 1e-9))))
        return first, last


def ward_spans(rng: np.random.Generator, wards: int, churn: bool, late_or_early_share: float = 0.3) -> list[Stay]:
    """Active span of each ward: with churn, a share of wards starts late or stops early."""
    spans = []
    for _ in range(wards):
        if churn and rng.random() < late_or_early_share:
            cut = float(rng.uniform(0.15, 0.4))
            spans.append(Stay(cut, 1.0) if rng.random() < 0.5 else Stay(0.0, 1.0 - cut))
        else:
            spans.append(Stay())
    return spans


def draw_stay(rng: np.random.Generator, ward: Stay, churn: bool) -> Stay:
    """A patient's stay inside the ward's span: 40-100 % of it, placed uniformly."""
    if not churn:
        return ward
    width = ward.end - ward.start
    length = float(rng.uniform(0.4, 1.0)) * width
    start = ward.start + float(rng.uniform(0.0, width - length))
    return Stay(start, start + length)


@dataclass(frozen=True)
class PopulationPatient:
    age: int
    sex: str
    zip: str
    ward: int  # 0-based
    stay: Stay


def draw_population(
    rng: np.random.Generator,
    ward_of_patient: list[int],
    wards: int,
    churn: bool,
    churn_rng: np.random.Generator | None = None,
) -> list[PopulationPatient]:
    """One patient per entry of ``ward_of_patient`` (0-based ward index). Stays are drawn from
    ``churn_rng`` (default: ``rng``): a separate stream keeps the same people with and without churn."""
    stays_rng = rng if churn_rng is None else churn_rng
    zips = ZipModel.build(rng)
    spans = ward_spans(stays_rng, wards, churn)
    age_w = [ward_age_weights(ward_profile(w)) for w in range(wards)]
    out = []
    zip_codes = zips.draw(rng, len(ward_of_patient))
    for i, w in enumerate(ward_of_patient):
        profile = ward_profile(w)
        age = int(rng.choice(MAX_AGE + 1, p=age_w[w]))
        u = float(rng.random())
        female = SEX_UNKNOWN_SHARE + (1 - SEX_UNKNOWN_SHARE) * profile.female_share
        sex = "U" if u < SEX_UNKNOWN_SHARE else ("F" if u < female else "M")
        out.append(PopulationPatient(age, sex, zip_codes[i], w, draw_stay(stays_rng, spans[w], churn)))
    return out


@dataclass(frozen=True)
class Ward:
    """A benchmark ward: ``patients`` (QIs and stays) and its profile."""

    profile: WardProfile
    patients: list[PopulationPatient]


def benchmark_ward(seed: int, index: int, per_window: int, churn: bool) -> Ward:
    """A ward with about ``per_window`` patients present in any window: exactly that many without
    churn; with churn, per_window / 0.7 patients who each stay 40-100 % (mean 70 %) of the run."""
    rng = np.random.default_rng([seed, index, per_window, int(churn)])
    total = per_window if not churn else round(per_window / 0.7)
    patients = draw_population(rng, [index] * total, index + 1, churn)
    return Ward(ward_profile(index), patients)
