"""Property tests (hypothesis) of the privacy core: per-window invariants, optimality against the
exhaustive search, and the auditor and cross-window attacker on generated churn streams."""

from __future__ import annotations

import math
import pickle
from collections import Counter, defaultdict

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from privacy_test_helpers import SPLIT_ROOT_HIERARCHY, T0

from hierarchy import load_hierarchy
from privacy.kanonymity import AnonymizationConfig, KeyState, WindowResult, anonymize_window
from privacy.model import Frame
from privacy.planner import build_tree, plan_levels
from testkit.privacy_audit import auditor_violations, cross_window_attack_prefixes, published_labels
from testkit.privacy_exhaustive import exhaustive_levels

H = load_hierarchy()
HS = load_hierarchy(SPLIT_ROOT_HIERARCHY)  # level 8 split at age 80: more suppression to exercise
QIS = H.quasi_identifiers
WINDOW_MS = 5000
TOKEN_KEY = b"property-token-key"
ZIPS = ["10115", "10116", "10117", "10200", "10999", "20000", "20001", "2", "999", "31415"]

patient = st.fixed_dictionaries(
    {
        "age": st.one_of(st.integers(45, 60), st.integers(0, 120)),
        "sex": st.sampled_from(["F", "M", "U"]),
        "zip": st.sampled_from(ZIPS),
        "sensitive": st.sampled_from([None, "I10", "I48", "R00"]),
        "frames": st.lists(
            st.tuples(
                st.lists(st.floats(-5, 5, allow_nan=False, width=32), min_size=1, max_size=6),
                st.one_of(st.just(math.nan), st.floats(30, 200)),
            ),
            min_size=1,
            max_size=3,
        ),
    }
)
population = st.lists(patient, min_size=0, max_size=24)


def pid(i: int) -> str:
    return f"{i:032x}"


def build(pop: list[dict], window: int, present: list[bool] | None = None) -> list[Frame]:
    frames = []
    for i, p in enumerate(pop):
        if present is not None and not present[i]:
            continue
        for j, (samples, hr) in enumerate(p["frames"]):
            frames.append(
                Frame(
                    pid=pid(i),
                    lead="II",
                    ts_ms=T0 + window * WINDOW_MS + j * 1000,
                    fs=250.0,
                    samples=np.asarray(samples, dtype=np.float64),
                    qi={"age": p["age"], "sex": p["sex"], "zip": p["zip"]},
                    hr_bpm=hr,
                    sensitive=p["sensitive"],
                )
            )
    return frames


