"""privacy.kanonymity: levels, rounding, suppression/imputation and tokens, anchors, running means."""

from __future__ import annotations

import math
import pickle
import random
import re

import numpy as np
import pytest
from privacy_test_helpers import SPLIT_ROOT_HIERARCHY, T0, by_pid, classes, frame, pid_of

from hierarchy import load_hierarchy
from privacy.kanonymity import AnonymizationConfig, KeyState, anonymize_window, suppression_token
from testkit.naive_kanonymity import naive_levels
from testkit.privacy_audit import cross_window_attack_prefixes
from testkit.privacy_workload import make_population, make_window, synth_ecg

H = load_hierarchy()
HS = load_hierarchy(SPLIT_ROOT_HIERARCHY)  # level 8 splits 0-79 / 80+: room for suppression in one window


TOKEN_KEY = b"token-key-for-tests"


def cfg(k: int, l_div: int = 0, hierarchy=H) -> AnonymizationConfig:
    return AnonymizationConfig(hierarchy, k, l_diversity=l_div, token_key=TOKEN_KEY)


def run(frames, state, config: AnonymizationConfig, window_start_ms: int = T0):
    return anonymize_window(frames, state, config, window_start_ms)


def test_config_validation() -> None:
    for bad in (
        {"k": 0},
        {"k": -3},
        {"k": 2.5},
        {"k": True},
        {"k": 2, "l_diversity": -1},
    ):
        with pytest.raises(ValueError):
            AnonymizationConfig(H, **bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        AnonymizationConfig("hierarchy.csv", 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        AnonymizationConfig(H, 2, token_key="text")  # type: ignore[arg-type]


def test_suppression_and_mean_imputation() -> None:
    frames = [
        frame("a", 51, "F", "10115", [0.1234, 0.2], hr=60.0),
        frame("b", 52, "F", "10116", [0.3, 0.4], hr=70.0),
        frame("c", 53, "F", "10117", [0.5, 0.6], hr=80.0),
        frame("odd", 90, "M", "99999", [5.0, 5.0, 5.0]),
    ]
    res = run(frames, None, cfg(3, hierarchy=HS))
    pubs = by_pid(res)
    assert [pf.ecg_mv.tolist() for pf in pubs[pid_of("a")]] == [[0.125, 0.2]]
    for raw in "abc":
        (pf,) = pubs[pid_of(raw)]
        assert pf.level == 1 and not pf.imputed
        assert pf.qi == {"age": "50-54", "sex": "F", "zip": "1011*"}
    assert pid_of("odd") not in pubs  # suppressed frames carry a window-scoped token, not the pid
    (odd,) = pubs[suppression_token(TOKEN_KEY, pid_of("odd"), T0)]
    expected = (0.125 + 0.2 + 0.3 + 0.4 + 0.5 + 0.6) / 6
    assert odd.level == 9 and odd.imputed
    assert odd.qi == {"age": "*", "sex": "*", "zip": "*"}
    assert odd.ecg_mv.shape == (3,)
    assert np.allclose(odd.ecg_mv, expected)
    assert odd.hr_bpm == pytest.approx(70.0)
    assert classes(res) == {(1, ("50-54", "F", "1011*")): {pid_of("a"), pid_of("b"), pid_of("c")}}
    m = res.metrics
    assert m.patients_by_level == {1: 3, 9: 1}
    assert m.frames_by_level == {1: 3, 9: 1}
    assert m.samples_by_level == {1: 6, 9: 3}
    assert m.suppression_rate == pytest.approx(0.25)
    assert m.sample_suppression_rate == pytest.approx(3 / 9)
    assert m.imputed_ecg_mv == pytest.approx(expected)
    assert m.accounting_ok()
    assert res.state.ecg_count == 6 and res.state.ecg_sum == pytest.approx(2.125)
    assert res.state.hr_count == 3 and res.state.hr_mean() == pytest.approx(70.0)
    assert res.state.frames_suppressed == 1 and res.state.samples_suppressed == 3
    assert res.state.frames_by_level == {1: 3, 9: 1}
    assert res.state.windows == 1


def test_rounding_follows_the_level() -> None:
    v = [0.123, -0.456, 1.0]
    frames = [
        frame("l1a", 51, "F", "10115", v),
        frame("l1b", 53, "F", "10118", v),
        frame("l2a", 61, "M", "20001", v),
        frame("l2b", 68, "M", "20002", v),
        frame("l7a", 30, "F", "30000", v),
        frame("l7b", 33, "M", "40000", v),
    ]
    res = run(frames, None, cfg(2))
    got = {pf.pid: pf for pf in res.published}
    assert got[pid_of("l1a")].level == 1
    assert got[pid_of("l1a")].ecg_mv.tolist() == [0.125, -0.455, 1.0]
    assert got[pid_of("l2a")].level == 2
    assert got[pid_of("l2a")].qi == {"age": "60-69", "sex": "M", "zip": "200**"}
    assert got[pid_of("l2a")].ecg_mv.tolist() == [0.12, -0.46, 1.0]
    assert got[pid_of("l7b")].level == 7
    assert got[pid_of("l7b")].qi == {"age": "0-39", "sex": "*", "zip": "*****"}
    assert got[pid_of("l7b")].ecg_mv.tolist() == [0.1, -0.5, 1.0]
    assert res.metrics.patients_by_level == {1: 2, 2: 2, 7: 2}
    assert res.metrics.suppression_rate == 0.0


def test_leftovers_join_a_coarser_class_instead_of_being_suppressed() -> None:
    """The issue's ward: 20 adults, skewed zips, k=5. The old bottom-up pass suppressed the ones left
    over after level 8 although everybody shares one level-8 class; the optimum suppresses nobody."""
    rng = np.random.default_rng(8)
    ages = [34, 41, 45, 47, 52, 53, 55, 58, 61, 62, 64, 66, 67, 70, 71, 73, 75, 77, 78, 79]
    zips = ["10115"] * 9 + ["10117"] * 5 + ["10245", "12043", "13353", "14195", "80331", "50667"]
    frames = [frame(f"w{i}", ages[i], "FM"[int(rng.integers(2))], zips[i], [0.1], ts_ms=T0 + i) for i in range(20)]
    old_rule = naive_levels(H, {f.pid: dict(f.qi) for f in frames}, 5)
    assert sum(lv == 9 for lv in old_rule.values()) == 3  # what the bottom-up pass did
    res = run(frames, None, cfg(5))
    assert res.metrics.patients_suppressed == 0, res.metrics.log_line()
    assert all(len(members) >= 5 for members in classes(res).values())
    assert res.metrics.mean_level < 8


def test_no_carry_over_frames_in_equals_published_plus_suppressed() -> None:
    w1 = [
        frame("a", 51, "F", "10115", [0.1, 0.2], ts_ms=T0),
        frame("b", 52, "F", "10116", [0.3], ts_ms=T0),
        frame("odd", 90, "M", "99999", [1.0, 1.0], ts_ms=T0),
    ]
    r1 = run(w1, None, cfg(2, hierarchy=HS))
    m = r1.metrics
    assert (m.frames_in, m.frames_published, m.frames_suppressed) == (3, 2, 1)
    assert (m.samples_in, m.samples_published, m.samples_suppressed) == (5, 3, 2)
    assert m.accounting_ok()
    assert {pf.ts_ms for pf in r1.published} == {T0}  # every frame leaves in its own window


def test_suppression_tokens_are_window_scoped_and_deterministic() -> None:
    frames = [frame("x", 90, "M", "99999", [1.0], ts_ms=T0), frame("y", 30, "F", "55555", [1.0], ts_ms=T0)]
    r1 = run(frames, None, cfg(3), window_start_ms=T0)
    r1_again = run(list(reversed(frames)), None, cfg(3), window_start_ms=T0)
    r2 = run(frames, None, cfg(3), window_start_ms=T0 + 5000)
    tokens1 = sorted(pf.pid for pf in r1.published)
    assert tokens1 == sorted(pf.pid for pf in r1_again.published)
    assert set(tokens1).isdisjoint(pf.pid for pf in r2.published)  # unlinkable across windows
    assert set(tokens1).isdisjoint({pid_of("x"), pid_of("y")})
    assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in tokens1)
    other_key = anonymize_window(frames, None, AnonymizationConfig(H, 3, token_key=b"other"), T0)
    assert set(tokens1).isdisjoint(pf.pid for pf in other_key.published)


def test_anchor_is_fixed_at_first_publication_and_never_refined() -> None:
    group = [frame(f"g{i}", 50 + i, "F", "10115", [0.1], ts_ms=T0) for i in range(3)]
    far = [frame(f"f{i}", 20 + i, "M", "20000", [0.1], ts_ms=T0) for i in range(2)]
    r1 = run(group + far, None, cfg(2))
    assert {pf.level for pf in r1.published if pf.pid == pid_of("g0")} == {1}
    assert r1.state.anchors[pid_of("g0")] == (1, (50, "F", "10115"))
    assert sum(r1.state.anchor_nodes.values()) == len(r1.state.anchors) == 5
    # Next window: g0's QIs in the frames changed (a typo fixed upstream), the stored ones are used.
    w2 = [frame("g0", 70, "M", "99999", [0.1], ts_ms=T0 + 5000)] + [
        frame(f"g{i}", 50 + i, "F", "10115", [0.1], ts_ms=T0 + 5000) for i in (1, 2)
    ]
    r2 = run(w2, r1.state, cfg(2), window_start_ms=T0 + 5000)
    g0 = [pf for pf in r2.published if pf.pid == pid_of("g0")]
    assert g0 and g0[0].qi == {"age": "50-54", "sex": "F", "zip": "1011*"}
    assert r2.metrics.patients_anchored == 3 and r2.metrics.anchors_created == 0


def test_newcomer_without_anchors_on_its_path_waits_for_peers() -> None:
    """A newcomer can only be published where >= k pseudonyms are anchored on its own path, so an
    attacker knowing its QIs always keeps >= k candidates."""
    base = [frame(f"a{i}", 60 + i, "F", "10115", [0.1], ts_ms=T0) for i in range(3)]
    r1 = run(base, None, cfg(3))
    assert r1.metrics.patients_suppressed == 0
    # A newcomer far from every anchor (other sex, other zip): no 3 anchored pids on its path.
    newcomer = frame("n", 61, "M", "99999", [0.1], ts_ms=T0 + 5000)
    w2 = [*(frame(f"a{i}", 60 + i, "F", "10115", [0.1], ts_ms=T0 + 5000) for i in range(3)), newcomer]
    r2 = run(w2, r1.state, cfg(3), window_start_ms=T0 + 5000)
    assert r2.metrics.newcomers_ineligible == 1
    assert pid_of("n") not in {pf.pid for pf in r2.published}
    # A newcomer next to the anchors (same level-1 node as all three): eligible, published.
    near = frame("m", 62, "F", "10116", [0.1], ts_ms=T0 + 10000)
    w3 = [*(frame(f"a{i}", 60 + i, "F", "10115", [0.1], ts_ms=T0 + 10000) for i in range(3)), near]
    r3 = run(w3, r2.state, cfg(3), window_start_ms=T0 + 10000)
    assert r3.metrics.newcomers_ineligible == 0 and r3.metrics.patients_suppressed == 0
    assert pid_of("m") in r3.state.anchors


def test_newcomers_arriving_together_form_their_own_class() -> None:
    base = [frame(f"a{i}", 30 + i, "M", "20000", [0.1], ts_ms=T0) for i in range(3)]
    r1 = run(base, None, cfg(3))
    w2 = [frame(f"n{i}", 70 + i, "F", "10115", [0.1], ts_ms=T0 + 5000) for i in range(3)]
    r2 = run(w2, r1.state, cfg(3), window_start_ms=T0 + 5000)
    assert r2.metrics.newcomers_ineligible == 3 and r2.metrics.patients_suppressed == 0
    assert {pf.level for pf in r2.published} == {1}


def test_running_mean_used_when_window_has_no_published_values() -> None:
    r1 = run(
        [frame("a", 51, "F", "10115", [0.2, 0.4], hr=60.0), frame("b", 52, "F", "10116", [0.6], hr=80.0)],
        None,
        cfg(2),
    )
    r2 = run([frame("c", 30, "M", "55555", [9.0, 9.0], hr=100.0)], r1.state, cfg(2))
    (pf,) = r2.published
    assert pf.level == 9 and pf.imputed
    assert pf.ecg_mv.tolist() == pytest.approx([0.4, 0.4])
    assert pf.hr_bpm == pytest.approx(70.0)
    # No history at all: 0.0 and nan.
    r0 = run([frame("c", 30, "M", "55555", [9.0], hr=100.0)], None, cfg(2))
    assert r0.published[0].ecg_mv.tolist() == [0.0]
    assert math.isnan(r0.published[0].hr_bpm)


def test_k_larger_than_patients_publishes_nothing_below_level_9() -> None:
    frames = [frame(f"p{i}", 50, "F", "10115", [0.1], ts_ms=T0 + i) for i in range(4)]
    res = run(frames, None, cfg(5))
    assert {pf.level for pf in res.published} == {9}
    assert res.state.anchors == {}


def test_l_diversity_pushes_classes_up() -> None:
    frames = [frame(f"s{i}", 51 + i % 3, "F", f"1011{i}", [0.1], sensitive="I10") for i in range(4)]
    frames += [frame(f"t{i}", 56 + i % 3, "F", f"1012{i}", [0.1], sensitive="I48") for i in range(4)]
    plain = run(frames, None, cfg(2))
    assert {pf.level for pf in plain.published} == {1}
    div = run(frames, None, cfg(2, l_div=2))
    assert {pf.level for pf in div.published} == {2}
    assert {pf.qi["age"] for pf in div.published} == {"50-59"}
    # A class that can never reach l distinct values ends up suppressed.
    same = run(frames[:4], None, cfg(2, l_div=2))
    assert {pf.level for pf in same.published} == {9}


def test_hr_derived_from_r_peaks_when_missing() -> None:
    rng = np.random.default_rng(3)
    frames = []
    for j, raw in enumerate(["a", "b"]):
        sig = synth_ecg(75.0, 250.0, 1250, rng)
        for i in range(5):
            frames.append(frame(raw, 51 + j, "F", "10115", sig[i * 250 : (i + 1) * 250], ts_ms=T0 + i * 1000))
    res = run(frames, None, cfg(2))
    hrs = {pf.hr_bpm for pf in res.published}
    assert len(hrs) <= 2
    for v in hrs:
        assert v == pytest.approx(75.0, abs=3.0)
    assert res.metrics.hr_derived_frames == 10
    assert res.state.hr_count == 10


def test_hr_fallback_to_window_mean_when_not_derivable() -> None:
    frames = [
        frame("a", 51, "F", "10115", [0.1, 0.1, 0.1], hr=64.0),
        frame("b", 52, "F", "10116", [0.0, 0.0, 0.0]),  # flat: no R-peaks
    ]
    res = run(frames, None, cfg(2))
    assert {pf.pid: pf.hr_bpm for pf in res.published} == {pid_of("a"): 64.0, pid_of("b"): 64.0}
    assert res.state.hr_count == 1  # the fallback value is not fed back into the running mean


def test_first_frame_in_time_defines_the_patient_qis() -> None:
    frames = [
        frame("a", 70, "M", "20000", [0.1], ts_ms=T0 + 1000),  # later frame, different QIs
        frame("a", 51, "F", "10115", [0.1], ts_ms=T0),
        frame("b", 52, "F", "10116", [0.1], ts_ms=T0),
    ]
    res = run(frames, None, cfg(2))
    assert {(pf.pid, pf.level, pf.qi["age"]) for pf in res.published} == {
        (pid_of("a"), 1, "50-54"),
        (pid_of("b"), 1, "50-54"),
    }
    assert len(res.published) == 3


def test_deterministic_and_state_not_mutated() -> None:
    pop = make_population(60, seed=5)
    frames = make_window(pop, frames_per_patient=2, samples_per_frame=50, seed=5)
    r1 = run(frames, None, cfg(4))
    before = pickle.dumps(r1.state)
    shuffled = list(frames)
    random.Random(1).shuffle(shuffled)
    a = run(frames, r1.state, cfg(4))
    b = run(shuffled, r1.state, cfg(4))
    assert pickle.dumps(r1.state) == before
    assert pickle.dumps(a.published) == pickle.dumps(b.published)
    assert pickle.dumps(a.state) == pickle.dumps(b.state)
    assert a.metrics == b.metrics


def test_no_raw_identifier_in_any_output() -> None:
    raw_ids = [f"MRN-RAW-{i:05d}" for i in range(30)]
    frames = [
        frame(r, 40 + i % 7, "FM"[i % 2], f"1{i % 3}115", [0.1 * i, 0.2], ts_ms=T0 + i) for i, r in enumerate(raw_ids)
    ]
    res = run(frames, KeyState(), cfg(3))
    blobs = [repr(res), repr(res.published), res.metrics.log_line(), repr(res.metrics.as_dict())]
    blob = "\n".join(blobs).encode() + pickle.dumps(res)
    for r in raw_ids:
        assert r.encode() not in blob
    assert b"MRN-RAW" not in blob
    for pf in res.published:
        assert re.fullmatch(r"[0-9a-f]{32}", pf.pid)


def test_log_line_and_picklable_state() -> None:
    frames = [
        frame("a", 51, "F", "10115", [0.1]),
        frame("b", 52, "F", "10116", [0.1]),
        frame("odd", 90, "M", "99999", [0.1]),
    ]
    res = run(frames, None, cfg(2, hierarchy=HS))
    line = res.metrics.log_line()
    assert line == (
        "levels {1: 2, 9: 1} suppressed 33.3% mean level 3.67 NCP 0.50 k=2 patients=3 anchored=0 new_anchors=2"
    ), line
    restored = pickle.loads(pickle.dumps(res.state))
    assert isinstance(restored, KeyState) and restored.frames_by_level == {1: 2, 9: 1}


def test_empty_window() -> None:
    res = run([], None, cfg(2))
    assert res.published == [] and res.metrics.distinct_patients == 0 and res.metrics.accounting_ok()
    assert res.metrics.ncp == 0.0 and res.state.windows == 1


def test_anchor_refined_only_while_every_target_keeps_k_candidates() -> None:
    """a, b, e are first published together at level 7 (40-79, *, *****). When c arrives, a may move
    down to level 1 next to c: b and e each lose a from their candidates but keep two (b, e). b may
    not follow (e would keep only itself), so b and e stay at level 7."""
    w1 = [frame("a", 51, "F", "10115", [0.1]), frame("b", 71, "M", "20000", [0.1]), frame("e", 73, "M", "20002", [0.1])]
    r1 = run(w1, None, cfg(2))
    assert {pf.level for pf in r1.published} == {7}
    w2 = [
        frame("a", 51, "F", "10115", [0.1], ts_ms=T0 + 5000),
        frame("b", 71, "M", "20000", [0.1], ts_ms=T0 + 5000),
        frame("e", 73, "M", "20002", [0.1], ts_ms=T0 + 5000),
        frame("c", 52, "F", "10116", [0.1], ts_ms=T0 + 5000),
    ]
    r2 = run(w2, r1.state, cfg(2), window_start_ms=T0 + 5000)
    assert r2.metrics.anchors_refined == 1 and r2.metrics.patients_suppressed == 0
    assert {pf.pid: pf.level for pf in r2.published} == {pid_of("a"): 1, pid_of("c"): 1, pid_of("b"): 7, pid_of("e"): 7}
    assert r2.state.anchors[pid_of("a")][0] == 1
    assert r2.state.anchor_nodes == {(1, ("50-54", "F", "1011*")): 2, (7, ("40-79", "*", "*****")): 2}
    # The attacker across both windows still has >= 2 candidates for everyone, at every prefix.
    points = [(pf.pid, pf.ts_ms, pf.level, pf.qi) for r in (r1, r2) for pf in r.published]
    true_qi = {f.pid: f.qi for f in w2}
    assert cross_window_attack_prefixes(H, points, true_qi, 2, 5000) == (2, [])
