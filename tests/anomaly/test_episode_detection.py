"""Rate episodes at random offsets and lengths on MIT-BIH record 208 (arrhythmic, frames without
hr_bpm), through the branch's pure core (the job's reference model): every episode of 15 s or more is
found, wherever it falls relative to the 30 s windows, and no rate event is reported outside one.
benchmarks/anomaly_evaluation.py --random-episodes prints the same on a larger population."""

from __future__ import annotations

import json

from anomaly.beats import CardioBeats
from anomaly.device import FrameInput
from connectors.config import load_settings
from contract.frames import EcgFrame, parse_frame
from devstack.simulator import RATE_EPISODE_KINDS, generate_messages, ground_truth, random_rate_episodes
from flink_jobs.cardio_branch import device_config
from hierarchy.loader import load_hierarchy
from privacy.intake import IntakeOptions, to_core_frame
from testkit.branch_model import run_branch
from testkit.jobs import TEST_SECRET
from testkit.scoring import score_events

START_MS = 1_763_812_800_000


def test_rate_episodes_of_15_s_or_more_are_found_wherever_they_fall() -> None:
    config = random_rate_episodes(60, 180, seed=7, start_ms=START_MS)
    settings = load_settings([], environ={"PSEUDONYM_SECRET": TEST_SECRET})
    options = IntakeOptions(TEST_SECRET.encode(), 32, load_hierarchy(settings.path("hierarchy_path")).quasi_identifiers)
    frames = []
    for message in generate_messages(config):
        parsed = parse_frame(message.value, message.timestamp_ms)
        assert isinstance(parsed, EcgFrame) and parsed.hr_bpm is None
        frame, _ = to_core_frame(parsed, options)
        assert not isinstance(frame, type(None))
        frames.append(FrameInput(frame.pid, frame.ts_ms, frame.fs, frame.samples))  # type: ignore[union-attr]
    events = [json.loads(e.to_json()) for e in run_branch(frames, device_config(settings), CardioBeats()).anomalies]
    truth = ground_truth(config)
    straddling = [t for t in truth if t["start_ms"] // 30_000 != (t["end_ms"] - 1) // 30_000]
    assert len(straddling) > len(truth) / 2  # most episodes cross a 30 s window boundary
    for kind in RATE_EPISODE_KINDS:
        episodes = [t for t in truth if t["kind"] == kind]
        long_enough = [t for t in episodes if t["end_ms"] - t["start_ms"] >= 15_000]
        assert len(long_enough) >= 15
        found = score_events(events, long_enough)[kind]
        assert found.recall >= 0.95, found
        everywhere = score_events(events, episodes)[kind]
        assert everywhere.events >= len(long_enough) and everywhere.precision >= 0.95, everywhere