def check_window(res: WindowResult, inputs: list[Frame], cfg: AnonymizationConfig, old: KeyState) -> None:
    pids_in = {f.pid for f in inputs}
    # Levels in range, one level and one QI tuple per published pid (or token).
    per_pid: dict[str, set[tuple]] = defaultdict(set)
    for pf in res.published:
        assert 1 <= pf.level <= 9
        per_pid[pf.pid].add((pf.level, tuple(sorted(pf.qi.items()))))
        assert set(pf.qi) == set(QIS)
        if pf.level == 9:
            assert pf.imputed and set(pf.qi.values()) == {"*"}
            assert np.all(pf.ecg_mv == pf.ecg_mv[0])
            assert pf.pid not in pids_in and len(pf.pid) == 32  # a token, never a pid
        else:
            assert not pf.imputed and pf.pid in pids_in
    assert all(len(v) == 1 for v in per_pid.values())
    assert len(per_pid) == len(pids_in)  # tokens are distinct per patient

    # Every published class holds >= k distinct patients (and >= l sensitive values).
    sens = {f.pid: f.sensitive for f in sorted(inputs, key=lambda f: (f.pid, f.ts_ms), reverse=True)}
    cls: dict[tuple, set[str]] = defaultdict(set)
    for pf in res.published:
        if pf.level < 9:
            cls[(pf.level, tuple(sorted(pf.qi.items())))].add(pf.pid)
    for members in cls.values():
        assert len(members) >= cfg.k
        if cfg.l_diversity:
            assert len({sens[p] for p in members if sens[p] is not None}) >= cfg.l_diversity

    # An anchored pid is published at its anchor or coarser, or finer only as a recorded refinement;
    # a pid's anchor is always its finest label so far.
    for pf in res.published:
        if pf.pid in old.anchors and pf.level < old.anchors[pf.pid][0]:
            assert res.state.anchors[pf.pid][0] == pf.level
        if pf.level < 9:
            assert res.state.anchors[pf.pid][0] <= pf.level
    assert sum(res.state.anchor_nodes.values()) == len(res.state.anchors)

    # Every input frame/sample exactly once, in its own window (nothing carried).
    raw = {(f.pid, f.ts_ms, f.lead): f for f in inputs}
    assert len(raw) == len(inputs)
    assert len(res.published) == len(inputs)
    for pf in res.published:
        if pf.level < 9:
            src = raw[(pf.pid, pf.ts_ms, pf.lead)]
            assert pf.n_samples == src.n_samples
            np.testing.assert_array_equal(pf.ecg_mv, cfg.hierarchy.round_ecg(src.samples, pf.level))
    assert Counter(pf.ts_ms for pf in res.published) == Counter(f.ts_ms for f in inputs)
    assert res.metrics.accounting_ok()
    if cfg.k > len(pids_in):
        assert all(pf.level == 9 for pf in res.published)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pop=population,
    k=st.integers(1, 6),
    l_div=st.integers(0, 3),
    present2=st.lists(st.booleans(), min_size=24, max_size=24),
    rnd=st.randoms(use_true_random=False),
    hierarchy=st.sampled_from([H, HS]),
)
def test_windows_hold_the_invariants(pop: list[dict], k: int, l_div: int, present2: list[bool], rnd, hierarchy) -> None:
    cfg = AnonymizationConfig(hierarchy, k, l_diversity=l_div, token_key=TOKEN_KEY)
    state = KeyState()
    for window, present in enumerate([None, present2]):
        frames = build(pop, window, present)
        start = T0 + window * WINDOW_MS
        res = anonymize_window(frames, state, cfg, start)
        check_window(res, frames, cfg, state)
        # Determinism: any input order, same bytes out.
        shuffled = list(frames)
        rnd.shuffle(shuffled)
        again = anonymize_window(shuffled, state, cfg, start)
        assert pickle.dumps(again.published) == pickle.dumps(res.published)
        assert pickle.dumps(again.state) == pickle.dumps(res.state)
        state = res.state


small_table = st.lists(
    st.tuples(st.integers(18, 95), st.sampled_from(["F", "M"]), st.sampled_from(ZIPS[:7])), min_size=1, max_size=9
)


def _cost(tree, levels: np.ndarray, supp_cost: float) -> float:
    return sum(
        supp_cost if lv == 9 else float(tree.cost[lv - 1][tree.node[lv - 1][p]]) for p, lv in enumerate(levels.tolist())
    )


