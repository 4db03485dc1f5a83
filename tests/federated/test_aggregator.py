"""The FedAvg aggregator state machine: rounds close by event time, any arrival order gives the
same global updates, joining devices hold rounds open, requested empty rounds answer."""

from __future__ import annotations

import random

import pytest

from federated.aggregator import Aggregator, AggregatorState
from federated.messages import GlobalUpdate, JoinSignal, LocalUpdate, ModelSignal, ReadySignal
from federated.model import ModelWeights
from federated.rounds import RoundClock

CLOCK = RoundClock(60_000, 5_000)
R = 30_000_000  # a round number of today's epoch time


def w(hr: float) -> ModelWeights:
    return ModelWeights(hr, hr * hr + 9.0, hr, hr * hr + 1.0, (0.5, 0.1, 0.0, 0.0))


def local(pid: str, round_number: int, hr: float, n: int) -> LocalUpdate:
    return LocalUpdate(pid, round_number, w(hr), n, CLOCK.start_ms(round_number) + 100, None)


def globals_of(outputs: list) -> list[GlobalUpdate]:  # type: ignore[type-arg]
    return [o for o in outputs if isinstance(o, GlobalUpdate)]


def test_round_closes_when_event_time_reaches_its_close_time() -> None:
    agg, state = Aggregator(CLOCK), AggregatorState()
    close = CLOCK.close_ms(R)
    assert globals_of(agg.on_signal(state, local("a", R, 60.0, 2), close - 2)) == []
    out = agg.on_signal(state, local("b", R, 90.0, 6), close - 2)
    assert [o.pid for o in out if isinstance(o, LocalUpdate)] == ["b"]  # passed through for publishing
    assert agg.rounds_to_schedule(state) == [close - 1]
    (update,) = globals_of(agg.close(state, close - 1))
    assert update.round == R and update.n_samples == 8 and update.clients == 2 and update.ts_ms == close
    assert update.weights is not None and update.weights.hr30_mean == pytest.approx(82.5)
    assert update.carried_from is None
    assert agg.close(state, close + 1000) == []  # nothing twice
    # Rounds increase.
    agg.on_signal(state, local("a", R + 1, 61.0, 3), CLOCK.close_ms(R + 1) - 2)
    (second,) = globals_of(agg.close(state, CLOCK.close_ms(R + 1) - 1))
    assert second.round == R + 1


def test_same_global_updates_in_any_arrival_order() -> None:
    """Per-device order kept, devices interleaved at random, watermarks advancing at random (never
    past a record that is still to come, as per-partition watermarks guarantee)."""
    devices = {f"p{i}": [local(f"p{i}", R + r, 60.0 + 5 * i + r, 1 + i + r) for r in range(4)] for i in range(5)}
    reference: list[str] | None = None
    for seed in range(30):
        rng = random.Random(seed)
        queues = {pid: list(updates) for pid, updates in devices.items()}
        agg, state, published = Aggregator(CLOCK), AggregatorState(), []
        watermark = -(2**63)
        while any(queues.values()):
            pid = rng.choice([p for p, q in queues.items() if q])
            update = queues[pid].pop(0)
            pending_ts = [q[0].ts_ms for q in queues.values() if q] + [update.ts_ms]
            watermark = max(watermark, rng.randint(watermark if watermark > 0 else 0, min(pending_ts) - 1))
            published += [g.to_json() for g in globals_of(agg.on_signal(state, update, watermark))]
        published += [g.to_json() for g in globals_of(agg.close(state, 2**62))]
        assert len(published) == 4
        if reference is None:
            reference = published
        assert published == reference  # same rounds, same bytes, same order


def test_a_joining_device_holds_later_rounds_until_ready() -> None:
    agg, state = Aggregator(CLOCK), AggregatorState()
    join_ts = CLOCK.close_ms(R) + 7_000  # joins after round R closed: its prior is round R
    assert CLOCK.prior_round(join_ts) == R
    agg.on_signal(state, local("a", R, 70.0, 4), CLOCK.close_ms(R) - 10)
    out = agg.on_signal(state, JoinSignal("new", join_ts, R), CLOCK.close_ms(R) - 10)
    assert globals_of(out) == []
    # Round R closes (its close time is before the join), round R+1 must wait for "new".
    closed = globals_of(agg.on_signal(state, local("a", R + 1, 71.0, 5), CLOCK.close_ms(R + 1) - 10))
    closed += globals_of(agg.close(state, CLOCK.close_ms(R + 1) + 50_000))
    assert [g.round for g in closed] == [R]
    # The new device catches up: its buffered frames crossed into R+1.
    agg.on_signal(state, local("new", R + 1, 90.0, 1), CLOCK.close_ms(R + 1) + 50_000)
    out = agg.on_signal(state, ReadySignal("new"), CLOCK.close_ms(R + 1) + 50_000)
    (update,) = globals_of(out)
    assert update.round == R + 1 and update.clients == 2 and update.n_samples == 6


def test_join_asks_for_an_empty_round() -> None:
    agg, state = Aggregator(CLOCK), AggregatorState()
    # Nothing has happened yet: the first device's prior round is answered with weights null.
    out = agg.on_signal(state, JoinSignal("first", CLOCK.close_ms(R) + 1, R), CLOCK.close_ms(R) - 1000)
    assert globals_of(out) == []  # round R is not closed yet
    (empty,) = globals_of(agg.close(state, CLOCK.close_ms(R) - 1))
    assert empty.round == R and empty.weights is None and empty.carried_from is None and empty.n_samples == 0
    agg.on_signal(state, ReadySignal("first"), CLOCK.close_ms(R))
    # Round R+1 gets an update, R+2 none; a device joining in R+3 asks for R+2 (already closed).
    agg.on_signal(state, local("first", R + 1, 75.0, 3), CLOCK.close_ms(R + 1) - 10)
    (r1,) = globals_of(agg.close(state, CLOCK.close_ms(R + 2) + 100))
    join_ts = CLOCK.close_ms(R + 2) + 200
    (carried,) = globals_of(agg.on_signal(state, JoinSignal("late", join_ts, R + 2), join_ts - 1))
    assert carried.round == R + 2 and carried.weights == r1.weights and carried.carried_from == R + 1
    # Asked again (another device): published once only.
    assert globals_of(agg.on_signal(state, JoinSignal("later", join_ts + 5, R + 2), join_ts)) == []


def test_update_after_its_round_closed_is_counted_late() -> None:
    agg, state = Aggregator(CLOCK), AggregatorState()
    agg.close(state, CLOCK.close_ms(R) + 1)
    out = agg.on_signal(state, local("a", R, 70.0, 1), CLOCK.close_ms(R) + 1)
    assert [type(o) for o in out] == [LocalUpdate] and state.late_updates == 1


def test_signals_are_picklable_state() -> None:
    import pickle

    agg, state = Aggregator(CLOCK), AggregatorState()
    signals: list[ModelSignal] = [local("a", R, 70.0, 1), JoinSignal("b", CLOCK.close_ms(R) + 5, R)]
    for signal in signals:
        agg.on_signal(state, signal, CLOCK.close_ms(R) - 2)
    restored = pickle.loads(pickle.dumps(state))
    assert [g.to_json() for g in globals_of(agg.close(restored, 2**62))] == \
        [g.to_json() for g in globals_of(agg.close(state, 2**62))]
