"""Windowed k-anonymity over distinct patients: optimal local recoding with sticky anchors (pure numpy).

Per window and key (e.g. ward): every patient gets one level 1..8 (all QIs generalized to that
hierarchy row) or 9 (suppressed: QIs ``*``, values imputed with the window mean of the published
samples, pseudonym replaced by a window-scoped token). Levels come from ``privacy.planner``: the
assignment that suppresses as few patients as possible and then loses the least QI detail (NCP),
subject to every class (level, labels) holding >= k distinct patients and to the cross-window
anchor rules kept in ``KeyState`` (docs/privacy.md, sections 2 and 5). Nothing is carried over:
what cannot be published in its own window is suppressed.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from hierarchy.loader import STAR, SUPPRESSED_LEVEL, Hierarchy
from privacy.heart_rate import derive_hr_bpm_batch
from privacy.metrics import WindowMetrics, level_counts, ncp_table
from privacy.model import Frame, PatientRow, PublishedFrame
from privacy.planner import MAX_PUBLISHED_LEVEL, WindowTree, build_tree, plan_levels, repair_l_diversity

__all__ = [
    "AnonymizationConfig",
    "KeyState",
    "PlanningProblem",
    "WindowResult",
    "anonymize_window",
    "assign_levels",
    "patient_table",
    "planning_problem",
    "sorted_frames",
    "suppression_token",
]

AnchorKey = tuple[int, tuple[str, ...]]  # (level, labels in QI order)


@dataclass(frozen=True)
class AnonymizationConfig:
    """k counts distinct patients; ``l_diversity`` = 0 disables l-diversity, otherwise each published
    class needs >= l distinct sensitive values; ``token_key`` keys the HMAC that replaces the
    pseudonym of suppressed frames (keep it secret: whoever holds it can link tokens to pids)."""

    hierarchy: Hierarchy
    k: int
    l_diversity: int = 0
    token_key: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.hierarchy, Hierarchy):
            raise TypeError("hierarchy must be a hierarchy.Hierarchy (see hierarchy.load_hierarchy)")
        for name, low in (("k", 1), ("l_diversity", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if not isinstance(self.token_key, bytes):
            raise TypeError("token_key must be bytes")


@dataclass
class KeyState:
    """Per-key state kept between windows (picklable; lives in Flink keyed state).

    ``anchors``: pid -> (anchor level, the raw QIs it was first published with, in QI order); the
    pid is only ever published at that node or an ancestor afterwards. ``anchor_nodes`` counts the
    anchored pids per (level, labels) node, for the newcomer eligibility rule."""

    anchors: dict[str, tuple[int, tuple[object, ...]]] = field(default_factory=dict)
    anchor_nodes: dict[AnchorKey, int] = field(default_factory=dict)
    ecg_sum: float = 0.0  # running sum/count of published (non-imputed) ecg_mv, for imputation
    ecg_count: int = 0
    hr_sum: float = 0.0
    hr_count: int = 0
    frames_by_level: dict[int, int] = field(default_factory=dict)  # cumulative, 9 = suppressed
    samples_by_level: dict[int, int] = field(default_factory=dict)
    frames_suppressed: int = 0
    samples_suppressed: int = 0
    windows: int = 0

    def ecg_mean(self) -> float | None:
        return self.ecg_sum / self.ecg_count if self.ecg_count else None

    def hr_mean(self) -> float | None:
        return self.hr_sum / self.hr_count if self.hr_count else None

    def copy(self) -> KeyState:
        return KeyState(
            anchors=dict(self.anchors),
            anchor_nodes=dict(self.anchor_nodes),
            ecg_sum=self.ecg_sum,
            ecg_count=self.ecg_count,
            hr_sum=self.hr_sum,
            hr_count=self.hr_count,
            frames_by_level=dict(self.frames_by_level),
            samples_by_level=dict(self.samples_by_level),
            frames_suppressed=self.frames_suppressed,
            samples_suppressed=self.samples_suppressed,
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
    """The published per-patient table (one row per published pid or token: level and QIs)."""
    rows: dict[str, PatientRow] = {}
    for pf in published:
        if pf.pid not in rows:
            rows[pf.pid] = PatientRow(pid=pf.pid, level=pf.level, qi=dict(pf.qi))
    return [rows[p] for p in sorted(rows)]


def suppression_token(token_key: bytes, pid: str, window_start_ms: int) -> str:
    """The window-scoped stand-in for a suppressed patient's pid: HMAC-SHA256(token_key,
    ``pid|window_start_ms``) in hex, as long as the pid (deterministic, so replays are identical;
    unlinkable across windows and to the pid without the key)."""
    digest = hmac.new(token_key, f"{pid}|{int(window_start_ms)}".encode(), hashlib.sha256).hexdigest()
    return digest[: len(pid)] if 0 < len(pid) <= len(digest) else digest


# -- level assignment ------------------------------------------------------------------------


def _as_array(values: list[object]) -> np.ndarray:
    """Numeric array when all values are numbers (bands stay vectorized), else str/object."""
    arr = np.asarray(values, dtype=object)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.float64)
    return arr


def _sensitive_codes(sensitive: np.ndarray) -> np.ndarray:
    s = np.asarray(sensitive, dtype=object)
    codes = np.full(s.shape[0], -1, dtype=np.int64)
    present = np.array([v is not None for v in s.tolist()], dtype=bool)
    if present.any():
        _, inv = np.unique(s[present].astype(str), return_inverse=True)
        codes[present] = inv
    return codes


def assign_levels(
    hierarchy: Hierarchy,
    qi_values: dict[str, np.ndarray],
    k: int,
    l_diversity: int = 0,
    sensitive: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Optimal levels of a per-patient table without history (one row = one distinct patient).

    Returns ``(levels, labels)``: level 1..8 per row, 0 = suppressed, and per QI the generalized
    label of each published row (``*`` for suppressed rows).
    """
    tree = build_tree(hierarchy, qi_values)
    n = tree.n
    levels = plan_levels(tree, k, np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool), float(n + 1))
    if l_diversity > 0:
        codes = _sensitive_codes(sensitive) if sensitive is not None else np.full(n, -1, dtype=np.int64)
        repair_l_diversity(tree, levels, codes, l_diversity)
    labels = _labels_at(tree, levels)
    return np.where(levels == SUPPRESSED_LEVEL, 0, levels), labels


