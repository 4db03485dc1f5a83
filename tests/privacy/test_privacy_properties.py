"""Property tests (hypothesis) of anonymize_window over random populations, k, l and delays."""

from __future__ import annotations

import math
import pickle
from collections import Counter, defaultdict

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from privacy_test_helpers import T0

from hierarchy import load_hierarchy
from privacy.kanonymity import AnonymizationConfig, KeyState, WindowResult, anonymize_window
from privacy.model import Frame

H = load_hierarchy()
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


def build(pop: list[dict], window: int, present: list[bool] | None = None) -> list[Frame]:
    frames = []
    for i, p in enumerate(pop):
        if present is not None and not present[i]:
            continue
        for j, (samples, hr) in enumerate(p["frames"]):
            frames.append(
                Frame(
                    pid=f"{i:032x}",
                    lead="II",
                    ts_ms=T0 + window * 100_000 + j * 1000,
                    fs=250.0,
                    samples=np.asarray(samples, dtype=np.float64),
                    qi={"age": p["age"], "sex": p["sex"], "zip": p["zip"]},
                    hr_bpm=hr,
                    sensitive=p["sensitive"],
                )
            )
    return frames


def check_window(res: WindowResult, inputs: list[Frame], carried_in: list[Frame], cfg: AnonymizationConfig) -> None:
    # Levels in range, one level and one QI tuple per pid.
    per_pid: dict[str, set[tuple]] = defaultdict(set)
    for pf in res.published:
        assert 1 <= pf.level <= 9
        per_pid[pf.pid].add((pf.level, tuple(sorted(pf.qi.items()))))
        assert set(pf.qi) == set(H.quasi_identifiers)
        if pf.level == 9:
            assert pf.imputed and set(pf.qi.values()) == {"*"}
            assert np.all(pf.ecg_mv == pf.ecg_mv[0])
        else:
            assert not pf.imputed
    assert all(len(v) == 1 for v in per_pid.values())

    # THE property: every published class holds >= k distinct patients (and >= l sensitive values).
    sens = {f.pid: f.sensitive for f in sorted(inputs + carried_in, key=lambda f: (f.pid, f.ts_ms), reverse=True)}
    cls: dict[tuple, set[str]] = defaultdict(set)
    for pf in res.published:
        if pf.level < 9:
            cls[(pf.level, tuple(sorted(pf.qi.items())))].add(pf.pid)
    for members in cls.values():
        assert len(members) >= cfg.k
        if cfg.l_diversity:
            assert len({sens[p] for p in members if sens[p] is not None}) >= cfg.l_diversity

    # Every input frame/sample exactly once: published (incl. imputed) or carried over.
    raw = {(f.pid, f.ts_ms, f.lead): f for f in inputs + carried_in}
    assert len(raw) == len(inputs) + len(carried_in)
    out = Counter((pf.pid, pf.ts_ms, pf.lead) for pf in res.published)
    out.update((f.pid, f.ts_ms, f.lead) for f, _ in res.state.carry)
    assert out == Counter(raw.keys())
    for pf in res.published:
        src = raw[(pf.pid, pf.ts_ms, pf.lead)]
        assert pf.n_samples == src.n_samples
        if pf.level < 9:
            np.testing.assert_array_equal(pf.ecg_mv, H.round_ecg(src.samples, pf.level))
            assert np.all(np.abs(pf.ecg_mv - src.samples) <= H.ecg_precision(pf.level) / 2 + 1e-9)
    assert res.metrics.accounting_ok()
    assert all(w <= cfg.max_delay_windows for _, w in res.state.carry)
    if cfg.k > len({f.pid for f in inputs + carried_in}):
        assert all(pf.level == 9 for pf in res.published)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pop=population,
    k=st.integers(1, 6),
    l_div=st.integers(0, 3),
    max_delay=st.integers(0, 2),
    present2=st.lists(st.booleans(), min_size=24, max_size=24),
    rnd=st.randoms(use_true_random=False),
)
def test_windows_hold_the_invariants(
    pop: list[dict], k: int, l_div: int, max_delay: int, present2: list[bool], rnd
) -> None:
    cfg = AnonymizationConfig(H, k, max_delay_windows=max_delay, l_diversity=l_div)
    state: KeyState | None = None
    for window, present in enumerate([None, present2]):
        frames = build(pop, window, present)
        carried_in = [f for f, _ in state.carry] if state else []
        res = anonymize_window(frames, state, cfg)
        check_window(res, frames, carried_in, cfg)
        # Determinism: any input order, same bytes out.
        shuffled = list(frames)
        rnd.shuffle(shuffled)
        again = anonymize_window(shuffled, state, cfg)
        assert pickle.dumps(again.published) == pickle.dumps(res.published)
        assert pickle.dumps(again.state) == pickle.dumps(res.state)
        state = res.state
