"""Detector with known numbers: 30 s and 5 min z-score windows, rate episodes, asystole, noise.

Beats are given directly (exact times), one 1 s frame at a time, confirmed 250 ms behind the frame
end as a streaming beat detector would; the numbers below follow from RR intervals alone.
"""

from __future__ import annotations

import pytest

from anomaly.detector import WINDOW_MS, Detector, DetectorConfig, DetectorState
from anomaly.events import ASYSTOLE, NOISE, TACHYCARDIA, ZSCORE_5MIN, ZSCORE_30S, AnomalyEvent
from federated.model import ModelWeights

T0 = 1_763_812_800_000  # a multiple of 30 s
LAG_MS = 250


class Feed:
    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.detector = Detector(config or DetectorConfig(), "pid-1")
        self.state = DetectorState()
        self.beats: list[int] = []
        self.t = T0
        self.events: list[AnomalyEvent] = []
        self.noisy_until = 0

    def beat_every(self, rr_ms: int, seconds: int) -> None:
        """Beats at a constant RR for `seconds`, then process the frames that contain them."""
        end = self.t + seconds * 1000
        last = self.beats[-1] if self.beats else self.t - rr_ms
        while last + rr_ms < end:
            last += rr_ms
            self.beats.append(last)
        self.frames_until(end)

    def pause(self, seconds: int) -> None:
        self.frames_until(self.t + seconds * 1000)

    def frames_until(self, end: int) -> None:
        while self.t < end:
            frame_end = self.t + 1000
            confirmed = frame_end - LAG_MS
            new = [b for b in self.beats if confirmed - 1000 <= b < confirmed]
            self.events += self.detector.process_frame(self.state, self.t, frame_end, self.t < self.noisy_until,
                                                       new, confirmed)
            self.t = frame_end


def test_z_score_of_a_30_s_window() -> None:
    feed = Feed()
    feed.beat_every(1000, 120)  # 60 bpm: the first window has 29 RR (no beat before it), all 60 bpm
    assert feed.state.model.n_samples == 3  # the fourth window completes with the next beat
    feed.beat_every(1000, 30)
    assert feed.state.model.own30.mean == 60.0 and feed.state.model.own30.std == 0.0
    assert feed.events == []
    feed.beat_every(750, 30)  # 80 bpm: z = (80 - 60) / max(std 0, MIN_STD 3) = 6.67
    feed.beat_every(1000, 1)  # the window is scored once the detector has confirmed its end
    (event,) = feed.events
    assert event.kind == ZSCORE_30S and event.hr_bpm == pytest.approx(80.0, abs=0.01)
    # The window before had one RR of 750 ms: 60000 * 31 / 30750 = 60.488 bpm, so the baseline mean
    # is (4 * 60 + 60.488) / 5 = 60.098 and its std (0.2) is below MIN_STD: z = (80 - 60.098) / 3.
    assert feed.state.baseline30().mean == pytest.approx(60.0976, abs=1e-4)
    assert event.z_score == pytest.approx(6.634, abs=0.001)
    assert (event.window_start_ms, event.window_end_ms) == (T0 + 150_000, T0 + 180_000)
    assert event.model_version == "local-w5"
    assert feed.state.model.n_samples == 5  # the anomalous window does not enter the baseline


def test_std_from_the_baseline_scales_z() -> None:
    feed = Feed()
    for rr in (1000, 800, 1000, 800):  # 60, 75, 60, 75 bpm: mean 67.5, population std 7.5
        feed.beat_every(rr, 30)
    feed.beat_every(1000, 30)
    feed.beat_every(600, 30)  # 100 bpm
    feed.beat_every(1000, 1)
    (event,) = [e for e in feed.events if e.window_start_ms == T0 + 150_000]
    # The anomalous window does not enter the baseline, so the baseline now is the one it met.
    baseline = feed.state.baseline30()
    assert baseline.n == 5 and 64.0 < baseline.mean < 67.0 and baseline.std > 6.0  # not the 3 bpm floor
    assert event.kind == ZSCORE_30S
    assert event.z_score == pytest.approx((event.hr_bpm - baseline.mean) / baseline.std, abs=0.001)


def test_cold_device_reports_absolute_limits_only() -> None:
    feed = Feed()
    feed.beat_every(400, 31)  # 150 bpm at once: no baseline yet
    (event,) = feed.events
    assert (event.kind, event.z_score, event.model_version) == (TACHYCARDIA, None, "cold")


def test_global_prior_scores_the_first_window() -> None:
    feed = Feed()
    prior = ModelWeights(70.0, 70.0**2 + 25.0, 70.0, 70.0**2 + 9.0)  # 70 +- 5 bpm
    feed.state.apply_prior(29_396_880, prior, weight=4.0)
    feed.beat_every(500, 31)  # 120 bpm in the very first window: z = (120 - 70) / 5 = 10
    (event,) = feed.events
    assert event.kind == ZSCORE_30S and event.z_score == pytest.approx(10.0, abs=0.01)
    assert event.model_version == "global-29396880+w0" and event.prior_round == 29_396_880