def _labels_at(tree: WindowTree, levels: np.ndarray) -> dict[str, np.ndarray]:
    labels = {a: np.full(tree.n, STAR, dtype=object) for a in tree.qis}
    for lv in range(1, MAX_PUBLISHED_LEVEL + 1):
        rows = np.flatnonzero(levels == lv)
        if rows.size:
            for attr in tree.qis:
                lab, inv = tree.labels[lv - 1][attr]
                labels[attr][rows] = lab[inv[rows]]
    return labels


def _anchors_on_path(tree: WindowTree, anchor_nodes: dict[AnchorKey, int], rows: np.ndarray) -> np.ndarray:
    """Per row: anchored pids (from earlier windows) at any node of the row's path (levels 1..8)."""
    total = np.zeros(rows.shape[0], dtype=np.int64)
    if not anchor_nodes or rows.size == 0:
        return total
    for lv in range(1, MAX_PUBLISHED_LEVEL + 1):
        counts = np.array([anchor_nodes.get((lv, lab), 0) for lab in tree.node_labels(lv)], dtype=np.int64)
        total += counts[tree.node[lv - 1][rows]]
    return total


# -- the window ------------------------------------------------------------------------------


def _sort_frames(frames: list[Frame]) -> list[Frame]:
    """Deterministic order (pid, ts, lead, ...) whatever order the window delivered frames in."""
    keys = [(f.pid, int(f.ts_ms), f.lead, float(f.fs), f.samples.shape[0]) for f in frames]
    order = sorted(range(len(frames)), key=keys.__getitem__)
    out = [frames[i] for i in order]
    # Exact duplicates of that key are rare: order those by content so replays match.
    i = 0
    while i < len(order) - 1:
        j = i + 1
        while j < len(order) and keys[order[j]] == keys[order[i]]:
            j += 1
        if j - i > 1:
            out[i:j] = sorted(
                out[i:j], key=lambda f: (f.samples.tobytes(), repr(f.hr_bpm), repr(f.sensitive), repr(f.qi))
            )
        i = j
    return out


