"""The reference model: what the job must publish for given simulator messages.

It replays the messages through the same pure functions the job uses (parse_frame -> to_core_frame ->
anonymize_window per site and event-time window, state threaded window to window; the cardio branch
through testkit.branch_model.run_branch), so the job's output can be checked exactly."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from connectors.config import PROJECT_ROOT
from contract.frames import EcgFrame, parse_frame
from devstack.simulator import SimMessage
from hierarchy.loader import load_hierarchy
from privacy.intake import IntakeOptions, to_core_frame
from privacy.kanonymity import AnonymizationConfig, KeyState, WindowResult, anonymize_window
from privacy.model import Frame
from privacy.pseudonym import suppression_token_key
from testkit.jobs import TEST_SECRET


@dataclass
class ExpectedOutput:
    points: int = 0
    points_by_level: Counter[int] = field(default_factory=Counter)
    imputed_points: int = 0
    pids: set[str] = field(default_factory=set)
    windows: int = 0
    anchors: int = 0  # pseudonyms with a sticky label (the privacy core's cross-window memory) at the end



def core_frames(messages: Iterable[SimMessage], options: IntakeOptions) -> Iterable[tuple[SimMessage, str, Frame]]:
    """(message, group, core frame) of every valid frame message, through the job's own parse and intake."""
    for message in messages:
        parsed = parse_frame(message.value, message.timestamp_ms)
        if not isinstance(parsed, EcgFrame):
            continue
        frame, _ = to_core_frame(parsed, options)
        assert isinstance(frame, Frame)
        yield message, parsed.group, frame



def anonymized_windows(
    messages: Iterable[SimMessage],
    *,
    k: int,
    window_seconds: int = 5,
    secret: str = TEST_SECRET,
    hierarchy_path: Path = PROJECT_ROOT / "hierarchy" / "ecg_hierarchy.csv",
    watermark_ms: int | None = None,
) -> Iterator[tuple[str, int, WindowResult]]:
    """The job's windows as the pure core computes them, per group in event-time order: (group, window
    start, result). ``watermark_ms``: only the windows event time up to that watermark closes."""
    hierarchy = load_hierarchy(hierarchy_path)
    options = IntakeOptions(secret.encode(), 32, hierarchy.quasi_identifiers)
    config = AnonymizationConfig(hierarchy=hierarchy, k=k, token_key=suppression_token_key(secret.encode()))
    window_ms = window_seconds * 1000
    windows: dict[str, dict[int, list[Frame]]] = defaultdict(lambda: defaultdict(list))
    for message, group, frame in core_frames(messages, options):
        # The job assigns windows by the Kafka record timestamp.
        windows[group][message.timestamp_ms - message.timestamp_ms % window_ms].append(frame)
    for group, by_start in windows.items():
        state: KeyState | None = None
        for start in sorted(by_start):
            if watermark_ms is not None and start + window_ms - 1 > watermark_ms:
                break
            result = anonymize_window(by_start[start], state, config, start)
            state = result.state
            yield group, start, result



def expected_output(
    messages: Iterable[SimMessage],
    *,
    k: int,
    window_seconds: int = 5,
    secret: str = TEST_SECRET,
    hierarchy_path: Path = PROJECT_ROOT / "hierarchy" / "ecg_hierarchy.csv",
    watermark_ms: int | None = None,
) -> ExpectedOutput:
    """What the job publishes for these messages (the windows of `anonymized_windows`, summed)."""
    expected = ExpectedOutput()
    final_states: dict[str, KeyState] = {}
    windows = anonymized_windows(messages, k=k, window_seconds=window_seconds, secret=secret,
                                 hierarchy_path=hierarchy_path, watermark_ms=watermark_ms)
    for group, _, result in windows:
        final_states[group] = result.state
        expected.windows += 1
        for published in result.published:
            count = int(np.isfinite(published.ecg_mv).sum())
            expected.points += count
            expected.points_by_level[published.level] += count
            expected.imputed_points += count if published.imputed else 0
            expected.pids.add(published.pid)
    expected.anchors = sum(len(state.anchors) for state in final_states.values())
    return expected



def expected_branch(messages: Iterable[SimMessage], job_argv: Sequence[str], secret: str = TEST_SECRET) -> Any:
    """What the cardio branch must publish: the same frames through testkit.branch_model.run_branch (the
    job's pure core in event-time order) with the job's own settings (same flags)."""
    from anomaly.beats import CardioBeats
    from anomaly.device import FrameInput
    from connectors.config import load_settings
    from flink_jobs.cardio_branch import device_config
    from testkit.branch_model import run_branch

    settings = load_settings(list(job_argv), environ={"PSEUDONYM_SECRET": secret})
    hierarchy = load_hierarchy(settings.path("hierarchy_path"))
    options = IntakeOptions(secret.encode(), settings.pseudonym_hex_chars, hierarchy.quasi_identifiers)
    frames = [FrameInput(frame.pid, frame.ts_ms, frame.fs, frame.samples)
              for _, _, frame in core_frames(messages, options)]
    return run_branch(frames, device_config(settings), CardioBeats())

