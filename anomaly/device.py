"""One device's whole branch, as a pure state machine: beats -> windows -> anomalies, the local
model and its updates, and the global prior of a device that joins.

The Flink operator (operators/anomaly_models.py) keeps one `DeviceState` per pid in keyed state and calls
`on_frame` / `on_poll`; `benchmarks/anomaly_evaluation.py` and the tests call the same functions in
event-time order as the reference model of the job.

Joining with the global prior (MODEL_GLOBAL_PRIOR=true): a device seen for the first time at event
time t waits for global round ``prior_round(t)`` -- the newest round closed by t, chosen by event
time alone -- buffering its frames meanwhile, then starts from that round's weights (or cold when
the round says nobody has contributed yet) and processes its buffer. Which prior a device gets
never depends on when the global update happened to arrive, so a replay scores every window with
the same model (docs/anomalies.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anomaly.beats import BeatSource
from anomaly.detector import Detector, DetectorConfig, DetectorState
from anomaly.events import AnomalyEvent
from anomaly.quality import DEFAULT_NOISE_MV, noise_level_mv
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


@dataclass
class BufferedFrame:
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
    buffer: list[BufferedFrame] = field(default_factory=list)
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


class DeviceProcessor:
    def __init__(self, config: DeviceConfig, beat_source: BeatSource) -> None:
        self.config = config
        self.beat_source = beat_source

    def on_frame(self, state: DeviceState | None, frame: FrameInput,
                 lookup: GlobalLookup) -> tuple[DeviceState, list[DeviceOutput]]:
        out: list[DeviceOutput] = []
        if state is None:
            state = self._new(frame)
            if state.phase == WAITING:
                assert state.wanted_round is not None
                out.append(JoinSignal(frame.pid, frame.ts_ms, state.wanted_round))
        end = frame_end_ms(frame.ts_ms, frame.fs, int(frame.samples.shape[0]))
        if state.last_end_ms is not None and frame.ts_ms < state.last_end_ms:
            # Frames of a device arrive in order (one Kafka partition per device); anything
            # older than what was processed would rewrite the past and is counted and dropped.
            state.frames_out_of_order += 1
            return state, out
        state.last_ts_ms, state.last_end_ms = frame.ts_ms, end
        state.frames += 1
        if state.phase == WAITING:
            state.buffer.append(BufferedFrame(frame.ts_ms, float(frame.fs), frame.samples))
            out.extend(self._try_release(state, lookup))
        else:
            out.extend(self._process(state, frame.ts_ms, float(frame.fs), frame.samples))
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
            out.extend(self._process(state, item.ts_ms, item.fs, item.samples))
        out.append(ReadySignal(state.pid))
        return out

    def _process(self, state: DeviceState, ts_ms: int, fs: float, samples: np.ndarray) -> list[DeviceOutput]:
        out: list[DeviceOutput] = []
        crossing = self.config.clock.crossing_round(state.processed_ts_ms, ts_ms)
        state.processed_ts_ms = ts_ms
        if crossing is not None:
            update = self._local_update(state, crossing, ts_ms)
            if update is not None:
                out.append(update)
        state.beats, beats = self.beat_source.feed(state.beats, ts_ms, fs, samples)
        noisy = noise_level_mv(samples) > self.config.noise_mv
        detector = Detector(self.config.detector, state.pid)
        out.extend(detector.process_frame(state.detector, ts_ms, frame_end_ms(ts_ms, fs, int(samples.shape[0])),
                                          noisy, beats.times_ms, beats.confirmed_until_ms))
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