def _first_finite(*values: float | None) -> float:
    for v in values:
        if v is not None and math.isfinite(v):
            return float(v)
    return math.nan


def _round_published(
    h: Hierarchy, frames: list[Frame], f_level: np.ndarray, sizes: np.ndarray
) -> tuple[dict[int, np.ndarray], float, int]:
    """Round published frames per level: one concatenated buffer per level, no per-sample loop.
    Returns (frame index -> rounded samples, sum, count) of the published values."""
    by_frame: dict[int, np.ndarray] = {}
    total = 0.0
    count = 0
    for lv in range(1, MAX_PUBLISHED_LEVEL + 1):
        idx = np.flatnonzero(f_level == lv)
        if idx.size == 0:
            continue
        raw = np.concatenate([frames[i].samples for i in idx.tolist()]).astype(np.float64, copy=False)
        rounded = h.round_ecg(raw, lv)
        total += float(np.sum(rounded))
        count += int(rounded.shape[0])
        by_frame.update(zip(idx.tolist(), np.split(rounded, np.cumsum(sizes[idx])[:-1]), strict=True))
    return by_frame, total, count


def _derive_missing_hr(frames: list[Frame], frame_patient: np.ndarray, hr: np.ndarray, publish: np.ndarray) -> int:
    """Fill ``hr`` (in place) for published frames without HR from R-peaks over all of the
    patient's samples of the same lead and rate in this window; returns frames filled."""
    missing = np.isnan(hr) & publish
    if not missing.any():
        return 0
    groups: dict[tuple[int, str], list[int]] = {}
    for i in np.flatnonzero(publish).tolist():
        groups.setdefault((int(frame_patient[i]), frames[i].lead), []).append(i)
    # Batch the signals by (length, fs) so R-peak detection runs on 2-D arrays.
    batches: dict[tuple[int, float], list[tuple[list[int], np.ndarray]]] = {}
    for idx in groups.values():
        need = [i for i in idx if missing[i]]
        if not need:
            continue
        fs = float(frames[idx[0]].fs)
        sig = np.concatenate([frames[i].samples for i in idx if float(frames[i].fs) == fs])
        batches.setdefault((sig.shape[0], fs), []).append((need, sig))
    filled = 0
    for (_, fs), items in sorted(batches.items()):
        values = derive_hr_bpm_batch(np.stack([sig for _, sig in items]), fs)
        for (need, _), v in zip(items, values.tolist(), strict=True):
            if math.isfinite(v):
                hr[need] = v
                filled += len(need)
    return filled


@dataclass
class PlanningProblem:
    """What the planner sees for one window of one key (rows = distinct patients, sorted by pid)."""

    pids: list[str]
    starts: list[int]  # index of each patient's first frame in the sorted frames
    frame_patient: np.ndarray  # per sorted frame: its patient row
    raw_qi: list[tuple[object, ...]]  # per patient, in QI order (stored anchor QIs for anchored pids)
    qi_values: dict[str, np.ndarray]
    tree: WindowTree
    anchor_level: np.ndarray  # 0 = newcomer
    eligible: np.ndarray  # newcomers with >= k-1 anchored pids on their path
    entry_level: np.ndarray  # finest level allowed now: the anchor, or a refinement of it; 0 = newcomer

    @property
    def supp_cost(self) -> float:
        return float(len(self.pids) + 1)


