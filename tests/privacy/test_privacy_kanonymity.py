"""privacy.kanonymity: levels, rounding, suppression/imputation, carry-over, running means."""

from __future__ import annotations

import math
import pickle
import random
import re

import numpy as np
import pytest
from privacy_test_helpers import T0, by_pid, classes, frame, pid_of

from benchmarks.privacy_workload import make_population, make_window, synth_ecg
from hierarchy import load_hierarchy
from privacy.kanonymity import AnonymizationConfig, KeyState, anonymize_window

H = load_hierarchy()


def cfg(k: int, max_delay: int = 0, l_div: int = 0) -> AnonymizationConfig:
    return AnonymizationConfig(H, k, max_delay_windows=max_delay, l_diversity=l_div)


def test_config_validation() -> None:
    for bad in (
        {"k": 0},
        {"k": -3},
        {"k": 2.5},
        {"k": True},
        {"k": 2, "max_delay_windows": -1},
        {"k": 2, "l_diversity": -1},
    ):
        with pytest.raises(ValueError):
            AnonymizationConfig(H, **bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        AnonymizationConfig("hierarchy.csv", 2)  # type: ignore[arg-type]


def test_suppression_and_mean_imputation() -> None:
    frames = [
        frame("a", 51, "F", "10115", [0.1234, 0.2], hr=60.0),
        frame("b", 52, "F", "10116", [0.3, 0.4], hr=70.0),
        frame("c", 53, "F", "10117", [0.5, 0.6], hr=80.0),
        frame("odd", 90, "M", "99999", [5.0, 5.0, 5.0]),
    ]
    res = anonymize_window(frames, None, cfg(3))
    pubs = by_pid(res)
    assert [pf.ecg_mv.tolist() for pf in pubs[pid_of("a")]] == [[0.125, 0.2]]
    for raw in "abc":
        (pf,) = pubs[pid_of(raw)]
        assert pf.level == 1 and not pf.imputed
        assert pf.qi == {"age": "50-54", "sex": "F", "zip": "1011*"}
    (odd,) = pubs[pid_of("odd")]
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
    res = anonymize_window(frames, None, cfg(2))
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


def test_carry_over_then_suppression_at_max_delay() -> None:
    w1 = [
        frame("a", 51, "F", "10115", [0.1, 0.2], ts_ms=T0),
        frame("b", 52, "F", "10116", [0.3], ts_ms=T0),
        frame("odd", 90, "M", "99999", [1.0, 1.0], ts_ms=T0),
    ]
    r1 = anonymize_window(w1, None, cfg(2, max_delay=1))
    assert {pf.pid for pf in r1.published} == {pid_of("a"), pid_of("b")}
    assert r1.metrics.frames_carried_out == 1 and r1.metrics.patients_carried_out == 1
    assert r1.metrics.samples_carried_out == 2
    assert [(f.pid, w) for f, w in r1.state.carry] == [(pid_of("odd"), 1)]
    assert r1.metrics.accounting_ok()

    w2 = [
        frame("a", 51, "F", "10115", [0.1], ts_ms=T0 + 5000),
        frame("b", 52, "F", "10116", [0.3], ts_ms=T0 + 5000),
        frame("odd", 90, "M", "99999", [2.0], ts_ms=T0 + 5000),
    ]
    r2 = anonymize_window(w2, r1.state, cfg(2, max_delay=1))
    odd = by_pid(r2)[pid_of("odd")]
    assert [(pf.ts_ms, pf.level, pf.imputed, pf.n_samples) for pf in odd] == [(T0, 9, True, 2), (T0 + 5000, 9, True, 1)]
    assert r2.state.carry == []
    m = r2.metrics
    assert (m.frames_in, m.frames_carried_in, m.frames_published, m.frames_suppressed, m.frames_carried_out) == (
        3,
        1,
        2,
        2,
        0,
    )
    assert m.accounting_ok()
    assert r2.state.frames_carried_over == 1 and r2.state.windows == 2


def test_longer_max_delay_carries_twice() -> None:
    state = None
    for w in range(3):
        res = anonymize_window([frame("odd", 90, "M", "99999", [1.0], ts_ms=T0 + w * 5000)], state, cfg(2, max_delay=2))
        state = res.state
        if w < 2:
            assert res.published == [] and len(state.carry) == w + 1
            assert max(wt for _, wt in state.carry) == w + 1
        else:
            assert [pf.level for pf in res.published] == [9, 9, 9]
            assert state.carry == []


def test_carried_patient_published_when_peers_arrive() -> None:
    r1 = anonymize_window([frame("x", 90, "M", "99999", [1.0], ts_ms=T0)], None, cfg(2, max_delay=1))
    assert r1.published == []
    r2 = anonymize_window([frame("y", 91, "M", "99998", [1.0], ts_ms=T0 + 5000)], r1.state, cfg(2, max_delay=1))
    assert [(pf.pid, pf.ts_ms, pf.level) for pf in r2.published] == sorted(
        [(pid_of("x"), T0, 1), (pid_of("y"), T0 + 5000, 1)]
    )
    assert r2.published[0].qi == {"age": "90-94", "sex": "M", "zip": "9999*"}


def test_running_mean_used_when_window_has_no_published_values() -> None:
    r1 = anonymize_window(
        [frame("a", 51, "F", "10115", [0.2, 0.4], hr=60.0), frame("b", 52, "F", "10116", [0.6], hr=80.0)],
        None,
        cfg(2),
    )
    r2 = anonymize_window([frame("c", 30, "M", "55555", [9.0, 9.0], hr=100.0)], r1.state, cfg(2))
    (pf,) = r2.published
    assert pf.level == 9 and pf.imputed
    assert pf.ecg_mv.tolist() == pytest.approx([0.4, 0.4])
    assert pf.hr_bpm == pytest.approx(70.0)
    # No history at all: 0.0 and nan.
    r0 = anonymize_window([frame("c", 30, "M", "55555", [9.0], hr=100.0)], None, cfg(2))
    assert r0.published[0].ecg_mv.tolist() == [0.0]
    assert math.isnan(r0.published[0].hr_bpm)


def test_k_larger_than_patients_publishes_nothing_below_level_9() -> None:
    frames = [frame(f"p{i}", 50, "F", "10115", [0.1], ts_ms=T0 + i) for i in range(4)]
    res = anonymize_window(frames, None, cfg(5))
    assert {pf.level for pf in res.published} == {9}
    res = anonymize_window(frames, None, cfg(5, max_delay=1))
    assert res.published == [] and len(res.state.carry) == 4


def test_l_diversity_pushes_classes_up() -> None:
    frames = [frame(f"s{i}", 51 + i % 3, "F", f"1011{i}", [0.1], sensitive="I10") for i in range(4)]
    frames += [frame(f"t{i}", 56 + i % 3, "F", f"1012{i}", [0.1], sensitive="I48") for i in range(4)]
    plain = anonymize_window(frames, None, cfg(2))
    assert {pf.level for pf in plain.published} == {1}
    div = anonymize_window(frames, None, cfg(2, l_div=2))
    assert {pf.level for pf in div.published} == {2}
    assert {pf.qi["age"] for pf in div.published} == {"50-59"}
    # A class that can never reach l distinct values ends up suppressed.
    same = anonymize_window(frames[:4], None, cfg(2, l_div=2))
    assert {pf.level for pf in same.published} == {9}


def test_hr_derived_from_r_peaks_when_missing() -> None:
    rng = np.random.default_rng(3)
    frames = []
    for j, raw in enumerate(["a", "b"]):
        sig = synth_ecg(75.0, 250.0, 1250, rng)
        for i in range(5):
            frames.append(frame(raw, 51 + j, "F", "10115", sig[i * 250 : (i + 1) * 250], ts_ms=T0 + i * 1000))
    res = anonymize_window(frames, None, cfg(2))
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
    res = anonymize_window(frames, None, cfg(2))
    assert {pf.pid: pf.hr_bpm for pf in res.published} == {pid_of("a"): 64.0, pid_of("b"): 64.0}
    assert res.state.hr_count == 1  # the fallback value is not fed back into the running mean


def test_first_frame_in_time_defines_the_patient_qis() -> None:
    frames = [
        frame("a", 70, "M", "20000", [0.1], ts_ms=T0 + 1000),  # later frame, different QIs
        frame("a", 51, "F", "10115", [0.1], ts_ms=T0),
        frame("b", 52, "F", "10116", [0.1], ts_ms=T0),
    ]
    res = anonymize_window(frames, None, cfg(2))
    assert {(pf.pid, pf.level, pf.qi["age"]) for pf in res.published} == {
        (pid_of("a"), 1, "50-54"),
        (pid_of("b"), 1, "50-54"),
    }
    assert len(res.published) == 3


def test_deterministic_and_state_not_mutated() -> None:
    pop = make_population(60, seed=5)
    frames = make_window(pop, frames_per_patient=2, samples_per_frame=50, seed=5)
    r1 = anonymize_window(frames, None, cfg(4, max_delay=1))
    before = pickle.dumps(r1.state)
    shuffled = list(frames)
    random.Random(1).shuffle(shuffled)
    a = anonymize_window(frames, r1.state, cfg(4, max_delay=1))
    b = anonymize_window(shuffled, r1.state, cfg(4, max_delay=1))
    assert pickle.dumps(r1.state) == before
    assert pickle.dumps(a.published) == pickle.dumps(b.published)
    assert pickle.dumps(a.state) == pickle.dumps(b.state)
    assert a.metrics == b.metrics


def test_no_raw_identifier_in_any_output() -> None:
    raw_ids = [f"MRN-RAW-{i:05d}" for i in range(30)]
    frames = [
        frame(r, 40 + i % 7, "FM"[i % 2], f"1{i % 3}115", [0.1 * i, 0.2], ts_ms=T0 + i) for i, r in enumerate(raw_ids)
    ]
    res = anonymize_window(frames, KeyState(), cfg(3, max_delay=1))
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
    res = anonymize_window(frames, None, cfg(2))
    line = res.metrics.log_line()
    assert line == "levels {1: 2, 9: 1} suppressed 33.3% NCP 0.50 k=2 patients=3 carried=0", line
    restored = pickle.loads(pickle.dumps(res.state))
    assert isinstance(restored, KeyState) and restored.frames_by_level == {1: 2, 9: 1}


def test_empty_window() -> None:
    res = anonymize_window([], None, cfg(2))
    assert res.published == [] and res.metrics.distinct_patients == 0 and res.metrics.accounting_ok()
    assert res.metrics.ncp == 0.0 and res.state.windows == 1
