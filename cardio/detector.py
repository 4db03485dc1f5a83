"""Streaming R-peak detector for one device (Pan-Tompkins family, bounded latency, frame-cut invariant).

Signal path (all causal, sample-sequential, so the filter states carried in ``DetectorState`` make
the output independent of how the signal is cut into frames):

    raw mV ─▶ Butterworth band-pass 5-15 Hz (scipy.signal.sosfilt, order 2)
           ─▶ 5-point derivative ─▶ square ─▶ moving-window integration over 150 ms (MWI)

Candidates are local maxima of the MWI: strictly larger than the previous ``N`` samples and at
least as large as the next ``N`` (``N`` = 200 ms), so a candidate is known ``N`` after its MWI
peak. Each candidate carries the R-peak it stands for (the largest deviation of the raw signal
from its local median within 80 ms of the steepest QRS slope, searched up to 0.25 s before the MWI
peak so that wide PVCs are placed on their main deflection), its steepest slope and the lowest MWI
around it. Candidates are then classified strictly in order with Pan-Tompkins' adaptive thresholds
(signal and noise peak levels SPKI/NPKI, THR1 = NPKI + 0.25 (SPKI - NPKI), THR2 = THR1 / 2; SPKI
updates see at most 1.5x SPKI, so a huge PVC or artefact does not blind the detector), a 200 ms
refractory period, a T-wave test within 360 ms (half the slope and < 0.2 SPKI) and a *bounded*
search-back: a candidate between THR2 and THR1 is a beat when it comes late enough in the cycle
(>= 50 % of the mean RR) and no candidate above THR1 follows within the look-ahead.
Classification of a candidate waits
until ``lookahead_s`` (0.5 s) of signal past its MWI peak is known, never longer, so every
beat is confirmed at most ``BeatDetector.max_latency_s`` (0.5 s + the 0.25 s R-peak search window
+ filter delay = 0.78 s at 360 Hz) of signal after its R-peak; the classic unbounded search-back
(1.66 RR) is what we give up for that bound. Exception: the beats of the first 2 s of a segment
wait for the thresholds learned from those 2 s. A noise gate reports a beat only when its MWI peak
is >= 15x the energy between QRS complexes (median of the MWI minima around recent candidates), so
pure noise yields (almost) no beats.

Gaps and restarts: a frame whose ``ts`` is not where the previous frame ended (tolerance: one
sample period + 1 ms, ts are whole milliseconds) or whose ``fs`` differs, first flushes the
pending candidates (as at end of stream), then resets the state and starts a new segment at that
frame (2 s of threshold learning, no RR for the first beat). A frame with non-finite samples closes
the segment the same way. A frame that lies entirely before the expected ts (a duplicate) is ignored.

Units: times are event-time milliseconds (float, at sample resolution: ``origin + i * 1000 / fs``),
RR in milliseconds, HR in beats per minute, samples in millivolts.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from scipy import signal as sps
from scipy.ndimage import maximum_filter1d

MIN_FS_HZ = 50.0  # below this a QRS (~100 ms) has too few samples; such devices get no beats


@dataclass(frozen=True)
class DetectorConfig:
    """Tuning of the detector (times in seconds). The defaults are what docs/heart_rate.md measures."""

    band_hz: tuple[float, float] = (5.0, 15.0)
    integration_s: float = 0.150  # MWI window, about one QRS width
    refractory_s: float = 0.200  # no two beats closer (300 bpm)
    neighbourhood_s: float = 0.200  # a candidate is the largest MWI value within +- this
    lookahead_s: float = 0.500  # signal past a candidate's MWI peak before it is classified
    learning_s: float = 2.0  # threshold learning after a (re)start
    t_wave_s: float = 0.360  # a candidate this close to the last beat may be its T wave
    t_wave_peak: float = 0.2  # ... if its slope is < half the beat's and its MWI peak < this * SPKI
    searchback_rr_fraction: float = 0.5  # a below-THR1 candidate may be a beat this late in the cycle
    min_peak: float = 1e-3  # MWI units (mV/s)^2; a 1.2 mV QRS gives ~500: below this is a flat line
    # Noise gate: a beat is reported only if its MWI peak is >= min_quality times the median of the
    # lowest MWI around the last floor_history candidates (the energy between QRS complexes). Between
    # QRS complexes the MWI falls close to zero, in noise it does not. Gated beats still count for
    # thresholds and RR. 15: pure white or low-passed noise gives ~0-1 beats/min, record 208 loses none.
    min_quality: float = 15.0
    floor_history: int = 8

    peak_clip: float = 1.5  # signal level updates see at most peak_clip * SPKI (PVCs, artefacts)
    rr_history: int = 8
    search_back_s: float = 0.250  # R-peak search before the MWI peak (+ filter delay): wide PVCs
    margin_s: float = 0.030  # R-peak search after the MWI peak (- filter delay)
    peak_window_s: float = 0.080  # the R-peak lies within this of the steepest QRS slope
    initial_rr_s: float = 0.8  # mean RR assumed until two beats are known

    def __post_init__(self) -> None:
        low, high = self.band_hz
        if not 0 < low < high:
            raise ValueError("band_hz must be 0 < low < high")
        if not 0 < self.neighbourhood_s < self.lookahead_s or self.refractory_s <= 0:
            raise ValueError("need 0 < neighbourhood_s < lookahead_s and refractory_s > 0")
        if self.integration_s <= 0 or self.learning_s <= 0 or self.rr_history < 1:
            raise ValueError("integration_s, learning_s and rr_history must be positive")


class Beat(NamedTuple):
    """One confirmed beat: event time of its R-peak (ms), RR to the previous beat of the same
    segment (ms, ``nan`` for the first beat after a (re)start) and HR = 60000 / RR (bpm)."""

    time_ms: float
    rr_ms: float
    hr_bpm: float


@dataclass
class DetectorState:
    """Everything the detector remembers about one device between frames (picklable, ~10 KB at
    360 Hz: one second of three signal tails plus a few numbers). ``fs == 0`` means "no segment"."""

    fs: float = 0.0
    origin_ms: float = 0.0  # event time of sample 0 of the current segment
    n: int = 0  # samples consumed in the current segment
    bandpass_zi: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    derivative_zi: np.ndarray = field(default_factory=lambda: np.zeros(0))
    integration_zi: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tail_raw: np.ndarray = field(default_factory=lambda: np.zeros(0))  # last samples, ending at n
    tail_slope: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tail_mwi: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scan_next: int = 0  # first MWI index not yet tested as a candidate
    # Candidates not classified yet: (mwi index, mwi peak, r index, slope), in order.
    pending: list[tuple[int, float, int, float, float]] = field(default_factory=list)
    initialized: bool = False
    spki: float = 0.0
    npki: float = 0.0
    last_r: int = -1  # r index of the last beat of this segment (-1: none)
    last_slope: float = 0.0
    rr: list[int] = field(default_factory=list)  # last RR intervals in samples
    floors: list[float] = field(default_factory=list)  # lowest MWI around the last candidates
    learn_end: int = 0  # thresholds are learned from the candidates before this index
    restarts: int = 0  # segments closed by a gap, an fs change or an unusable frame (for metrics)
    dropped_frames: int = 0  # frames ignored because they lay before the expected ts

    def copy(self) -> DetectorState:
        return replace(
            self,
            bandpass_zi=self.bandpass_zi.copy(),
            derivative_zi=self.derivative_zi.copy(),
            integration_zi=self.integration_zi.copy(),
            tail_raw=self.tail_raw.copy(),
            tail_slope=self.tail_slope.copy(),
            tail_mwi=self.tail_mwi.copy(),
            pending=list(self.pending),
            rr=list(self.rr),
            floors=list(self.floors),
        )

    @property
    def expected_ts_ms(self) -> float:
        """Event time at which the next frame should start."""
        return self.origin_ms + self.n * 1000.0 / self.fs if self.fs > 0 else math.nan


@dataclass(frozen=True)
class _Design:
    """Per-fs constants (filters and sample counts), cached: never part of the state."""

    sos: np.ndarray
    sos_zi: np.ndarray  # steady-state initial conditions for a unit step
    derivative: np.ndarray
    integration: np.ndarray
    refractory: int
    neighbourhood: int
    lookahead: int
    learning: int
    t_wave: int
    search_back: int  # samples before the MWI peak where the QRS may start
    search_forward: int
    delay: int  # band-pass + derivative delay of the slope signal, samples
    warm_up: int  # samples after a (re)start before the MWI is settled
    peak_window: int
    tail: int


@lru_cache(maxsize=32)
def _design(fs: float, config: DetectorConfig) -> _Design:
    low, high = config.band_hz
    high = min(high, 0.45 * fs)
    sos = sps.butter(2, [low, high], btype="bandpass", fs=fs, output="sos")
    # Pan-Tompkins 5-point derivative: y[n] = (x[n] + 2x[n-1] - 2x[n-3] - x[n-4]) * fs / 8.
    derivative = np.array([1.0, 2.0, 0.0, -2.0, -1.0]) * fs / 8.0
    width = max(1, round(config.integration_s * fs))
    # The MWI lags the band-passed QRS by the filter's group delay (~25 ms at 5-15 Hz) + 2 samples.
    delay = round(0.025 * fs) + 2
    margin = round(config.margin_s * fs)
    refractory = max(1, round(config.refractory_s * fs))
    neighbourhood = max(1, round(config.neighbourhood_s * fs))
    search_back = round(config.search_back_s * fs) + delay
    return _Design(
        sos=sos,
        sos_zi=sps.sosfilt_zi(sos),
        derivative=derivative,
        integration=np.full(width, 1.0 / width),
        refractory=refractory,
        neighbourhood=neighbourhood,
        lookahead=max(neighbourhood + 1, round(config.lookahead_s * fs)),
        learning=max(1, round(config.learning_s * fs)),
        t_wave=round(config.t_wave_s * fs),
        search_back=search_back,
        search_forward=max(0, margin - delay),
        delay=delay,
        warm_up=width + round(0.1 * fs),
        peak_window=round(config.peak_window_s * fs),
        tail=2 * neighbourhood + search_back + 2,
    )


def _fir(taps: np.ndarray, x: np.ndarray, zi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``scipy.signal.lfilter(taps, [1.0], x, zi=zi)`` along the last axis of ``x`` (1-D, or 2-D with one
    row of ``zi`` per row): the same arithmetic as lfilter's FIR path (the full convolution, then the
    initial conditions added to its head), without its per-call ``apply_along_axis`` overhead, which was
    a fifth of the streaming detector's time per 1 s frame."""
    if x.ndim == 1:
        full = np.convolve(taps, x)
        full[: zi.shape[-1]] += zi
    else:
        full = np.stack([np.convolve(taps, row) for row in x])
        full[:, : zi.shape[-1]] += zi
    n = x.shape[-1]
    return full[..., :n], full[..., n:]