def planning_problem(entries: list[Frame], state: KeyState, config: AnonymizationConfig) -> PlanningProblem:
    """The planner's input for frames sorted by ``_sort_frames`` (also used by the benchmarks to
    compare the planner with the exhaustive optimum under the same anchors)."""
    qis = config.hierarchy.quasi_identifiers
    pids: list[str] = []
    starts: list[int] = []
    for i, f in enumerate(entries):
        if not pids or pids[-1] != f.pid:
            pids.append(f.pid)
            starts.append(i)
    n_p = len(pids)
    frame_patient = np.zeros(len(entries), dtype=np.int64)
    if n_p > 1:
        frame_patient[np.asarray(starts[1:], dtype=np.int64)] = 1
        frame_patient = np.cumsum(frame_patient)
    # QIs: an anchored pid keeps the QIs it was first published with (its labels form a chain);
    # anybody else takes the QIs of its first frame in time.
    raw_qi: list[tuple[object, ...]] = []
    anchor_level = np.zeros(n_p, dtype=np.int64)
    for p, (pid, s) in enumerate(zip(pids, starts, strict=True)):
        anchor = state.anchors.get(pid)
        if anchor is not None:
            anchor_level[p] = anchor[0]
            raw_qi.append(anchor[1])
        else:
            raw_qi.append(tuple(entries[s].qi.get(a) for a in qis))
    qi_values = {a: _as_array([row[j] for row in raw_qi]) for j, a in enumerate(qis)}
    tree = build_tree(config.hierarchy, qi_values)
    newcomers = np.flatnonzero(anchor_level == 0)
    eligible = np.zeros(n_p, dtype=bool)
    on_path = _anchors_on_path(tree, state.anchor_nodes, newcomers)
    eligible[newcomers] = on_path >= config.k - 1
    entry_level = _refinements(config, state, tree, pids, anchor_level, raw_qi, newcomers[eligible[newcomers]])
    return PlanningProblem(pids, starts, frame_patient, raw_qi, qi_values, tree, anchor_level, eligible, entry_level)


# Refinement checks cost O(anchors in state) per anchored patient and level; above this many
# (anchors x candidates) a window refines only the first candidates (in pid order).
REFINEMENT_WORK_LIMIT = 20_000_000