def test_five_minute_window() -> None:
    """A shift that no 30 s window shows against its spread, but the 5 min windows do (FLEAD)."""
    feed = Feed(DetectorConfig(warmup_windows=2))
    for _ in range(10):  # 60 / 100 bpm alternating: 30 s std ~20 bpm, 5 min values all ~80 bpm
        feed.beat_every(1000, 30)
        feed.beat_every(600, 30)
    assert feed.events == [] and feed.state.baseline30().std > 19.0
    assert feed.state.model.own300.n == 10 and feed.state.baseline300().std < 0.1  # floored to 3 bpm
    for _ in range(5):  # 75 / 120 bpm: every 30 s z <= (120 - 79) / 20 ~ 2, the 5 min mean rises to 97.5
        feed.beat_every(800, 30)
        feed.beat_every(500, 30)
    assert {e.kind for e in feed.events} == {ZSCORE_5MIN}
    first = feed.events[0]
    assert first.window_end_ms - first.window_start_ms == 10 * WINDOW_MS
    assert first.hr_bpm is not None and 90.0 < first.hr_bpm < 91.0
    assert first.z_score == pytest.approx((first.hr_bpm - feed.state.baseline300().mean) / 3.0, abs=0.01)


def test_asystole_once_per_pause() -> None:
    feed = Feed()
    feed.beat_every(1000, 20)
    last_beat = feed.beats[-1]
    feed.pause(10)
    feed.beat_every(1000, 10)
    (event,) = [e for e in feed.events if e.kind == ASYSTOLE]
    assert (event.window_start_ms, event.window_end_ms) == (last_beat, last_beat + 4000)
    assert event.hr_bpm == 0.0


def test_noise_window_is_reported_and_not_scored() -> None:
    feed = Feed()
    feed.beat_every(1000, 120)
    feed.noisy_until = feed.t + 12_000  # 12 of the next 30 s are noisy
    feed.beats += [feed.t + 100 + 150 * i for i in range(60)]  # the detector finds "beats" in the noise
    feed.beat_every(1000, 31)
    kinds = [e.kind for e in feed.events]
    assert kinds == [NOISE]  # no tachycardia from the noise, no asystole either
    assert feed.state.model.n_samples == 4


# --- rate episodes (beat level, wherever they fall) ----------------------------------------------


def test_an_episode_split_over_two_30_s_windows_is_reported_once() -> None:
    feed = Feed()
    feed.beat_every(612, 20)  # ~98 bpm
    feed.beat_every(343, 20)  # ~175 bpm from 20 s to 40 s: 10 s in each 30 s window, each mean < 130 bpm
    feed.beat_every(612, 30)
    (event,) = [e for e in feed.events if e.kind == TACHYCARDIA]
    # From the start of its first fast interval, reported when it has lasted 8 s (MIN_EPISODE).
    assert T0 + 20_000 - 612 <= event.window_start_ms <= T0 + 20_400  # the last slow beat starts it
    assert event.window_end_ms - event.window_start_ms == pytest.approx(8_000, abs=343)
    assert event.hr_bpm == pytest.approx(60000 / 343, abs=0.5)
    # Neither window's mean is beyond the limit: the tumbling rule alone would have missed it.
    assert not [e for e in feed.events if e.kind != TACHYCARDIA]


def test_premature_beats_and_short_runs_are_not_episodes() -> None:
    feed = Feed()
    for _ in range(20):  # a premature beat (300 ms) and its compensatory pause (1100 ms) every 4 beats
        for rr in (700, 700, 300, 1100):
            feed.beats.append((feed.beats[-1] if feed.beats else T0) + rr)
    feed.frames_until(feed.beats[-1] + 1000)
    feed.beat_every(343, 5)  # 6 s at 175 bpm (from the last beat): shorter than the minimum episode, PVC included
    feed.beat_every(700, 20)
    assert [e for e in feed.events if e.kind == TACHYCARDIA] == []


def test_bradycardia_of_15_s_and_an_episode_cut_by_noise() -> None:
    feed = Feed()
    feed.beat_every(800, 30)
    feed.beat_every(1714, 15)  # 35 bpm for 15 s
    feed.beat_every(800, 20)
    (event,) = [e for e in feed.events if e.kind == "bradycardia"]
    assert T0 + 30_000 - 800 <= event.window_start_ms <= T0 + 30_800 and event.hr_bpm == pytest.approx(35.0, abs=0.5)

    feed = Feed()
    feed.beat_every(343, 6)
    feed.noisy_until = feed.t + 2000  # noise in the middle: its beats are not trusted, the run restarts
    feed.beat_every(343, 2)
    feed.beat_every(343, 6)
    assert [e for e in feed.events if e.kind == TACHYCARDIA] == []
