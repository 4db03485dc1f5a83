"""A device's branch as a state machine: joining waits for exactly the prior round its join time
names, buffered frames are processed after it, local updates at round boundaries, and the
sequential reference pipeline is the same whatever the devices' interleaving."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import numpy as np

from anomaly.beats import Beats
from anomaly.detector import DetectorConfig
from anomaly.device import LIVE, WAITING, BufferedFrame, DeviceConfig, DeviceProcessor, FrameInput, frame_blocks
from federated.messages import GlobalUpdate, JoinSignal, LocalUpdate, ReadySignal
from federated.model import ModelWeights
from federated.rounds import RoundClock
from testkit.branch_model import run_branch

CLOCK = RoundClock(60_000, 5_000)
T0 = 1_763_812_800_000  # a round boundary (multiple of 60 s)
FS = 100.0


class ScheduledBeats:
    """Test double of the beat detector: reports the beats of a fixed schedule per device (by the
    frame's first sample value, the device number), confirmed 250 ms behind each frame's end."""

    def __init__(self, rr_ms: dict[int, int]) -> None:
        self.rr_ms = rr_ms

    def start(self, fs: float) -> Any:
        return {"last": None}

    def feed(self, state: Any, ts_ms: int, fs: float, samples: np.ndarray) -> tuple[Any, Beats]:
        rr = self.rr_ms[int(samples[0])]
        confirmed = ts_ms + round(1000 * samples.size / fs) - 250
        last = state["last"] if state["last"] is not None else ts_ms - rr
        beats = []
        while last + rr < confirmed:
            last += rr
            beats.append(last)
        return {"last": last}, Beats(beats, confirmed)


def frame(device: int, ts_ms: int) -> FrameInput:
    return FrameInput(f"pid-{device}", ts_ms, FS, np.full(int(FS), float(device)))


def config(**changes: Any) -> DeviceConfig:
    return dataclasses.replace(DeviceConfig(DetectorConfig(), CLOCK), **changes)


def test_join_waits_for_its_prior_round_and_then_processes_the_buffer() -> None:
    processor = DeviceProcessor(config(), ScheduledBeats({1: 500}))  # 120 bpm
    published: dict[int, GlobalUpdate] = {}
    join_ts = T0 + 7_000
    state, out = processor.on_frame(None, frame(1, join_ts), published.get)
    wanted = CLOCK.prior_round(join_ts)  # round of T0 closed at T0 + 5 s
    assert out == [JoinSignal("pid-1", join_ts, wanted)] and state.phase == WAITING
    for second in range(1, 55):
        state, out = processor.on_frame(state, frame(1, join_ts + 1000 * second), published.get)
        assert out == [] and len(state.buffer) == second + 1
    assert processor.on_poll(state, published.get, 500) == []
    # The prior of another round does not release it; its own round does.
    prior = ModelWeights(70.0, 70.0**2 + 25.0, 70.0, 70.0**2 + 9.0)
    published[wanted - 1] = GlobalUpdate(wanted - 1, prior, 10, 2, CLOCK.close_ms(wanted - 1), None)
    assert processor.on_poll(state, published.get, 500) == []
    published[wanted] = GlobalUpdate(wanted, prior, 12, 3, CLOCK.close_ms(wanted), None)
    out = processor.on_poll(state, published.get, 500)
    assert state.phase == LIVE and state.buffer == [] and isinstance(out[-1], ReadySignal)
    # The first complete 30 s window [T0+30 s, T0+60 s) is scored with the prior: 120 bpm vs 70 +- 5.
    kinds = [(o.kind, o.model_version, o.window_start_ms) for o in out if hasattr(o, "kind")]
    assert ("hr_zscore_30s", f"global-{wanted}+w0", T0 + 30_000) in kinds
    assert pickle.loads(pickle.dumps(state)).detector.prior_round == wanted


def test_empty_prior_round_means_cold_start() -> None:
    processor = DeviceProcessor(config(), ScheduledBeats({1: 1000}))
    wanted = CLOCK.prior_round(T0)
    published = {wanted: GlobalUpdate(wanted, None, 0, 0, CLOCK.close_ms(wanted), None)}
    state, out = processor.on_frame(None, frame(1, T0), published.get)
    assert isinstance(out[0], JoinSignal) and isinstance(out[-1], ReadySignal)
    assert state.phase == LIVE and state.detector.prior_round == wanted and not state.detector.has_prior_weights


def test_local_only_mode_never_waits() -> None:
    processor = DeviceProcessor(config(use_prior=False), ScheduledBeats({1: 1000}))
    state, out = processor.on_frame(None, frame(1, T0), {}.get)
    assert out == [] and state.phase == LIVE


def test_prior_timeout_starts_cold_and_is_counted() -> None:
    processor = DeviceProcessor(config(prior_timeout_ms=1000), ScheduledBeats({1: 1000}))
    state, _ = processor.on_frame(None, frame(1, T0), {}.get)
    assert processor.on_poll(state, {}.get, 600) == []
    out = processor.on_poll(state, {}.get, 600)
    assert state.prior_timed_out and state.phase == LIVE and isinstance(out[-1], ReadySignal)


def test_local_update_at_each_round_boundary() -> None:
    processor = DeviceProcessor(config(use_prior=False), ScheduledBeats({1: 1000}))
    state = None
    updates: list[LocalUpdate] = []
    for second in range(0, 185):
        state, out = processor.on_frame(state, frame(1, T0 + 1000 * second), {}.get)
        updates += [o for o in out if isinstance(o, LocalUpdate)]
    assert state is not None
    # Boundaries at 60, 120, 180 s: the first has one complete window (the 2nd completes at 60.75 s).
    assert [(u.round, u.n_samples, u.ts_ms) for u in updates] == [
        (CLOCK.round_of(T0) + 1, 1, T0 + 60_000), (CLOCK.round_of(T0) + 2, 3, T0 + 120_000),
        (CLOCK.round_of(T0) + 3, 5, T0 + 180_000)]
    assert updates[-1].weights.hr30_mean == 60.0 and updates[-1].prior_round is None
    # Out-of-order frames are counted and dropped.
    state, out = processor.on_frame(state, frame(1, T0), {}.get)
    assert out == [] and state.frames_out_of_order == 1


def test_dp_noise_is_deterministic_and_keeps_the_exact_model_on_the_device() -> None:
    processor = DeviceProcessor(config(use_prior=False, dp_clip_norm=0.5, dp_noise_multiplier=1.0,
                                       dp_secret=b"0123456789abcdef"), ScheduledBeats({1: 1000}))
    runs = []
    for _ in range(2):
        state = None
        updates = []
        for second in range(0, 125):
            state, out = processor.on_frame(state, frame(1, T0 + 1000 * second), {}.get)
            updates += [o.to_json() for o in out if isinstance(o, LocalUpdate)]
        runs.append(updates)
        assert state is not None and state.detector.model.own30.mean == 60.0
    assert runs[0] == runs[1] and '"dp": true' in runs[0][0]
    assert '"hr30_mean": 60.0' not in runs[0][1]


def test_reference_pipeline_is_independent_of_interleaving() -> None:
    rr = {1: 1000, 2: 800, 3: 750, 4: 500}
    frames = []
    for second in range(0, 200):
        for device in (1, 2, 3):
            frames.append(frame(device, T0 + 1000 * second))
        if second >= 130:  # device 4 joins late
            frames.append(frame(4, T0 + 1000 * second))
    first = run_branch(frames, config(), ScheduledBeats(rr))
    second = run_branch(list(reversed(frames)), config(), ScheduledBeats(rr))  # sorted by event time inside
    assert [g.to_json() for g in first.global_updates] == [g.to_json() for g in second.global_updates]
    assert sorted(e.to_json() for e in first.anomalies) == sorted(e.to_json() for e in second.anomalies)
    # The late device started from the global of the round closed before it joined (T0+125 s).
    late = first.devices["pid-4"].detector
    assert late.prior_round == CLOCK.prior_round(T0 + 130_000) and late.has_prior_weights
    by_round = first.globals_by_round()
    assert by_round[CLOCK.round_of(T0) + 2].clients == 3
    assert by_round[CLOCK.prior_round(T0)].weights is None  # the first devices started cold


def _starts(blocks: list[list[FrameInput]]) -> list[list[int]]:
    return [[(f.ts_ms - T0) // 100 for f in block] for block in blocks]  # in 100 ms


def test_blocks_are_a_devices_frames_of_one_aligned_event_time_block() -> None:
    aligned = [frame(1, T0 + 1000 * second) for second in range(12)]
    assert _starts(list(frame_blocks(aligned, 5000))) == [
        [0, 10, 20, 30, 40], [50, 60, 70, 80, 90], [100, 110]]  # the 5th frame reaches the block's end
    offset = [frame(1, T0 + 300 + 1000 * second) for second in range(7)]
    assert _starts(list(frame_blocks(offset, 5000))) == [[3, 13, 23, 33, 43], [53, 63]]  # 4.3-5.3 s ends it
    gap = [frame(1, T0 + 1000 * second) for second in (0, 1, 7, 8)]
    assert _starts(list(frame_blocks(gap, 5000))) == [[0, 10], [70, 80]]
    straggler = [frame(1, T0 + 1000 * second) for second in (5, 6, 2)]
    assert _starts(list(frame_blocks(straggler, 5000))) == [[50, 60], [20]]
    assert _starts(list(frame_blocks(aligned[:3], 1000))) == [[0], [10], [20]]


class RecordingBeats(ScheduledBeats):
    def __init__(self, rr_ms: dict[int, int]) -> None:
        super().__init__(rr_ms)
        self.fed: list[tuple[int, int]] = []

    def feed(self, state: Any, ts_ms: int, fs: float, samples: np.ndarray) -> tuple[Any, Beats]:
        self.fed.append((ts_ms - T0, samples.size))
        return super().feed(state, ts_ms, fs, samples)


def test_a_block_goes_through_the_beat_detector_once_per_contiguous_run() -> None:
    beats = RecordingBeats({1: 1000})
    processor = DeviceProcessor(config(use_prior=False, block_ms=10_000), beats)
    block = [frame(1, T0 + 1000 * second) for second in (0, 1, 2, 4, 5)]
    state, _ = processor.on_frames(None, block, {}.get)
    assert beats.fed == [(0, 300), (4000, 200)]  # a gap at 3 s: two signals
    broken = frame(1, T0 + 11_000)
    broken.samples[5] = np.nan
    beats.fed.clear()
    state, _ = processor.on_frames(state, [frame(1, T0 + 10_000), broken, frame(1, T0 + 12_000)], {}.get)
    assert beats.fed == [(10_000, 100), (11_000, 100), (12_000, 100)]  # a frame with a gap in its samples alone
    assert state.frames == 8 and state.frames_out_of_order == 0


def test_each_frame_of_a_block_sees_the_beats_before_its_end() -> None:
    # 1 beat/s: the rules see the same beats and windows as frame by frame, and the local update at the round
    # boundary carries the same model, whatever the block length.
    def updates_and_windows(block_ms: int) -> tuple[list[tuple[int, int, int]], int]:
        processor = DeviceProcessor(config(use_prior=False, block_ms=block_ms), ScheduledBeats({1: 1000}))
        state = None
        updates = []
        frames = [frame(1, T0 + 1000 * second) for second in range(185)]
        for block in frame_blocks(frames, block_ms):
            state, out = processor.on_frames(state, block, {}.get)
            updates += [(u.round, u.n_samples, u.ts_ms) for u in out if isinstance(u, LocalUpdate)]
        assert state is not None
        return updates, state.detector.windows_scored

    per_frame = updates_and_windows(1000)
    assert per_frame[0][0] == (CLOCK.round_of(T0) + 1, 1, T0 + 60_000)
    for block_ms in (5000, 10_000, 30_000):
        assert updates_and_windows(block_ms) == per_frame


def test_a_frame_buffered_by_an_earlier_version_is_processed_at_the_release() -> None:
    processor = DeviceProcessor(config(), ScheduledBeats({1: 500}))
    published: dict[int, GlobalUpdate] = {}
    state, _ = processor.on_frame(None, frame(1, T0 + 7_000), published.get)
    old = frame(1, T0 + 8_000)
    state.buffer.append(BufferedFrame(old.ts_ms, old.fs, old.samples))  # a device state pickled before blocks
    wanted = CLOCK.prior_round(T0 + 7_000)
    published[wanted] = GlobalUpdate(wanted, None, 0, 0, CLOCK.close_ms(wanted), None)
    out = processor.on_poll(state, published.get, 0)
    assert state.phase == LIVE and state.buffer == [] and isinstance(out[-1], ReadySignal)
    assert state.processed_ts_ms == old.ts_ms and state.detector.last_frame_end_ms == old.ts_ms + 1000
