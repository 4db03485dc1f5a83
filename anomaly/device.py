"""One device's whole branch, as a pure state machine: beats -> windows -> anomalies, the local
model and its updates, and the global prior of a device that joins.

The Flink operator (operators/anomaly_models.py) keeps one `DeviceState` per pid in keyed state and calls
`on_frames` / `on_poll`; `benchmarks/anomaly_evaluation.py` and the tests call the same functions in
event-time order as the reference model of the job (testkit.branch_model).

Blocks (issue 24): the job hands a device's frames to `on_frames` in blocks, the frames of one aligned event-time
block of BLOCK_MS (`frame_blocks` says which; connectors/java FrameBlocks forms them in the job). A block's
contiguous frames go through the beat detector as one signal (one call instead of one per 1 s frame, the
detector's per-call cost was most of the branch's work); the anomaly rules still see each frame in turn, with the
beats that lie before its end. The outputs depend on the frames and the block length only, never on arrival time.

Joining with the global prior (MODEL_GLOBAL_PRIOR=true): a device seen for the first time at event
time t waits for global round ``prior_round(t)`` -- the newest round closed by t, chosen by event
time alone -- buffering its frames meanwhile, then starts from that round's weights (or cold when
the round says nobody has contributed yet) and processes its buffer. Which prior a device gets
never depends on when the global update happened to arrive, so a replay scores every window with
the same model (docs/anomalies.md).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anomaly.beats import BeatSource
from anomaly.detector import Detector, DetectorConfig, DetectorState
from anomaly.events import AnomalyEvent
from anomaly.quality import DEFAULT_NOISE_MV, noise_levels_mv
from federated.dp import privatize
from federated.messages import GlobalUpdate, JoinSignal, LocalUpdate, ReadySignal
from federated.rounds import RoundClock

WAITING = "waiting"
LIVE = "live"

DeviceOutput = AnomalyEvent | LocalUpdate | JoinSignal | ReadySignal
GlobalLookup = Callable[[int], GlobalUpdate | None]


@dataclass(frozen=True)
class DeviceConfig:
    detector: DetectorConfig
    clock: RoundClock
    use_prior: bool = True
    prior_timeout_ms: int = 120_000  # wall-clock wait for the prior before starting cold (counted)
    noise_mv: float = DEFAULT_NOISE_MV
    dp_clip_norm: float = 0.0  # 0: DP-FedAvg off
    dp_noise_multiplier: float = 0.0
    dp_secret: bytes = b""
    block_ms: int = 5_000  # CARDIO_BLOCK_SECONDS: frames per detector call (see frame_blocks)


@dataclass
class BufferedFrame:  # kept to restore device states of earlier versions
    ts_ms: int
    fs: float
    samples: np.ndarray


@dataclass
class DeviceState:
    pid: str
    phase: str
    join_ts_ms: int
    wanted_round: int | None
    beats: Any
    detector: DetectorState = field(default_factory=DetectorState)
    # Blocks that came while waiting (a BufferedFrame: one frame buffered by an earlier version).
    buffer: list[list[FrameInput] | BufferedFrame] = field(default_factory=list)
    waited_ms: int = 0
    prior_timed_out: bool = False
    last_ts_ms: int | None = None  # the last frame processed or buffered
    last_end_ms: int | None = None
    processed_ts_ms: int | None = None  # the last frame processed (not buffered)
    frames: int = 0
    frames_out_of_order: int = 0
    local_updates: int = 0


@dataclass(frozen=True)
class FrameInput:
    pid: str
    ts_ms: int
    fs: float
    samples: np.ndarray


def frame_end_ms(ts_ms: int, fs: float, n_samples: int) -> int:
    return ts_ms + round(1000.0 * n_samples / fs)


def frame_blocks(frames: Iterable[FrameInput], block_ms: int) -> Iterator[list[FrameInput]]:
    """One device's frames, in arrival order, cut into the blocks the job's FrameBlocks operator forms: the frames
    of one event-time block [s, s + block_ms) (s a multiple of block_ms) that come one after another; a block
    ends early with the frame that reaches its end. (FrameBlocks also ends one when the watermark passes its end,
    which changes nothing for frames that arrive in order: the next frame would be of a later block.)"""
    block: list[FrameInput] = []
    start = 0
    for frame in frames:
        frame_start = frame.ts_ms - frame.ts_ms % block_ms
        if block and frame_start != start:
            yield block
            block = []
        start = frame_start
        block.append(frame)
        # FrameBlocks' end: Java's Math.round (half up), not Python's round (half to even).
        if frame.ts_ms + math.floor(1000.0 * frame.samples.shape[0] / frame.fs + 0.5) >= start + block_ms:
            yield block
            block = []
    if block:
        yield block


def _contiguous_runs(frames: list[FrameInput]) -> Iterator[list[FrameInput]]:
    """Runs of frames that continue one another (the next starts where the run's samples end, within a sample,
    at the same rate, all samples finite): what the beat detector would treat as one signal frame by frame."""
    run: list[FrameInput] = []
    expected = 0.0
    for frame in frames:
        finite = bool(np.isfinite(frame.samples).all())
        if run and (not finite or frame.fs != run[0].fs or abs(frame.ts_ms - expected) > 1000.0 / frame.fs + 1.0):
            yield run
            run = []
        if not finite:
            yield [frame]
            continue
        if not run:
            expected = float(frame.ts_ms)
        run.append(frame)
        expected += 1000.0 * frame.samples.shape[0] / frame.fs
    if run:
        yield run


class DeviceProcessor:
    def __init__(self, config: DeviceConfig, beat_source: BeatSource) -> None:
        self.config = config
        self.beat_source = beat_source

    def on_frame(self, state: DeviceState | None, frame: FrameInput,
                 lookup: GlobalLookup) -> tuple[DeviceState, list[DeviceOutput]]:
        """A block of one frame."""
        return self.on_frames(state, [frame], lookup)

    def on_frames(self, state: DeviceState | None, frames: list[FrameInput],
                  lookup: GlobalLookup) -> tuple[DeviceState, list[DeviceOutput]]:
        """One block of a device's frames (`frame_blocks`), in arrival order."""
        out: list[DeviceOutput] = []
        if state is None:
            state = self._new(frames[0])
            if state.phase == WAITING:
                assert state.wanted_round is not None
                out.append(JoinSignal(frames[0].pid, frames[0].ts_ms, state.wanted_round))
        accepted: list[FrameInput] = []
        for frame in frames:
            end = frame_end_ms(frame.ts_ms, frame.fs, int(frame.samples.shape[0]))
            if state.last_end_ms is not None and frame.ts_ms < state.last_end_ms:
                # Frames of a device arrive in order (one Kafka partition per device); anything
                # older than what was processed would rewrite the past and is counted and dropped.
                state.frames_out_of_order += 1
                continue
            state.last_ts_ms, state.last_end_ms = frame.ts_ms, end
            state.frames += 1
            accepted.append(frame)
        if not accepted:
            return state, out
        if state.phase == WAITING:
            state.buffer.append(accepted)
            out.extend(self._try_release(state, lookup))
        else:
            out.extend(self._process(state, accepted))
        return state, out

    def on_poll(self, state: DeviceState, lookup: GlobalLookup, waited_ms: int) -> list[DeviceOutput]:
        """Called while a device waits (a processing-time timer): the prior may have arrived."""
        if state.phase != WAITING:
            return []
        state.waited_ms += waited_ms
        return self._try_release(state, lookup)

    # --- internals -----------------------------------------------------------------------------

    def _new(self, frame: FrameInput) -> DeviceState:
        clock = self.config.clock
        waiting = self.config.use_prior
        return DeviceState(
            pid=frame.pid,
            phase=WAITING if waiting else LIVE,
            join_ts_ms=frame.ts_ms,
            wanted_round=clock.prior_round(frame.ts_ms) if waiting else None,
            beats=self.beat_source.start(float(frame.fs)),
        )

    def _try_release(self, state: DeviceState, lookup: GlobalLookup) -> list[DeviceOutput]:
        assert state.wanted_round is not None
        prior = lookup(state.wanted_round)
        if prior is None:
            if state.waited_ms < self.config.prior_timeout_ms:
                return []
            state.prior_timed_out = True  # counted: from here on this device is not replay-exact
        else:
            weight = float(self.config.detector.warmup_windows)
            state.detector.apply_prior(prior.round, prior.weights, weight)
        state.phase = LIVE
        out: list[DeviceOutput] = []
        buffered, state.buffer = state.buffer, []
        for item in buffered:
            block = item if isinstance(item, list) else [FrameInput(state.pid, item.ts_ms, item.fs, item.samples)]
            out.extend(self._process(state, block))
        out.append(ReadySignal(state.pid))
        return out

    def _process(self, state: DeviceState, frames: list[FrameInput]) -> list[DeviceOutput]:
        out: list[DeviceOutput] = []
        detector = Detector(self.config.detector, state.pid)
        for run in _contiguous_runs(frames):
            samples = run[0].samples if len(run) == 1 else np.concatenate([f.samples for f in run])
            state.beats, beats = self.beat_source.feed(state.beats, run[0].ts_ms, float(run[0].fs), samples)
            times, confirmed_until = beats.times_ms, beats.confirmed_until_ms
            first = 0
            noise_levels = noise_levels_mv([frame.samples for frame in run])
            for index, frame in enumerate(run):
                crossing = self.config.clock.crossing_round(state.processed_ts_ms, frame.ts_ms)
                state.processed_ts_ms = frame.ts_ms
                if crossing is not None:
                    update = self._local_update(state, crossing, frame.ts_ms)
                    if update is not None:
                        out.append(update)
                end = frame_end_ms(frame.ts_ms, frame.fs, int(frame.samples.shape[0]))
                # The frame sees the run's beats before its end, final up to its end (the last frame: up to where
                # the detector has confirmed them), as if the detector had been fed up to this frame.
                last = index == len(run) - 1
                until = len(times) if last else bisect_left(times, end, lo=first)
                noisy = noise_levels[index] > self.config.noise_mv
                out.extend(detector.process_frame(state.detector, frame.ts_ms, end, noisy, times[first:until],
                                                  confirmed_until if last else min(end, confirmed_until)))
                first = until
        return out

    def _local_update(self, state: DeviceState, round_number: int, ts_ms: int) -> LocalUpdate | None:
        """The device's model as of the round boundary (before this frame), DP-noised if enabled."""
        model = state.detector.model
        weights = model.weights()
        if weights is None:
            return None
        dp = self.config.dp_clip_norm > 0
        if dp:
            weights = privatize(weights, clip_norm=self.config.dp_clip_norm,
                                noise_multiplier=self.config.dp_noise_multiplier, secret=self.config.dp_secret,
                                pid=state.pid, round_number=round_number)
        state.local_updates += 1
        return LocalUpdate(state.pid, round_number, weights, model.n_samples, ts_ms, state.detector.prior_round, dp)
