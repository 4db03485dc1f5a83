"""Per-device heart-rate anomaly detection in event time (pure; one state per device).

Input per frame: the frame's span, whether it is noisy (anomaly.quality) and the beats the beat
detector confirmed meanwhile with the time up to which its beats are final. Output: anomaly events.

- **tachycardia / bradycardia episodes** (beat level, wherever they fall): the rate of the last
  EPISODE_BEATS RR intervals (their median, so a single premature beat or a compensatory pause does not
  count) above TACHY (below BRADY) for at least MIN_EPISODE (8 s) of contiguous trusted beats. One event
  per episode, as soon as it has lasted MIN_EPISODE: window = [the start of its first fast (slow) RR
  interval, the beat that reached MIN_EPISODE), hr = the mean rate over that span, z against the 30 s
  baseline when it is warm. The episode ends when
  the median rate is back inside the limits by HYSTERESIS bpm, or at noise or a silence of 6 s. (Rules on tumbling
  30 s means missed an episode of 20 s split 10 s / 10 s over two windows: each mean stayed in range.)
- **30 s windows** (tumbling, aligned to the epoch): HR = 60000 / mean RR of the RR intervals that
  end in the window (RR 200..3000 ms; beats inside noisy frames are dropped). A window is scored
  once the beat detector has confirmed its end: z = (HR - mean) / max(std, MIN_STD) against the
  device's baseline (Welford over its normal 30 s windows, warm after WARMUP windows; a global prior
  counts as WARMUP pseudo-windows). A window whose mean is beyond TACHY / BRADY, or in which a
  reported episode goes on, is not normal: it never enters the baseline.
- **5 min windows** (sliding by 30 s, the last ten 30 s windows, at least 8 of them valid): z against
  a baseline of 5 min values, as in the FLEAD design (short and long event-time windows).
- **asystole**: no trusted beat for ASYSTOLE seconds in a stretch of contiguous, clean frames; one
  event per pause, window = [last beat (or start of the clean stretch), + ASYSTOLE].
- **noise**: a 30 s window of which >= 30 % was noisy frames is reported as `noise`, not scored.

Windows with an anomaly (or an episode) do not update the baseline (a 2-minute tachycardia must not become normal).
Everything depends on the frames' content and event time only, never on arrival time or
watermarks: a replay gives the same events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from anomaly.events import (
    ASYSTOLE,
    BRADYCARDIA,
    NOISE,
    TACHYCARDIA,
    ZSCORE_5MIN,
    ZSCORE_30S,
    AnomalyEvent,
)
from federated.model import AR_ORDER, LocalModel, ModelWeights, ar_predict
from federated.welford import Welford

WINDOW_MS = 30_000
LONG_WINDOWS = 10  # 5 min = ten 30 s windows
MIN_RR_MS, MAX_RR_MS = 200, 3000
# Episodes also take intervals up to 6 s: a beat the detector missed during a bradycardia doubles an
# interval, and must not end the episode (a longer silence is an asystole, and ends it).
MAX_EPISODE_RR_MS = 6000
NOISE_SPAN_MEMORY_MS = 30_000


@dataclass(frozen=True)
class DetectorConfig:
    z_threshold: float = 2.5
    warmup_windows: int = 4
    tachy_bpm: float = 130.0
    brady_bpm: float = 45.0
    asystole_ms: int = 4000
    noisy_fraction: float = 0.3
    min_coverage: float = 0.8
    min_std_bpm: float = 3.0
    min_long_valid: int = 8
    episode_beats: int = 9
    min_episode_ms: int = 8000
    hysteresis_bpm: float = 5.0


@dataclass
class WindowAcc:
    rr_sum: float = 0.0
    rr_count: int = 0
    covered_ms: int = 0
    noisy_ms: int = 0
    asystole: bool = False
    episode: bool = False


@dataclass(frozen=True)
class WindowResult:
    """A completed 30 s window (hr None: not scorable: gap, noise or too few beats)."""

    start_ms: int
    hr: float | None
    rr_sum: float
    rr_count: int
    noisy: bool


@dataclass
class DetectorState:
    windows: dict[int, WindowAcc] = field(default_factory=dict)
    last_beat_ms: int | None = None
    last_frame_end_ms: int | None = None
    clean_since_ms: int | None = None
    asystole_reported_from: int | None = None
    noisy_spans: list[tuple[int, int]] = field(default_factory=list)
    recent: list[WindowResult] = field(default_factory=list)  # last LONG_WINDOWS windows
    history: list[float] = field(default_factory=list)  # last AR_ORDER contiguous normal HRs
    history_end_ms: int | None = None
    completed_through_ms: int = -(2**62)  # windows ending at or before this are complete
    prior30: Welford = field(default_factory=Welford)
    prior300: Welford = field(default_factory=Welford)
    prior_round: int | None = None
    model: LocalModel = field(default_factory=LocalModel)
    windows_scored: int = 0
    prediction_abs_error: float = 0.0
    predictions: int = 0
    # The current rate episode (tuples and scalars: class-level defaults, so device states pickled by an
    # earlier version restore with an idle episode tracker).
    recent_rr: tuple[tuple[int, int], ...] = ()  # (end_ms, rr_ms) of the last trusted RR intervals
    episode_kind: str | None = None
    episode_start_ms: int | None = None
    episode_last_ms: int | None = None  # the end of its latest interval that is itself beyond the limit
    episode_rr_sum: int = 0
    episode_rr_count: int = 0
    episode_reported: bool = False

    def apply_prior(self, round_number: int, weights: ModelWeights | None, weight: float) -> None:
        self.prior_round = round_number
        if weights is None:
            return
        self.prior30 = Welford.from_moments(weight, weights.hr30_mean, weights.hr30_sq_mean)
        self.prior300 = Welford.from_moments(weight, weights.hr300_mean, weights.hr300_sq_mean)
        self.model = replace(self.model, prior_ar=weights.ar)

    @property
    def has_prior_weights(self) -> bool:
        return self.prior30.n > 0

    def baseline30(self) -> Welford:
        return self.prior30.merge(self.model.own30)

    def baseline300(self) -> Welford:
        return self.prior300.merge(self.model.own300)


def model_version(state: DetectorState, warm: bool) -> str:
    own = state.model.n_samples
    if state.has_prior_weights:
        return f"global-{state.prior_round}+w{own}"
    return f"local-w{own}" if warm else "cold"


class Detector:
    def __init__(self, config: DetectorConfig, pid: str) -> None:
        self.config = config
        self.pid = pid

    def process_frame(self, state: DetectorState, start_ms: int, end_ms: int, noisy: bool,
                      beats_ms: list[int], confirmed_until_ms: int) -> list[AnomalyEvent]:
        """One frame [start_ms, end_ms) and the beats confirmed while processing it."""
        events: list[AnomalyEvent] = []
        contiguous = state.last_frame_end_ms is not None and start_ms <= state.last_frame_end_ms
        if not contiguous:
            state.clean_since_ms = start_ms  # a gap: a pause is only counted over frames we have
        state.last_frame_end_ms = max(end_ms, state.last_frame_end_ms or end_ms)
        self._cover(state, start_ms, end_ms, noisy)
        if noisy:
            state.clean_since_ms = end_ms
            state.noisy_spans.append((start_ms, end_ms))
        state.noisy_spans = [s for s in state.noisy_spans if s[1] > end_ms - NOISE_SPAN_MEMORY_MS]

        for beat in beats_ms:
            if any(low <= beat < high for low, high in state.noisy_spans):
                state.last_beat_ms = None  # untrusted beat: no RR across it
                self._end_episode(state)
                continue
            events.extend(self._check_pause(state, beat))
            if state.last_beat_ms is not None:
                rr = beat - state.last_beat_ms
                window_start = beat - beat % WINDOW_MS
                if MIN_RR_MS <= rr <= MAX_EPISODE_RR_MS:
                    events.extend(self._track_episode(state, beat, rr))
                else:
                    self._end_episode(state)
                if MIN_RR_MS <= rr <= MAX_RR_MS and window_start >= state.completed_through_ms:
                    acc = state.windows.setdefault(window_start, WindowAcc())
                    acc.rr_sum += rr
                    acc.rr_count += 1
                    acc.episode = acc.episode or state.episode_reported
            state.last_beat_ms = beat
        events.extend(self._check_pause(state, confirmed_until_ms))

        complete_until = min(confirmed_until_ms, state.last_frame_end_ms)
        for window_start in sorted(state.windows):
            if window_start + WINDOW_MS > complete_until:
                break
            events.extend(self._complete(state, window_start, state.windows.pop(window_start)))
            state.completed_through_ms = window_start + WINDOW_MS
        return events

    # --- rate episodes ---------------------------------------------------------------------------

    def _rate_kind(self, rr_ms: float, inside_by: float = 0.0) -> str | None:
        """The limit a rate (as an RR interval) is beyond; ``inside_by`` > 0 asks for that margin back
        inside the limits before a running episode counts as over."""
        bpm = 60000.0 / rr_ms
        if bpm > self.config.tachy_bpm - inside_by:
            return TACHYCARDIA
        if bpm < self.config.brady_bpm + inside_by:
            return BRADYCARDIA
        return None

    def _end_episode(self, state: DetectorState) -> None:
        state.recent_rr = ()
        state.episode_kind = state.episode_start_ms = state.episode_last_ms = None
        state.episode_rr_sum = state.episode_rr_count = 0
        state.episode_reported = False

    def _track_episode(self, state: DetectorState, beat: int, rr: int) -> list[AnomalyEvent]:
        config = self.config
        state.recent_rr = (*state.recent_rr, (beat, rr))[-config.episode_beats:]
        if len(state.recent_rr) < config.episode_beats:
            return []
        median_rr = float(np.median([interval for _, interval in state.recent_rr]))
        if state.episode_kind is not None:
            if self._rate_kind(median_rr, config.hysteresis_bpm) != state.episode_kind:
                self._end_episode(state)
                state.recent_rr = ((beat, rr),)
                return []
            state.episode_rr_sum += rr
            state.episode_rr_count += 1
            if self._rate_kind(rr) == state.episode_kind:
                state.episode_last_ms = beat
        else:
            kind = self._rate_kind(median_rr)
            if kind is None:
                return []
            # The episode starts with the earliest recent interval beyond the limit from which on most
            # intervals are (the median turns only when most of them are; an isolated premature beat
            # well before does not move the start).
            beyond = [self._rate_kind(interval) == kind for _, interval in state.recent_rr]
            first = next((index for index in range(len(beyond))
                          if beyond[index] and 2 * sum(beyond[index:]) > len(beyond) - index), None)
            if first is None:
                return []
            since = state.recent_rr[first:]
            state.episode_kind, state.episode_start_ms = kind, since[0][0] - since[0][1]
            state.episode_rr_sum = sum(interval for _, interval in since)
            state.episode_rr_count = len(since)
            state.episode_last_ms = max(end for end, interval in since if self._rate_kind(interval) == kind)
        assert state.episode_start_ms is not None and state.episode_last_ms is not None
        # Measured to its latest fast (slow) interval: the median lags the episode's end by a few beats.
        if state.episode_reported or state.episode_last_ms - state.episode_start_ms < config.min_episode_ms:
            return []
        state.episode_reported = True
        hr = 60000.0 * state.episode_rr_count / state.episode_rr_sum
        baseline = state.baseline30()
        warm = baseline.n >= config.warmup_windows
        z = (hr - baseline.mean) / max(baseline.std, config.min_std_bpm) if warm else None
        return [AnomalyEvent(self.pid, state.episode_kind, state.episode_start_ms, state.episode_last_ms, hr, z,
                             model_version(state, warm), state.prior_round)]

    # --- coverage and pauses -----------------------------------------------------------------

    def _cover(self, state: DetectorState, start_ms: int, end_ms: int, noisy: bool) -> None:
        window_start = start_ms - start_ms % WINDOW_MS
        while window_start < end_ms:
            overlap = min(end_ms, window_start + WINDOW_MS) - max(start_ms, window_start)
            acc = state.windows.setdefault(window_start, WindowAcc())
            acc.covered_ms += overlap
            if noisy:
                acc.noisy_ms += overlap
            window_start += WINDOW_MS

    def _check_pause(self, state: DetectorState, until_ms: int) -> list[AnomalyEvent]:
        """An asystole event if the stretch without a trusted beat reaches ASYSTOLE before until_ms."""
        if state.clean_since_ms is None:
            return []
        quiet_from = max(state.last_beat_ms if state.last_beat_ms is not None else state.clean_since_ms,
                         state.clean_since_ms)
        if until_ms - quiet_from < self.config.asystole_ms or state.asystole_reported_from == quiet_from:
            return []
        state.asystole_reported_from = quiet_from
        end = quiet_from + self.config.asystole_ms
        window_start = quiet_from - quiet_from % WINDOW_MS
        while window_start < end:
            if window_start in state.windows:  # the earlier ones are complete already
                state.windows[window_start].asystole = True
            window_start += WINDOW_MS
        warm = state.baseline30().n >= self.config.warmup_windows
        return [AnomalyEvent(self.pid, ASYSTOLE, quiet_from, end, 0.0, None, model_version(state, warm),
                             state.prior_round)]

    # --- windows -------------------------------------------------------------------------------

    def _complete(self, state: DetectorState, start: int, acc: WindowAcc) -> list[AnomalyEvent]:
        config = self.config
        end = start + WINDOW_MS
        events: list[AnomalyEvent] = []
        noisy = acc.covered_ms > 0 and acc.noisy_ms >= config.noisy_fraction * acc.covered_ms
        scorable = acc.covered_ms >= config.min_coverage * WINDOW_MS and not noisy and acc.rr_count >= 3
        hr = 60000.0 * acc.rr_count / acc.rr_sum if scorable else None
        result = WindowResult(start, hr, acc.rr_sum, acc.rr_count, noisy)
        if state.recent and state.recent[-1].start_ms != start - WINDOW_MS:
            state.recent = []
        state.recent = [*state.recent, result][-LONG_WINDOWS:]
        baseline = state.baseline30()
        warm = baseline.n >= config.warmup_windows
        version = model_version(state, warm)
        if noisy:
            events.append(AnomalyEvent(self.pid, NOISE, start, end, None, None, version, state.prior_round))
        if hr is None:
            state.history, state.history_end_ms = [], None
            return events

        state.windows_scored += 1
        z30 = (hr - baseline.mean) / max(baseline.std, config.min_std_bpm) if warm else None
        out_of_limits = hr > config.tachy_bpm or hr < config.brady_bpm or acc.episode
        if z30 is not None and abs(z30) > config.z_threshold:
            events.append(AnomalyEvent(self.pid, ZSCORE_30S, start, end, hr, z30, version, state.prior_round))

        hr300 = self._long_hr(state)
        if hr300 is not None:
            long_baseline = state.baseline300()
            if long_baseline.n >= config.warmup_windows:
                z300 = (hr300 - long_baseline.mean) / max(long_baseline.std, config.min_std_bpm)
                if abs(z300) > config.z_threshold:
                    events.append(AnomalyEvent(self.pid, ZSCORE_5MIN, end - LONG_WINDOWS * WINDOW_MS, end, hr300,
                                               z300, version, state.prior_round))

        # The self-supervised predictor: its error on this window, before it learns from it.
        contiguous = state.history_end_ms == start and len(state.history) >= AR_ORDER
        if contiguous:
            predicted = ar_predict(state.model.ar, state.history, baseline.mean)
            if math.isfinite(predicted):
                state.prediction_abs_error += abs(predicted - hr)
                state.predictions += 1
        if events or acc.asystole or out_of_limits:
            state.history, state.history_end_ms = [], None
            return events
        model = state.model
        if contiguous:
            model = model.add_ar_sample(state.history, baseline.mean, hr)
        model = model.add_window(hr)
        if hr300 is not None:
            model = model.add_long_window(hr300)
        state.model = model
        state.history = [*state.history, hr][-AR_ORDER:]
        state.history_end_ms = end
        return events

    def _long_hr(self, state: DetectorState) -> float | None:
        if len(state.recent) < LONG_WINDOWS:
            return None
        valid = [w for w in state.recent if w.hr is not None]
        if len(valid) < self.config.min_long_valid:
            return None
        return 60000.0 * sum(w.rr_count for w in valid) / sum(w.rr_sum for w in valid)