def _window_max(a: np.ndarray, r: int) -> np.ndarray:
    """out[k] = max(a[k : k + r]) for k in 0 .. len(a) - r (van Herk / Gil-Werman, O(n); exact)."""
    return maximum_filter1d(a, r, mode="nearest", origin=-(r // 2))[: a.size - r + 1]


class BeatDetector:
    """Streaming R-peak detector; one instance serves any number of devices (state is external).

    ``process`` and ``flush`` are pure: they never modify the state passed in and return a new one,
    so a caller can keep it in Flink keyed state and replays give identical results.
    """

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()

    @staticmethod
    def new_state() -> DetectorState:
        return DetectorState()

    def max_latency_s(self, fs: float) -> float:
        """Upper bound of signal time between an R-peak and the frame that confirms it (outside
        the first ``learning_s`` of a segment, whose beats wait for the learned thresholds)."""
        d = _design(float(fs), self.config)
        return (d.search_back + d.lookahead) / fs

    def process(
        self, state: DetectorState | None, ts_ms: float, fs: float, samples: np.ndarray | list[float]
    ) -> tuple[DetectorState, list[Beat]]:
        """Feed one frame (event time of its first sample in ms, sampling rate in Hz, samples in mV).

        Returns the new state and the beats this frame confirms, in time order.
        """
        x = np.asarray(samples, dtype=np.float64).ravel()
        fs = float(fs)
        st = state.copy() if state is not None else DetectorState()
        beats: list[Beat] = []
        if x.size == 0:
            return st, beats
        if not np.all(np.isfinite(x)) or not math.isfinite(fs) or fs < MIN_FS_HZ:
            # Not a usable signal: close the segment; the next usable frame starts a new one.
            beats = self._finish(st) if st.fs > 0 else []
            return self._closed(st, restart=st.fs > 0), beats
        if st.fs > 0:
            expected = st.expected_ts_ms
            tolerance = 1000.0 / st.fs + 1.0
            if fs == st.fs and ts_ms < expected - tolerance and ts_ms + x.size * 1000.0 / fs <= expected + tolerance:
                st.dropped_frames += 1  # a duplicate / stale frame: already seen this time range
                return st, beats
            if fs != st.fs or abs(ts_ms - expected) > tolerance:
                beats = self._finish(st)
                st = self._closed(st, restart=True)
        if st.fs == 0:
            st = self._start(st, ts_ms, fs, x[0])
        beats.extend(self._consume(st, x, final=False))
        return st, beats

    def flush(self, state: DetectorState | None) -> tuple[DetectorState, list[Beat]]:
        """End of stream: confirm every pending beat with the signal known so far, close the segment."""
        if state is None or state.fs == 0:
            return (state.copy() if state is not None else DetectorState()), []
        st = state.copy()
        beats = self._finish(st)
        return self._closed(st, restart=False), beats

    # -- internals ------------------------------------------------------------------------------

    def _start(self, old: DetectorState, ts_ms: float, fs: float, first: float) -> DetectorState:
        d = _design(fs, self.config)
        return DetectorState(
            fs=fs,
            origin_ms=float(ts_ms),
            # Start the band-pass in steady state for the first sample, so a DC offset is no step.
            bandpass_zi=d.sos_zi * first,
            derivative_zi=np.zeros(d.derivative.size - 1),
            integration_zi=np.zeros(d.integration.size - 1),
            learn_end=d.learning,
            restarts=old.restarts,
            dropped_frames=old.dropped_frames,
        )

    @staticmethod
    def _closed(st: DetectorState, restart: bool) -> DetectorState:
        return DetectorState(restarts=st.restarts + int(restart), dropped_frames=st.dropped_frames)

    def _finish(self, st: DetectorState) -> list[Beat]:
        return self._consume(st, np.zeros(0), final=True)

    def _consume(
        self, st: DetectorState, x: np.ndarray, final: bool, filtered: tuple[np.ndarray, np.ndarray] | None = None
    ) -> list[Beat]:
        """``filtered``: (slope, MWI) of ``x`` already computed from this state (``detect_beats_batch``;
        the filter states in ``st`` are then set by the caller)."""
        d = _design(st.fs, self.config)
        if filtered is not None:
            slope, mwi = filtered
        elif x.size:
            band, st.bandpass_zi = sps.sosfilt(d.sos, x, zi=st.bandpass_zi)
            slope, st.derivative_zi = _fir(d.derivative, band, st.derivative_zi)
            mwi, st.integration_zi = _fir(d.integration, slope * slope, st.integration_zi)
        else:
            slope = mwi = x
        raw = np.concatenate((st.tail_raw, x))
        slopes = np.abs(np.concatenate((st.tail_slope, slope)))
        energy = np.concatenate((st.tail_mwi, mwi))
        st.n += x.size
        start = st.n - raw.size  # absolute index of raw[0]
        self._scan(st, d, raw, slopes, energy, start, final)
        beats = self._classify(st, d, energy, start, final)
        # While learning, keep the whole learning window (its mean MWI initializes the noise level).
        keep = min(d.tail if st.initialized else max(d.tail, st.n - (st.learn_end - d.learning)), raw.size)
        st.tail_raw, st.tail_slope, st.tail_mwi = raw[-keep:], slopes[-keep:], energy[-keep:]
        return beats

    def _scan(
        self,
        st: DetectorState,
        d: _Design,
        raw: np.ndarray,
        slopes: np.ndarray,
        energy: np.ndarray,
        start: int,
        final: bool,
    ) -> None:
        """Find the MWI local maxima that are now decidable and append them to ``st.pending``."""
        r = d.neighbourhood
        stop = st.n if final else st.n - r  # m is decidable once m + r < n (or at the end)
        if stop <= st.scan_next:
            return
        # Pad with -inf where the segment has no samples (before 0, after n at the end).
        lo = st.scan_next - r
        hi = stop + r
        window = np.full(hi - lo, -np.inf)
        src_lo, src_hi = max(lo, start, 0), min(hi, st.n)
        window[src_lo - lo : src_hi - lo] = energy[src_lo - start : src_hi - start]
        count = stop - st.scan_next
        highs = _window_max(window, r)  # highs[k] = max(window[k : k + r])
        left = highs[:count]  # max over m-r .. m-1
        right = highs[r + 1 : r + 1 + count]  # max over m+1 .. m+r
        centre = window[r : r + count]
        # Lowest MWI around each position, from real samples only (no padding).
        # The MWI ramps up from zero during the first warm_up samples of a segment: not a floor either.
        real = np.isfinite(window) & (np.arange(lo, hi) >= d.warm_up)
        lows = -_window_max(np.where(real, -window, -np.inf), r)
        floor = np.minimum(lows[:count], lows[r + 1 : r + 1 + count])
        hits = np.flatnonzero((centre > left) & (centre >= right) & (centre > 0.0)) + st.scan_next
        for m in hits.tolist():
            a = max(m - d.search_back, start, 0)
            b = min(m + d.search_forward + 1, st.n)
            segment = raw[a - start : b - start]
            half = segment.size // 2
            ordered = np.partition(segment, (half - 1, half)) if segment.size > 1 else segment
            median = ordered[half] if segment.size % 2 else 0.5 * (ordered[half - 1] + ordered[half])
            deviation = np.abs(segment - median)
            # The R-peak is the largest deviation near the steepest slope of the QRS (the slope
            # signal lags the raw one by the band-pass delay), not a slower hump next to it.
            steep = a + int(np.argmax(slopes[a - start : b - start])) - d.delay
            lo, hi = max(steep - d.peak_window, a), min(steep + d.peak_window + 1, b)
            if lo >= hi:
                lo, hi = a, b
            r_index = lo + int(np.argmax(deviation[lo - a : hi - a]))
            sa = max(m - len(d.integration), start, 0)
            slope = float(slopes[sa - start : m + 1 - start].max())
            st.pending.append((m, float(energy[m - start]), r_index, slope, float(floor[m - st.scan_next])))
        st.scan_next = stop

    def _classify(self, st: DetectorState, d: _Design, energy: np.ndarray, start: int, final: bool) -> list[Beat]:
        cfg = self.config
        beats: list[Beat] = []
        if not st.initialized:
            # Thresholds come from the candidates of the first learning_s of the segment.
            while not st.initialized:
                if not (final or st.scan_next >= st.learn_end):
                    return beats
                learned = [p for m, p, _, _, _ in st.pending if m < st.learn_end]
                if learned:
                    break
                if final:
                    return beats
                st.learn_end += d.learning  # nothing to learn from yet (flat line): learn later
                st.pending = [c for c in st.pending if c[0] >= st.learn_end - d.learning]
            peak = max(learned)
            st.spki = 0.5 * peak  # half: one artefact or PVC in the learning window does not dominate
            # Noise level: half the mean MWI of the learning window (Pan-Tompkins). math.fsum is
            # exactly rounded, so the value does not depend on how the window arrived in frames.
            lo = max(st.learn_end - d.learning, start)
            hi = min(st.learn_end, st.n)
            st.npki = 0.5 * math.fsum(energy[lo - start : hi - start].tolist()) / max(1, hi - lo)
            st.initialized = True
        while st.pending:
            m, p, r_index, slope, floor = st.pending[0]
            horizon = m + d.lookahead - d.neighbourhood  # candidates up to here are known when m is ready
            if not final and st.scan_next <= horizon:
                break
            st.pending.pop(0)
            st.floors.append(floor)
            del st.floors[: -cfg.floor_history]
            background = statistics.median(st.floors)
            thr1 = st.npki + 0.25 * (st.spki - st.npki)
            thr2 = 0.5 * thr1
            mean_rr = sum(st.rr) / len(st.rr) if st.rr else cfg.initial_rr_s * st.fs
            since = r_index - st.last_r if st.last_r >= 0 else None
            is_beat = False
            t_wave = slope < 0.5 * st.last_slope and p < cfg.t_wave_peak * st.spki
            if since is not None and (since < d.refractory or (since < d.t_wave and t_wave)):
                is_beat = False  # too close, or the T wave of the previous beat
            elif p < cfg.min_peak:
                is_beat = False  # flat line
            elif p >= thr1:
                is_beat = True
                st.spki = 0.125 * min(p, cfg.peak_clip * st.spki) + 0.875 * st.spki
            elif p >= thr2 and (since is None or since >= cfg.searchback_rr_fraction * mean_rr):
                stronger_follows = any(
                    q >= thr1 for mq, q, _, _, _ in st.pending if mq <= horizon and mq - m <= d.lookahead
                )
                if not stronger_follows:
                    is_beat = True
                    st.spki = 0.25 * min(p, cfg.peak_clip * st.spki) + 0.75 * st.spki
            if not is_beat:
                st.npki = 0.125 * p + 0.875 * st.npki
                continue
            rr_ms = math.nan
            if st.last_r >= 0:
                rr_samples = r_index - st.last_r
                rr_ms = rr_samples * 1000.0 / st.fs
                st.rr.append(rr_samples)
                del st.rr[: -cfg.rr_history]
            st.last_r = r_index
            st.last_slope = slope
            if p >= cfg.min_quality * background:  # else the signal is mostly noise: do not report it
                time_ms = st.origin_ms + r_index * 1000.0 / st.fs
                beats.append(Beat(time_ms, rr_ms, 60000.0 / rr_ms if rr_ms > 0 else math.nan))
        return beats


def detect_beats(
    samples: np.ndarray | list[float], fs: float, ts_ms: float = 0.0, config: DetectorConfig | None = None
) -> list[Beat]:
    """The streaming detector on a whole signal at once (one frame, then flush): same beats as any
    cut into frames."""
    detector = BeatDetector(config)
    state, beats = detector.process(None, ts_ms, fs, samples)
    _, rest = detector.flush(state)
    return beats + rest


def detect_beats_batch(
    signals: np.ndarray, fs: float, config: DetectorConfig | None = None
) -> list[list[Beat]]:
    """``detect_beats`` (ts 0) of each row of ``signals`` (m x n, one rate), the same beats: the filters run
    on all rows in one call each (the per-row filtering was a third of the detector's time)."""
    x = np.atleast_2d(np.asarray(signals, dtype=np.float64))
    fs = float(fs)
    detector = BeatDetector(config)
    if x.ndim != 2 or x.size == 0 or not math.isfinite(fs) or fs < MIN_FS_HZ or not np.all(np.isfinite(x)):
        return [detect_beats(row, fs, config=config) for row in x.reshape(x.shape[0], -1)]
    d = _design(fs, detector.config)
    rows = x.shape[0]
    band, band_zf = sps.sosfilt(d.sos, x, axis=-1, zi=d.sos_zi[:, np.newaxis, :] * x[np.newaxis, :, :1])
    slope, slope_zf = _fir(d.derivative, band, np.zeros((rows, d.derivative.size - 1)))
    mwi, mwi_zf = _fir(d.integration, slope * slope, np.zeros((rows, d.integration.size - 1)))
    out = []
    for i in range(rows):
        # What process(None, 0, fs, row) and flush() do, with the row's filter outputs precomputed.
        st = detector._start(DetectorState(), 0.0, fs, x[i, 0])
        beats = detector._consume(st, x[i], final=False, filtered=(slope[i], mwi[i]))
        st.bandpass_zi, st.derivative_zi, st.integration_zi = band_zf[:, i, :], slope_zf[i], mwi_zf[i]
        beats.extend(detector._finish(st))
        out.append(beats)
    return out


def window_heart_rate(beats: list[Beat], start_ms: float, end_ms: float) -> float:
    """Mean HR (bpm) of the beats whose time falls in the event-time window [start_ms, end_ms);
    ``nan`` if none of them has an RR interval."""
    values = [b.hr_bpm for b in beats if start_ms <= b.time_ms < end_ms and math.isfinite(b.hr_bpm)]
    return float(np.mean(values)) if values else math.nan
