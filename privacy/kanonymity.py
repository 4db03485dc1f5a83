"""Windowed k-anonymity over distinct patients by bottom-up local recoding (pure numpy).

Per window (and per key, e.g. site): every patient takes the QIs of its first frame. At level 1 all
patients' QIs are generalized to hierarchy row 1 and grouped; every class with >= k distinct
patients (and >= l distinct sensitive values) is published at level 1. The rest move up one level
and are grouped only among themselves, and so on up to level 8. Whoever is left is carried over
to the next window (if it has waited fewer than ``max_delay_windows`` windows) or suppressed
(level 9: QIs ``*``, values imputed with the window mean of the published samples).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from hierarchy.loader import LEVELS, STAR, SUPPRESSED_LEVEL, Hierarchy
from privacy.heart_rate import derive_hr_bpm_batch
from privacy.metrics import WindowMetrics, level_counts, ncp_table
from privacy.model import Frame, PatientRow, PublishedFrame

__all__ = [
    "AnonymizationConfig",
    "KeyState",
    "WindowResult",
    "anonymize_window",
    "assign_levels",
    "patient_table",
]

_MAX_PUBLISHED_LEVEL = SUPPRESSED_LEVEL - 1


@dataclass(frozen=True)
class AnonymizationConfig:
    """k counts distinct patients; ``max_delay_windows`` = how many windows a patient that
    cannot be placed may wait before suppression (0 = suppress at once); ``l_diversity`` = 0
    disables l-diversity, otherwise each published class needs >= l distinct sensitive values."""

    hierarchy: Hierarchy
    k: int
    max_delay_windows: int = 1
    l_diversity: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.hierarchy, Hierarchy):
            raise TypeError("hierarchy must be a hierarchy.Hierarchy (see hierarchy.load_hierarchy)")
        for name, low in (("k", 1), ("max_delay_windows", 0), ("l_diversity", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


@dataclass
class KeyState:
    """Per-key state kept between windows (picklable; raw QIs only inside ``carry``)."""

    carry: list[tuple[Frame, int]] = field(default_factory=list)  # (frame, windows already waited)
    ecg_sum: float = 0.0  # running sum/count of published (non-imputed) ecg_mv, for imputation
    ecg_count: int = 0
    hr_sum: float = 0.0
    hr_count: int = 0
    frames_by_level: dict[int, int] = field(default_factory=dict)  # cumulative, 9 = suppressed
    samples_by_level: dict[int, int] = field(default_factory=dict)
    frames_suppressed: int = 0
    samples_suppressed: int = 0
    frames_carried_over: int = 0
    windows: int = 0

    def ecg_mean(self) -> float | None:
        return self.ecg_sum / self.ecg_count if self.ecg_count else None

    def hr_mean(self) -> float | None:
        return self.hr_sum / self.hr_count if self.hr_count else None

    def copy(self) -> KeyState:
        return KeyState(
            carry=list(self.carry),
            ecg_sum=self.ecg_sum,
            ecg_count=self.ecg_count,
            hr_sum=self.hr_sum,
            hr_count=self.hr_count,
            frames_by_level=dict(self.frames_by_level),
            samples_by_level=dict(self.samples_by_level),
            frames_suppressed=self.frames_suppressed,
            samples_suppressed=self.samples_suppressed,
            frames_carried_over=self.frames_carried_over,
            windows=self.windows,
        )


@dataclass
class WindowResult:
    published: list[PublishedFrame]
    metrics: WindowMetrics
    state: KeyState

    def patient_table(self) -> list[PatientRow]:
        return patient_table(self.published)


def patient_table(published: Sequence[PublishedFrame]) -> list[PatientRow]:
    """The published per-patient table (one row per pid: level and generalized QIs)."""
    rows: dict[str, PatientRow] = {}
    for pf in published:
        if pf.pid not in rows:
            rows[pf.pid] = PatientRow(pid=pf.pid, level=pf.level, qi=dict(pf.qi))
    return [rows[p] for p in sorted(rows)]


# -- level assignment ------------------------------------------------------------------------


def _as_array(values: list[object]) -> np.ndarray:
    """Numeric array when all values are numbers (bands stay vectorized), else str/object."""
    arr = np.asarray(values, dtype=object)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.float64)
    return arr


def assign_levels(
    hierarchy: Hierarchy,
    qi_values: dict[str, np.ndarray],
    k: int,
    l_diversity: int = 0,
    sensitive: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Bottom-up local recoding of a per-patient table (one row = one distinct patient).

    Returns ``(levels, labels)``: level 1..8 per row, 0 = not placeable (carry or suppress), and
    per QI the generalized label of each placed row (``*`` for unplaced rows).
    """
    qis = hierarchy.quasi_identifiers
    n = len(next(iter(qi_values.values()))) if qi_values else 0
    levels = np.zeros(n, dtype=np.int64)
    labels = {a: np.full(n, STAR, dtype=object) for a in qis}
    if n == 0:
        return levels, labels
    sens_code: np.ndarray | None = None
    n_sens = 0
    if l_diversity > 0:
        if sensitive is None:
            sens_code = np.full(n, -1, dtype=np.int64)
        else:
            s = np.asarray(sensitive, dtype=object)
            present = np.array([v is not None for v in s.tolist()], dtype=bool)
            sens_code = np.full(n, -1, dtype=np.int64)
            if present.any():
                uniq, inv = np.unique(s[present].astype(str), return_inverse=True)
                sens_code[present] = inv
                n_sens = int(uniq.shape[0])
    # Distinct raw values once per attribute: each level then generalizes only those (few)
    # and maps rows through integer codes, never re-sorting strings per level.
    distinct: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for attr in qis:
        vals = np.asarray(qi_values[attr])
        if vals.dtype == object:
            vals = vals.astype(str) if all(isinstance(v, str) for v in vals.tolist()) else vals
        try:
            uniq, inv = np.unique(vals, return_inverse=True)
        except TypeError:  # mixed types (e.g. None among strings): compare as text
            uniq, inv = np.unique(np.array([str(v) for v in vals.tolist()]), return_inverse=True)
        distinct[attr] = (uniq, inv.reshape(-1))
    remaining = np.arange(n)
    need = max(k, l_diversity)
    for level in LEVELS[:_MAX_PUBLISHED_LEVEL]:
        if remaining.shape[0] < need:
            break  # no class can reach k distinct patients any more
        key = np.zeros(remaining.shape[0], dtype=np.int64)
        level_labels: list[tuple[str, np.ndarray, np.ndarray]] = []
        for attr in qis:
            uniq, raw_inv = distinct[attr]
            lab, uniq_code = hierarchy.codes(attr, uniq, level)
            inv = uniq_code[raw_inv[remaining]]
            # Mixed-radix key, re-compressed after each attribute so it never overflows.
            _, key = np.unique(key * lab.shape[0] + inv, return_inverse=True)
            level_labels.append((attr, lab, inv))
        key = key.reshape(-1)
        counts = np.bincount(key)
        ok = counts >= k
        if sens_code is not None:
            sc = sens_code[remaining]
            has = sc >= 0
            pairs = np.unique(key[has] * (n_sens + 1) + sc[has])
            diversity = np.bincount(pairs // (n_sens + 1), minlength=counts.shape[0])
            ok &= diversity >= l_diversity
        placed = ok[key]
        if placed.any():
            rows = remaining[placed]
            levels[rows] = level
            for attr, lab, inv in level_labels:
                labels[attr][rows] = lab[inv[placed]]
        remaining = remaining[~placed]
        if remaining.shape[0] == 0:
            break
    return levels, labels


# -- the window ------------------------------------------------------------------------------


def _sort_entries(entries: list[tuple[Frame, int]]) -> list[tuple[Frame, int]]:
    """Deterministic order (pid, ts, lead, ...) whatever order the window delivered frames in."""
    keys = [(f.pid, int(f.ts_ms), f.lead, float(f.fs), f.samples.shape[0], w) for f, w in entries]
    order = sorted(range(len(entries)), key=keys.__getitem__)
    out = [entries[i] for i in order]
    # Exact duplicates of that key are rare: order those by content so replays match.
    i = 0
    while i < len(order) - 1:
        j = i + 1
        while j < len(order) and keys[order[j]] == keys[order[i]]:
            j += 1
        if j - i > 1:
            out[i:j] = sorted(
                out[i:j],
                key=lambda e: (e[0].samples.tobytes(), repr(e[0].hr_bpm), repr(e[0].sensitive), repr(e[0].qi)),
            )
        i = j
    return out


def _first_finite(*values: float | None) -> float:
    for v in values:
        if v is not None and math.isfinite(v):
            return float(v)
    return math.nan


def _round_published(
    h: Hierarchy, entries: list[tuple[Frame, int]], f_level: np.ndarray, sizes: np.ndarray
) -> tuple[dict[int, np.ndarray], float, int]:
    """Round published frames per level: one concatenated buffer per level, no per-sample loop.
    Returns (frame index -> rounded samples, sum, count) of the published values."""
    by_frame: dict[int, np.ndarray] = {}
    total = 0.0
    count = 0
    for lv in range(1, _MAX_PUBLISHED_LEVEL + 1):
        idx = np.flatnonzero(f_level == lv)
        if idx.size == 0:
            continue
        raw = np.concatenate([entries[i][0].samples for i in idx.tolist()]).astype(np.float64, copy=False)
        rounded = h.round_ecg(raw, lv)
        total += float(np.sum(rounded))
        count += int(rounded.shape[0])
        by_frame.update(zip(idx.tolist(), np.split(rounded, np.cumsum(sizes[idx])[:-1]), strict=True))
    return by_frame, total, count


def _derive_missing_hr(
    entries: list[tuple[Frame, int]], frame_patient: np.ndarray, hr: np.ndarray, publish: np.ndarray
) -> int:
    """Fill ``hr`` (in place) for published frames without HR from R-peaks over all of the
    patient's samples of the same lead and rate in this window; returns frames filled."""
    missing = np.isnan(hr) & publish
    if not missing.any():
        return 0
    groups: dict[tuple[int, str], list[int]] = {}
    for i in np.flatnonzero(publish).tolist():
        groups.setdefault((int(frame_patient[i]), entries[i][0].lead), []).append(i)
    # Batch the signals by (length, fs) so R-peak detection runs on 2-D arrays.
    batches: dict[tuple[int, float], list[tuple[list[int], np.ndarray]]] = {}
    for idx in groups.values():
        need = [i for i in idx if missing[i]]
        if not need:
            continue
        fs = float(entries[idx[0]][0].fs)
        sig = np.concatenate([entries[i][0].samples for i in idx if float(entries[i][0].fs) == fs])
        batches.setdefault((sig.shape[0], fs), []).append((need, sig))
    filled = 0
    for (_, fs), items in sorted(batches.items()):
        values = derive_hr_bpm_batch(np.stack([sig for _, sig in items]), fs)
        for (need, _), v in zip(items, values.tolist(), strict=True):
            if math.isfinite(v):
                hr[need] = v
                filled += len(need)
    return filled


def anonymize_window(frames: Iterable[Frame], state: KeyState | None, config: AnonymizationConfig) -> WindowResult:
    """Anonymize one window of one key. Pure: ``state`` is not modified; the new state is returned.

    Same frames (in any order) + same state -> identical output, so replays are idempotent.
    """
    h = config.hierarchy
    qis = h.quasi_identifiers
    old = state if state is not None else KeyState()
    new_state = old.copy()
    new_frames = list(frames)
    entries = _sort_entries([(f, int(w)) for f, w in old.carry] + [(f, 0) for f in new_frames])
    metrics = WindowMetrics(k=config.k, l_diversity=config.l_diversity)
    metrics.frames_in = len(new_frames)
    metrics.samples_in = int(sum(f.samples.shape[0] for f in new_frames))
    metrics.frames_carried_in = len(old.carry)
    metrics.samples_carried_in = int(sum(f.samples.shape[0] for f, _ in old.carry))

    # Group frames by patient (entries are sorted by pid, then time).
    pids: list[str] = []
    starts: list[int] = []
    for i, (f, _) in enumerate(entries):
        if not pids or pids[-1] != f.pid:
            pids.append(f.pid)
            starts.append(i)
    n_p = len(pids)
    n_f = len(entries)
    frame_patient = np.zeros(n_f, dtype=np.int64)
    if n_p > 1:
        frame_patient[np.asarray(starts[1:], dtype=np.int64)] = 1
        frame_patient = np.cumsum(frame_patient)
    waited = np.asarray([w for _, w in entries], dtype=np.int64)
    patient_waited = np.zeros(n_p, dtype=np.int64)
    np.maximum.at(patient_waited, frame_patient, waited)
    firsts = [entries[s][0] for s in starts]  # each patient's first frame in time defines its QIs
    qi_values = {a: _as_array([f.qi.get(a) for f in firsts]) for a in qis}
    sensitive = np.asarray([f.sensitive for f in firsts], dtype=object)

    p_level, p_labels = assign_levels(h, qi_values, config.k, config.l_diversity, sensitive)
    unplaced = p_level == 0
    carry_p = unplaced & (patient_waited < config.max_delay_windows)
    p_level[unplaced & ~carry_p] = SUPPRESSED_LEVEL

    f_level = p_level[frame_patient] if n_f else np.zeros(0, dtype=np.int64)  # 0 = carried over
    sizes = np.asarray([f.samples.shape[0] for f, _ in entries], dtype=np.int64)
    publish = (f_level >= 1) & (f_level <= _MAX_PUBLISHED_LEVEL)
    ecg_by_frame, ecg_sum, ecg_count = _round_published(h, entries, f_level, sizes)

    # Heart rate: given values win; otherwise derived from R-peaks; else window/running mean.
    hr_real = np.asarray([f.hr_bpm if f.hr_bpm is not None else math.nan for f, _ in entries], dtype=np.float64)
    metrics.hr_derived_frames = _derive_missing_hr(entries, frame_patient, hr_real, publish)
    known_hr = hr_real[publish & np.isfinite(hr_real)]
    window_hr = float(np.mean(known_hr)) if known_hr.size else _first_finite(old.hr_mean())
    window_ecg = ecg_sum / ecg_count if ecg_count else _first_finite(old.ecg_mean(), 0.0)
    hr_out = np.where(np.isfinite(hr_real), hr_real, window_hr).tolist()

    published: list[PublishedFrame] = []
    carry_out: list[tuple[Frame, int]] = []
    patient_qi = [
        {a: STAR for a in qis} if lv == SUPPRESSED_LEVEL else {a: str(p_labels[a][p]) for a in qis}
        for p, lv in enumerate(p_level.tolist())
    ]
    for i, ((f, w), lv, p) in enumerate(zip(entries, f_level.tolist(), frame_patient.tolist(), strict=True)):
        if lv == 0:
            carry_out.append((f, w + 1))
        elif lv == SUPPRESSED_LEVEL:
            published.append(
                PublishedFrame(
                    f.pid,
                    f.lead,
                    int(f.ts_ms),
                    float(f.fs),
                    lv,
                    patient_qi[p],
                    np.full(f.samples.shape[0], window_ecg),
                    window_hr,
                    True,
                )
            )
        else:
            published.append(
                PublishedFrame(
                    f.pid, f.lead, int(f.ts_ms), float(f.fs), lv, patient_qi[p], ecg_by_frame[i], hr_out[i], False
                )
            )

    # Metrics.
    out_levels = f_level[f_level > 0]
    metrics.distinct_patients = n_p
    metrics.frames_by_level = level_counts(out_levels)
    metrics.samples_by_level = level_counts(out_levels, sizes[f_level > 0].astype(np.float64))
    metrics.patients_by_level = level_counts(p_level[p_level > 0])
    supp_f = f_level == SUPPRESSED_LEVEL
    metrics.frames_published = int(publish.sum())
    metrics.samples_published = int(sizes[publish].sum())
    metrics.frames_suppressed = int(supp_f.sum())
    metrics.samples_suppressed = int(sizes[supp_f].sum())
    metrics.patients_suppressed = int((p_level == SUPPRESSED_LEVEL).sum())
    metrics.frames_carried_out = len(carry_out)
    metrics.samples_carried_out = int(sizes[f_level == 0].sum())
    metrics.patients_carried_out = int(carry_p.sum())
    if metrics.frames_suppressed:
        metrics.imputed_ecg_mv = window_ecg
        metrics.imputed_hr_bpm = window_hr
    out_p = p_level > 0
    metrics.ncp = ncp_table(h, {a: qi_values[a][out_p] for a in qis}, p_level[out_p])

    # State: carry-over, running means of real published values, cumulative counters.
    new_state.carry = carry_out
    new_state.ecg_sum += ecg_sum
    new_state.ecg_count += ecg_count
    new_state.hr_sum += float(np.sum(known_hr))
    new_state.hr_count += int(known_hr.shape[0])
    for lv, c in metrics.frames_by_level.items():
        new_state.frames_by_level[lv] = new_state.frames_by_level.get(lv, 0) + c
    for lv, c in metrics.samples_by_level.items():
        new_state.samples_by_level[lv] = new_state.samples_by_level.get(lv, 0) + c
    new_state.frames_suppressed += metrics.frames_suppressed
    new_state.samples_suppressed += metrics.samples_suppressed
    new_state.frames_carried_over += metrics.frames_carried_out
    new_state.windows += 1
    return WindowResult(published=published, metrics=metrics, state=new_state)