def _refinements(
    config: AnonymizationConfig,
    state: KeyState,
    tree: WindowTree,
    pids: list[str],
    anchor_level: np.ndarray,
    raw_qi: list[tuple[object, ...]],
    eligible_newcomers: np.ndarray,
) -> np.ndarray:
    """Finest level at which each anchored patient may be published in this window.

    A pid's candidates for an attacker who knows target T's QIs are the pids anchored at a node on
    T's path (all later labels of a pid are ancestors of its anchor). Moving pid P's anchor from A
    down to B (a descendant on P's own path) removes P from the candidates of exactly the targets
    whose path holds A but not B; it is allowed only while each of those keeps >= k. Targets are
    every anchored pid of the key and the eligible newcomers of this window (which count themselves).
    Candidates for a refinement: anchored patients whose anchor is coarser than the level the
    window's unconstrained optimum gives them; they get the finest level whose refinement the
    remaining slack allows (greedy, in pid order; a reserved refinement that the planner then does
    not use only made the check stricter)."""
    entry = anchor_level.copy()
    k = config.k
    present_anchored = np.flatnonzero(anchor_level > 0)
    if present_anchored.size == 0:
        return entry
    n = tree.n
    desired = plan_levels(tree, k, np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool), float(n + 1))
    candidates = [int(p) for p in present_anchored.tolist() if desired[p] < anchor_level[p]]
    if not candidates:
        return entry
    # One tree over every anchored pid of the key (stored QIs) plus the eligible newcomers.
    qis = config.hierarchy.quasi_identifiers
    anchor_rows = list(state.anchors.values())
    rows = [qi for _, qi in anchor_rows] + [raw_qi[int(p)] for p in eligible_newcomers.tolist()]
    levels_all = np.array([lv for lv, _ in anchor_rows] + [0] * int(eligible_newcomers.size), dtype=np.int64)
    big = build_tree(config.hierarchy, {a: _as_array([r[j] for r in rows]) for j, a in enumerate(qis)})
    count = np.zeros(big.n, dtype=np.int64)
    for lv in range(1, MAX_PUBLISHED_LEVEL + 1):
        at = levels_all == lv
        if at.any():
            per_node = np.bincount(big.node[lv - 1][at], minlength=big.n_nodes(lv))
            count += per_node[big.node[lv - 1]]
    count += levels_all == 0  # an eligible newcomer is anchored on its own path once published
    slack = count - k
    # Window patient -> its row in the big tree (anchored patients are among the anchors).
    row_of_pid = {pid: i for i, pid in enumerate(state.anchors)}
    if len(candidates) * big.n > REFINEMENT_WORK_LIMIT:
        candidates = candidates[: max(1, REFINEMENT_WORK_LIMIT // max(1, big.n))]
    for p in candidates:
        i = row_of_pid[pids[p]]
        a = int(anchor_level[p])
        in_a = big.node[a - 1] == big.node[a - 1][i]
        for b in range(int(desired[p]), a):
            affected = in_a & (big.node[b - 1] != big.node[b - 1][i])
            if not affected.any() or int(slack[affected].min()) >= 1:
                slack[affected] -= 1
                entry[p] = b
                break
    return entry


def sorted_frames(frames: Iterable[Frame]) -> list[Frame]:
    """Frames in the deterministic order ``anonymize_window`` works in."""
    return _sort_frames(list(frames))


def anonymize_window(
    frames: Iterable[Frame], state: KeyState | None, config: AnonymizationConfig, window_start_ms: int
) -> WindowResult:
    """Anonymize one window of one key. Pure: ``state`` is not modified; the new state is returned.

    ``window_start_ms`` scopes the tokens of suppressed frames. Same frames (in any order) + same
    state + same window -> identical output, so replays are idempotent.
    """
    h = config.hierarchy
    qis = h.quasi_identifiers
    old = state if state is not None else KeyState()
    new_state = old.copy()
    entries = _sort_frames(list(frames))
    metrics = WindowMetrics(k=config.k, l_diversity=config.l_diversity)
    metrics.frames_in = len(entries)
    metrics.samples_in = int(sum(f.samples.shape[0] for f in entries))

    problem = planning_problem(entries, old, config)
    pids, starts, frame_patient = problem.pids, problem.starts, problem.frame_patient
    raw_qi, qi_values, tree = problem.raw_qi, problem.qi_values, problem.tree
    anchor_level, eligible = problem.anchor_level, problem.eligible
    newcomers = np.flatnonzero(anchor_level == 0)
    refined = np.flatnonzero(problem.entry_level < anchor_level)
    n_p = len(pids)
    n_f = len(entries)
    sensitive = np.asarray([entries[s].sensitive for s in starts], dtype=object)
    p_level = plan_levels(tree, config.k, problem.entry_level, eligible, float(n_p + 1))
    if config.l_diversity > 0:
        repair_l_diversity(tree, p_level, _sensitive_codes(sensitive), config.l_diversity)

    f_level = p_level[frame_patient] if n_f else np.zeros(0, dtype=np.int64)
    sizes = np.asarray([f.samples.shape[0] for f in entries], dtype=np.int64)
    publish = f_level < SUPPRESSED_LEVEL
    ecg_by_frame, ecg_sum, ecg_count = _round_published(h, entries, f_level, sizes)

    # Heart rate: given values win; otherwise derived from R-peaks; else window/running mean.
    hr_real = np.asarray([f.hr_bpm if f.hr_bpm is not None else math.nan for f in entries], dtype=np.float64)
    metrics.hr_derived_frames = _derive_missing_hr(entries, frame_patient, hr_real, publish)
    known_hr = hr_real[publish & np.isfinite(hr_real)]
    window_hr = float(np.mean(known_hr)) if known_hr.size else _first_finite(old.hr_mean())
    window_ecg = ecg_sum / ecg_count if ecg_count else _first_finite(old.ecg_mean(), 0.0)
    hr_out = np.where(np.isfinite(hr_real), hr_real, window_hr).tolist()

    labels = _labels_at(tree, p_level)
    star = {a: STAR for a in qis}
    patient_qi = [
        star if lv == SUPPRESSED_LEVEL else {a: str(labels[a][p]) for a in qis} for p, lv in enumerate(p_level.tolist())
    ]
    out_pid = [
        suppression_token(config.token_key, pid, window_start_ms) if lv == SUPPRESSED_LEVEL else pid
        for pid, lv in zip(pids, p_level.tolist(), strict=True)
    ]
    published: list[PublishedFrame] = []
    for i, (f, lv, p) in enumerate(zip(entries, f_level.tolist(), frame_patient.tolist(), strict=True)):
        if lv == SUPPRESSED_LEVEL:
            published.append(
                PublishedFrame(
                    out_pid[p],
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
                    out_pid[p], f.lead, int(f.ts_ms), float(f.fs), lv, patient_qi[p], ecg_by_frame[i], hr_out[i], False
                )
            )

    # New anchors: newcomers published at a level 1..8 now (their first publication).
    created = 0
    for p in newcomers.tolist():
        lv = int(p_level[p])
        if lv < SUPPRESSED_LEVEL:
            node = (lv, tuple(str(labels[a][p]) for a in qis))
            new_state.anchors[pids[p]] = (lv, raw_qi[p])
            new_state.anchor_nodes[node] = new_state.anchor_nodes.get(node, 0) + 1
            created += 1
    # Refined anchors: an anchored pid published finer than its anchor (allowed by the slack check).
    for p in refined.tolist():
        lv = int(p_level[p])
        if lv < int(anchor_level[p]):
            old_node = (int(anchor_level[p]), tree.patient_labels(p, int(anchor_level[p])))
            node = (lv, tuple(str(labels[a][p]) for a in qis))
            new_state.anchors[pids[p]] = (lv, raw_qi[p])
            left = new_state.anchor_nodes[old_node] - 1
            if left:
                new_state.anchor_nodes[old_node] = left
            else:
                del new_state.anchor_nodes[old_node]
            new_state.anchor_nodes[node] = new_state.anchor_nodes.get(node, 0) + 1
            metrics.anchors_refined += 1

    # Metrics.
    metrics.distinct_patients = n_p
    metrics.frames_by_level = level_counts(f_level)
    metrics.samples_by_level = level_counts(f_level, sizes.astype(np.float64))
    metrics.patients_by_level = level_counts(p_level)
    supp_f = ~publish
    metrics.frames_published = int(publish.sum())
    metrics.samples_published = int(sizes[publish].sum())
    metrics.frames_suppressed = int(supp_f.sum())
    metrics.samples_suppressed = int(sizes[supp_f].sum())
    metrics.patients_suppressed = int((p_level == SUPPRESSED_LEVEL).sum())
    metrics.patients_anchored = int(n_p - newcomers.shape[0])
    metrics.newcomers_ineligible = int(newcomers.shape[0] - eligible.sum())
    metrics.anchors_created = created
    metrics.anchors_total = len(new_state.anchors)
    if metrics.frames_suppressed:
        metrics.imputed_ecg_mv = window_ecg
        metrics.imputed_hr_bpm = window_hr
    metrics.ncp = ncp_table(h, qi_values, p_level)

    # State: running means of real published values, cumulative counters.
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
    new_state.windows += 1
    return WindowResult(published=published, metrics=metrics, state=new_state)