@settings(max_examples=150, deadline=None)
@given(rows=small_table, k=st.integers(1, 5), hierarchy=st.sampled_from([H, HS]))
def test_fresh_window_is_optimal(rows: list[tuple[int, str, str]], k: int, hierarchy) -> None:
    """No patient is suppressed when the exhaustive optimum publishes them, and the NCP sum is
    the optimum's (fresh window: nothing anchored)."""
    qi = {
        "age": np.array([r[0] for r in rows], dtype=np.float64),
        "sex": np.array([r[1] for r in rows]),
        "zip": np.array([r[2] for r in rows]),
    }
    tree = build_tree(hierarchy, qi)
    n = tree.n
    levels = plan_levels(tree, k, np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool), n + 1.0)
    best, best_cost = exhaustive_levels(tree, k, n + 1.0)
    assert int((levels == 9).sum()) == int((best == 9).sum())
    assert math.isclose(_cost(tree, levels, n + 1.0), best_cost, rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(_cost(tree, best, n + 1.0), best_cost, rel_tol=1e-9, abs_tol=1e-9)
    # And through the window function: same suppression.
    frames = [
        Frame(pid(i), 0, 250.0, "II", np.zeros(1), math.nan, {"age": r[0], "sex": r[1], "zip": r[2]})
        for i, r in enumerate(rows)
    ]
    res = anonymize_window(frames, None, AnonymizationConfig(hierarchy, k), T0)
    assert res.metrics.patients_suppressed == int((best == 9).sum())


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(18, 95), st.sampled_from(["F", "M"]), st.sampled_from(ZIPS[:5])), min_size=2, max_size=9
    ),
    k=st.integers(2, 4),
    data=st.data(),
)
def test_with_history_never_below_the_constrained_optimum(rows: list, k: int, data: st.DataObject) -> None:
    """With anchors, the planner's result is a feasible solution of the exhaustive search's model."""
    n = len(rows)
    qi = {
        "age": np.array([r[0] for r in rows], dtype=np.float64),
        "sex": np.array([r[1] for r in rows]),
        "zip": np.array([r[2] for r in rows]),
    }
    tree = build_tree(H, qi)
    anchor = np.array(data.draw(st.lists(st.sampled_from([0, 0, 1, 2, 3, 5, 8]), min_size=n, max_size=n)))
    eligible = (anchor == 0) & np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    levels = plan_levels(tree, k, anchor, eligible, n + 1.0)
    _, best_cost = exhaustive_levels(tree, k, n + 1.0, anchor, eligible)
    assert np.all(levels >= np.maximum(anchor, 1))
    classes = Counter((lv, tree.node[lv - 1][p]) for p, lv in enumerate(levels.tolist()) if lv < 9)
    assert all(c >= k for c in classes.values())
    assert _cost(tree, levels, n + 1.0) >= best_cost - 1e-9


churn_patient = st.tuples(st.integers(20, 95), st.sampled_from(["F", "M"]), st.sampled_from(ZIPS[:6]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    people=st.lists(churn_patient, min_size=1, max_size=16),
    k=st.integers(2, 5),
    windows=st.integers(2, 6),
    data=st.data(),
    hierarchy=st.sampled_from([H, HS]),
)
def test_churn_streams_keep_k_for_auditor_and_attacker(
    people: list[tuple[int, str, str]], k: int, windows: int, data: st.DataObject, hierarchy
) -> None:
    """Patients come and go; after every window, grouped by (window, level, labels) every group has
    >= k pseudonyms, and an attacker knowing any patient's QIs keeps >= k candidate pseudonyms."""
    n = len(people)
    spans = [
        data.draw(st.tuples(st.integers(0, windows - 1), st.integers(1, windows)).map(lambda t: (t[0], t[0] + t[1])))
        for _ in range(n)
    ]
    cfg = AnonymizationConfig(hierarchy, k, token_key=TOKEN_KEY)
    state: KeyState | None = None
    points = []
    labels_by_pid: dict[str, set] = defaultdict(set)
    for w in range(windows):
        frames = [
            Frame(
                pid(i),
                T0 + w * WINDOW_MS + 10 * i,
                250.0,
                "II",
                np.zeros(2),
                70.0,
                dict(zip(QIS, people[i], strict=True)),
            )
            for i in range(n)
            if spans[i][0] <= w < spans[i][1]
        ]
        old = state or KeyState()
        res = anonymize_window(frames, state, cfg, T0 + w * WINDOW_MS)
        check_window(res, frames, cfg, old)
        points.extend(published_labels(res.published))
        for pf in res.published:
            if pf.level < 9:
                labels_by_pid[pf.pid].add((pf.level, tuple(pf.qi[a] for a in QIS)))
        state = res.state
    assert auditor_violations(hierarchy, points, WINDOW_MS, k) == []
    true_qi = {pid(i): dict(zip(QIS, people[i], strict=True)) for i in range(n)}
    worst, below = cross_window_attack_prefixes(hierarchy, points, true_qi, k, WINDOW_MS)
    assert below == [], below
    assert worst == 0 or worst >= k
    # A pid's labels form a chain (all contain its QIs, one per level), the finest one being its anchor.
    for p, labs in labels_by_pid.items():
        assert state is not None
        assert min(lv for lv, _ in labs) == state.anchors[p][0]
        assert len({lv for lv, _ in labs}) == len(labs)
        qi = true_qi[p]
        for lv, lab in labs:
            assert lab == tuple(str(hierarchy.generalize(a, np.asarray([qi[a]], dtype=object), lv)[0]) for a in QIS)
