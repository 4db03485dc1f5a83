"""Window metrics and the normalized certainty penalty (NCP) of a published per-patient table."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

from hierarchy.loader import SUPPRESSED_LEVEL, Hierarchy


def _numeric_range(values: np.ndarray) -> float:
    num = np.asarray(values)
    if num.dtype.kind not in "iufb":
        num = np.array([_to_float(v) for v in num.tolist()], dtype=np.float64)
    num = num.astype(np.float64)
    num = num[np.isfinite(num)]
    return float(num.max() - num.min()) if num.size else 0.0


def _to_float(v: object) -> float:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def attribute_ncp(hierarchy: Hierarchy, attribute: str, raw: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Per-row information loss in [0, 1] of one QI generalized to ``levels`` (0 = raw value).

    numeric bands: (width - 1) / observed range, capped at 1; keep: 0; ``*``: 1;
    prefix: share of the observed distinct values the label covers (0 if it covers only one).
    """
    raw = np.asarray(raw)
    levels = np.asarray(levels, dtype=np.int64)
    cost = np.zeros(raw.shape[0], dtype=np.float64)
    if raw.shape[0] == 0:
        return cost
    value_range: float | None = None
    uniq: np.ndarray | None = None
    uniq_inv: np.ndarray | None = None
    for lv in np.unique(levels).tolist():
        mask = levels == lv
        if lv == 0:
            continue
        rule = hierarchy.rule(attribute, int(lv))
        if rule.kind == "keep":
            continue
        if rule.kind == "star":
            cost[mask] = 1.0
        elif rule.kind == "band":
            if value_range is None:
                value_range = _numeric_range(raw)
            w = rule.width
            if w <= 1:
                c = 0.0
            else:
                c = 1.0 if value_range <= 0 else min(1.0, (w - 1) / value_range)
            cost[mask] = c
        else:  # prefix / categorical: coverage of the observed distinct values
            if uniq is None:
                strs = np.array(["" if v is None else str(v) for v in raw.tolist()], dtype=str)
                uniq, uniq_inv = np.unique(strs, return_inverse=True)
            assert uniq_inv is not None
            _, label_of_uniq = hierarchy.codes(attribute, uniq, int(lv))
            covered = np.bincount(label_of_uniq)[label_of_uniq]
            share = np.where(covered > 1, covered / uniq.shape[0], 0.0)
            cost[mask] = share[uniq_inv[mask]]
    return cost


def ncp_table(
    hierarchy: Hierarchy,
    raw: Mapping[str, np.ndarray],
    levels: np.ndarray | Mapping[str, np.ndarray],
) -> float:
    """NCP of a per-patient table: mean over patients of the mean over QIs of the loss.

    ``raw`` maps each QI to the patients' raw values. ``levels`` is either one level per patient
    (local recoding: all QIs at that row; 9 = suppressed = loss 1) or, for global recoding
    (anjana), a per-attribute array of levels (0 = raw). Returns 0.0 for an empty table.
    """
    qis = hierarchy.quasi_identifiers
    n = len(next(iter(raw.values()))) if raw else 0
    if n == 0 or not qis:
        return 0.0
    total = np.zeros(n, dtype=np.float64)
    for attr in qis:
        lv = levels[attr] if isinstance(levels, Mapping) else levels
        total += attribute_ncp(hierarchy, attr, raw[attr], np.asarray(lv))
    return float(np.mean(total / len(qis)))


@dataclass
class WindowMetrics:
    """What one call of ``anonymize_window`` did. Frames and samples balance:
    ``*_in == *_published + *_suppressed`` (nothing is carried over to a later window)."""

    k: int
    l_diversity: int
    distinct_patients: int = 0
    frames_in: int = 0
    samples_in: int = 0
    frames_published: int = 0  # levels 1..8
    samples_published: int = 0
    frames_suppressed: int = 0  # level 9
    samples_suppressed: int = 0
    patients_suppressed: int = 0
    patients_anchored: int = 0  # patients of this window anchored in an earlier window
    newcomers_ineligible: int = 0  # newcomers with < k-1 anchors on their path (publishable only among newcomers)
    anchors_created: int = 0  # newcomers published (anchored) in this window
    anchors_refined: int = 0  # anchored patients published finer than their anchor (slack allowed it)
    anchors_total: int = 0  # anchors in the key's state after this window
    frames_by_level: dict[int, int] = field(default_factory=dict)
    samples_by_level: dict[int, int] = field(default_factory=dict)
    patients_by_level: dict[int, int] = field(default_factory=dict)
    hr_derived_frames: int = 0
    imputed_ecg_mv: float = math.nan  # value used for suppressed samples (nan if none)
    imputed_hr_bpm: float = math.nan
    ncp: float = 0.0

    @property
    def suppression_rate(self) -> float:
        """Suppressed patients / distinct patients in the window."""
        return self.patients_suppressed / self.distinct_patients if self.distinct_patients else 0.0

    @property
    def sample_suppression_rate(self) -> float:
        return self.samples_suppressed / self.samples_in if self.samples_in else 0.0

    @property
    def mean_level(self) -> float:
        """Mean level over the window's patients (suppressed = 9); 0.0 for an empty window."""
        total = sum(self.patients_by_level.values())
        return sum(lv * c for lv, c in self.patients_by_level.items()) / total if total else 0.0

    def accounting_ok(self) -> bool:
        """Every input frame and sample is published or suppressed exactly once."""
        return (
            self.frames_in == self.frames_published + self.frames_suppressed
            and self.samples_in == self.samples_published + self.samples_suppressed
        )

    def log_line(self) -> str:
        """One concise line, e.g. ``levels {1: 180, 9: 4} suppressed 0.8% mean level 2.10 NCP 0.12 k=5 ...``."""
        levels = {lv: self.frames_by_level[lv] for lv in sorted(self.frames_by_level)}
        ldiv = f" l={self.l_diversity}" if self.l_diversity else ""
        return (
            f"levels {levels} suppressed {100.0 * self.suppression_rate:.1f}% mean level {self.mean_level:.2f} "
            f"NCP {self.ncp:.2f} k={self.k}{ldiv} patients={self.distinct_patients} "
            f"anchored={self.patients_anchored} new_anchors={self.anchors_created}"
        )

    def as_dict(self) -> dict[str, object]:
        """Flat-ish dict for metric groups / JSON logs."""
        d = asdict(self)
        d["suppression_rate"] = self.suppression_rate
        d["sample_suppression_rate"] = self.sample_suppression_rate
        d["mean_level"] = self.mean_level
        return d


def level_counts(levels: np.ndarray, weights: np.ndarray | None = None) -> dict[int, int]:
    """``{level: count}`` (optionally weighted, e.g. by samples) for the levels present."""
    lv = np.asarray(levels, dtype=np.int64)
    if lv.size == 0:
        return {}
    counts = np.bincount(lv, weights=weights, minlength=SUPPRESSED_LEVEL + 1)
    return {int(i): round(float(c)) for i, c in enumerate(counts) if c > 0}
