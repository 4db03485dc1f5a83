"""cardio.detector: known answers on synthetic ECG with exact beat times, streaming properties
(frame-cut invariance, straddling beats, checkpoint/restore, gaps, latency)."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from cardio.detector import Beat, BeatDetector, DetectorConfig, DetectorState, detect_beats, window_heart_rate
from testkit.cardio_evaluation import compare
from testkit.cardio_synthetic import synthetic_ecg

T0_MS = 1_763_812_800_000  # a realistic epoch-ms origin: float event times must stay exact enough


def stream(
    detector: BeatDetector,
    signal: np.ndarray,
    fs: float,
    sizes: list[int],
    t0_ms: int = T0_MS,
    pickle_every_frame: bool = False,
) -> list[Beat]:
    """Feed ``signal`` in frames of the given sizes (cycled), ts rounded to whole ms like the contract."""
    state: DetectorState | None = None
    beats: list[Beat] = []
    i = k = 0
    while i < signal.size:
        n = sizes[k % len(sizes)]
        k += 1
        state, new = detector.process(state, round(t0_ms + i * 1000 / fs), fs, signal[i : i + n])
        beats += new
        if pickle_every_frame:
            state = pickle.loads(pickle.dumps(state))
        i += n
    _, rest = detector.flush(state)
    return beats + rest


def times(beats: list[Beat]) -> np.ndarray:
    return np.array([b.time_ms for b in beats])


@pytest.mark.parametrize("hr", [40.0, 75.0, 120.0, 180.0])
@pytest.mark.parametrize("fs", [250.0, 360.0])
def test_clean_synthetic_sensitivity_and_ppv(hr: float, fs: float) -> None:
    ecg = synthetic_ecg(60.0, fs, hr, seed=int(hr), hr_drift_bpm=0.1 * hr)
    beats = stream(BeatDetector(), ecg.signal, fs, [int(fs)])
    m = compare(ecg.beat_times_ms + T0_MS, times(beats))
    assert m.sensitivity >= 0.99 and m.ppv >= 0.99, m
    assert abs(float(np.mean(m.errors_ms))) < 4.0 and float(np.max(np.abs(m.errors_ms))) < 15.0


@pytest.mark.parametrize(("snr_db", "wander_mv"), [(12.0, 0.0), (None, 2.0), (6.0, 1.0)])
def test_noisy_synthetic_with_pvcs(snr_db: float | None, wander_mv: float) -> None:
    ecg = synthetic_ecg(120.0, 360.0, 80.0, seed=5, snr_db=snr_db, wander_mv=wander_mv, pvc_fraction=0.05)
    m = compare(ecg.beat_times_ms, times(detect_beats(ecg.signal, 360.0)))
    assert m.sensitivity >= 0.98 and m.ppv >= 0.98, m


def test_rr_and_hr_per_beat_follow_the_true_rhythm() -> None:
    ecg = synthetic_ecg(30.0, 360.0, 72.0, seed=2)
    beats = detect_beats(ecg.signal, 360.0)
    assert math.isnan(beats[0].rr_ms) and math.isnan(beats[0].hr_bpm)  # no previous beat
    true_rr = np.diff(ecg.beat_times_ms)
    assert len(beats) == ecg.beat_times_ms.size
    np.testing.assert_allclose([b.rr_ms for b in beats[1:]], true_rr, atol=12.0)
    np.testing.assert_allclose([b.hr_bpm for b in beats[1:]], 60000.0 / np.array([b.rr_ms for b in beats[1:]]))


def test_result_does_not_depend_on_frame_cuts() -> None:
    fs = 360.0
    ecg = synthetic_ecg(40.0, fs, 95.0, seed=9, snr_db=15.0, wander_mv=0.8, pvc_fraction=0.08)
    detector = BeatDetector()
    whole = stream(detector, ecg.signal, fs, [ecg.signal.size])
    assert len(whole) > 50
    for sizes in ([360], [round(0.37 * fs)], [720], [1, 7, 333, 50, 1000], [3]):
        assert stream(detector, ecg.signal, fs, sizes) == whole, sizes


def test_beat_straddling_two_frames_is_reported_once() -> None:
    fs = 250.0
    ecg = synthetic_ecg(20.0, fs, 60.0, seed=4, hrv=0.0)
    # Cut each frame right at an R peak (and 10 ms before/after), so every QRS straddles a boundary.
    for shift_ms in (-10.0, 0.0, 10.0):
        cuts = np.round((ecg.beat_times_s + shift_ms / 1000) * fs).astype(int)
        sizes = np.diff(np.concatenate(([0], cuts, [ecg.signal.size]))).tolist()
        beats = stream(BeatDetector(), ecg.signal, fs, [s for s in sizes if s > 0])
        m = compare(ecg.beat_times_ms + T0_MS, times(beats))
        assert m.true_positives == ecg.beat_times_s.size and m.false_positives == 0, (shift_ms, m)
        assert np.all(np.diff(times(beats)) > 200.0)  # nothing reported twice


def test_checkpoint_restore_mid_stream_gives_identical_results() -> None:
    fs = 360.0
    ecg = synthetic_ecg(30.0, fs, 88.0, seed=3, snr_db=20.0, pvc_fraction=0.05)
    detector = BeatDetector()
    frames = [ecg.signal[i : i + 360] for i in range(0, ecg.signal.size, 360)]
    state: DetectorState | None = None
    uninterrupted: list[Beat] = []
    snapshot = b""
    for index, frame in enumerate(frames):
        state, beats = detector.process(state, T0_MS + index * 1000, fs, frame)
        uninterrupted += beats
        if index == 12:
            snapshot = pickle.dumps(state)  # the checkpoint
            before = list(uninterrupted)
    uninterrupted += detector.flush(state)[1]
    # Restore into a fresh detector (a new worker) and replay the frames after the checkpoint.
    restored: DetectorState = pickle.loads(snapshot)
    replayed = list(before)
    other = BeatDetector()
    for index, frame in enumerate(frames[13:], start=13):
        restored, beats = other.process(restored, T0_MS + index * 1000, fs, frame)
        replayed += beats
    replayed += other.flush(restored)[1]
    assert replayed == uninterrupted
    assert len(snapshot) < 20_000  # small enough for keyed state


def test_process_does_not_modify_the_state_passed_in() -> None:
    ecg = synthetic_ecg(5.0, 360.0, 70.0, seed=1)
    detector = BeatDetector()
    state, _ = detector.process(None, T0_MS, 360.0, ecg.signal[:720])
    frozen = pickle.dumps(state)
    detector.process(state, T0_MS + 2000, 360.0, ecg.signal[720:1080])
    detector.flush(state)
    assert pickle.dumps(state) == frozen


def test_gap_flushes_then_restarts_without_rr_across_it() -> None:
    fs = 360.0
    ecg = synthetic_ecg(30.0, fs, 70.0, seed=8)
    detector = BeatDetector()
    state: DetectorState | None = None
    beats: list[Beat] = []
    for index in range(30):
        if 10 <= index < 13:
            continue  # three frames lost (device offline)
        state, new = detector.process(state, T0_MS + index * 1000, fs, ecg.signal[index * 360 : (index + 1) * 360])
        beats += new
    assert state is not None and state.restarts == 1
    beats += detector.flush(state)[1]
    got = times(beats) - T0_MS
    truth = ecg.beat_times_ms
    visible = truth[(truth < 10_000 - 100) | (truth >= 13_000 + 100)]  # QRS wholly inside received frames
    m = compare(visible, got)
    assert m.sensitivity == 1.0 and m.ppv == 1.0, m
    after = [b for b in beats if b.time_ms >= T0_MS + 13_000]
    assert math.isnan(after[0].rr_ms)  # no RR spans the gap
    assert all(b.rr_ms < 1500 for b in beats if not math.isnan(b.rr_ms))


def test_fs_change_and_duplicate_frames() -> None:
    detector = BeatDetector()
    a = synthetic_ecg(10.0, 360.0, 70.0, seed=1)
    b = synthetic_ecg(10.0, 250.0, 70.0, seed=2)
    first = a.signal[:3348]  # 9.3 s: ends 0.3 s after a beat, which is still pending
    state, confirmed = detector.process(None, T0_MS, 360.0, first)
    dup, beats = detector.process(state, T0_MS + 5000, 360.0, first[1800:])  # a replayed old frame
    assert beats == [] and dup.dropped_frames == 1 and dup.n == state.n
    # The device switches to 250 Hz: pending beats of the 360 Hz segment are flushed, then a new segment.
    state2, beats = detector.process(state, T0_MS + 9300, 250.0, b.signal)
    assert state2.fs == 250.0 and state2.restarts == 1
    flushed = [beat for beat in beats if beat.time_ms < T0_MS + 9300]
    new_segment = beats[len(flushed) :]
    assert flushed and new_segment and math.isnan(new_segment[0].rr_ms)
    assert confirmed + flushed == detect_beats(first, 360.0, ts_ms=T0_MS)
    assert detector.max_latency_s(360.0) < 0.8


def test_flat_noise_nonfinite_and_low_rate_give_no_beats() -> None:
    rng = np.random.default_rng(0)
    assert detect_beats(np.zeros(3600), 360.0) == []
    assert detect_beats(np.full(3600, 0.4), 360.0) == []
    assert len(detect_beats(rng.normal(0.0, 0.1, 360 * 120), 360.0)) <= 2  # 2 minutes of white noise
    assert detect_beats(synthetic_ecg(10.0, 40.0, 70.0, seed=1).signal, 40.0) == []
    x = synthetic_ecg(10.0, 360.0, 70.0, seed=1).signal
    x[1000] = np.nan
    state, _ = BeatDetector().process(None, T0_MS, 360.0, x)
    assert state.fs == 0 and state.restarts == 0  # nothing usable yet: no segment


def test_confirmation_latency_is_bounded() -> None:
    fs = 360.0
    ecg = synthetic_ecg(60.0, fs, 50.0, seed=6, hrv=0.08)
    detector = BeatDetector()
    bound_ms = detector.max_latency_s(fs) * 1000
    state: DetectorState | None = None
    worst = 0.0
    for index in range(60):
        end_ms = (index + 1) * 1000.0
        state, beats = detector.process(state, index * 1000, fs, ecg.signal[index * 360 : (index + 1) * 360])
        for beat in beats:
            if beat.time_ms > 2500:  # after the learning window of the segment
                # The confirming frame is the first whose end reaches beat + bound.
                assert end_ms - beat.time_ms < bound_ms + 1000.0
                worst = max(worst, end_ms - 1000.0 - beat.time_ms)
    assert worst < bound_ms


def test_window_heart_rate() -> None:
    beats = [Beat(1000.0, math.nan, math.nan), Beat(2000.0, 1000.0, 60.0), Beat(2500.0, 500.0, 120.0)]
    assert window_heart_rate(beats, 0.0, 5000.0) == pytest.approx(90.0)
    assert window_heart_rate(beats, 2000.0, 2500.0) == pytest.approx(60.0)  # [start, end)
    assert math.isnan(window_heart_rate(beats, 0.0, 1500.0))  # only a beat without RR


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        DetectorConfig(band_hz=(15.0, 5.0))
    with pytest.raises(ValueError):
        DetectorConfig(neighbourhood_s=0.6, lookahead_s=0.5)
