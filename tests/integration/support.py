"""Helpers for tests that run the real job against the real local stack.

- `JobProcess`: the job as `python -m flink_jobs.ecg_anonymization_job` in its own process group
  (embedded Flink mini cluster), so `kill_hard()` is a real kill -9 of JVM and Python workers.
- `expected_output`: the reference model. It replays the same simulator messages through the same
  pure functions the job uses (parse_frame -> to_core_frame -> anonymize_window per site and event-time
  window, state threaded window to window), so the job's InfluxDB content can be checked exactly.
- `read_topic`: reads a whole topic with assign/seek (consumer groups are flaky on Tansu).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from connectors.config import PROJECT_ROOT
from connectors.simulator import SimMessage
from contract.frames import EcgFrame, parse_frame
from hierarchy.loader import load_hierarchy
from privacy.intake import IntakeOptions, to_core_frame
from privacy.kanonymity import AnonymizationConfig, KeyState, anonymize_window
from privacy.model import Frame

TEST_SECRET = "integration-test-secret-0123456789abcdef"


@dataclass
class ExpectedOutput:
    points: int = 0
    points_by_level: Counter[int] = field(default_factory=Counter)
    imputed_points: int = 0
    frames_carried_pending: int = 0
    frames_carried_total: int = 0
    pids: set[str] = field(default_factory=set)
    windows: int = 0


def expected_output(
    messages: Iterable[SimMessage],
    *,
    k: int,
    window_seconds: int = 5,
    max_delay_windows: int = 1,
    secret: str = TEST_SECRET,
    hierarchy_path: Path = PROJECT_ROOT / "hierarchy" / "ecg_hierarchy.csv",
) -> ExpectedOutput:
    hierarchy = load_hierarchy(hierarchy_path)
    options = IntakeOptions(secret.encode(), 32, hierarchy.quasi_identifiers)
    config = AnonymizationConfig(hierarchy=hierarchy, k=k, max_delay_windows=max_delay_windows)
    window_ms = window_seconds * 1000
    windows: dict[str, dict[int, list[Frame]]] = defaultdict(lambda: defaultdict(list))
    for message in messages:
        parsed = parse_frame(message.value, message.timestamp_ms)
        if not isinstance(parsed, EcgFrame):
            continue
        frame, _ = to_core_frame(parsed, options)
        assert isinstance(frame, Frame)
        # Flink assigns windows by the Kafka record timestamp.
        windows[parsed.group][message.timestamp_ms - message.timestamp_ms % window_ms].append(frame)
    expected = ExpectedOutput()
    for by_start in windows.values():
        state: KeyState | None = None
        for start in sorted(by_start):
            result = anonymize_window(by_start[start], state, config)
            state = result.state
            expected.windows += 1
            expected.frames_carried_total += result.metrics.frames_carried_out
            for published in result.published:
                count = int(np.isfinite(published.ecg_mv).sum())
                expected.points += count
                expected.points_by_level[published.level] += count
                expected.imputed_points += count if published.imputed else 0
                expected.pids.add(published.pid)
        if state is not None:
            expected.frames_carried_pending += len(state.carry)
    return expected


class JobProcess:
    """The anonymization job in an embedded mini cluster, in its own process group."""

    def __init__(self, args: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        environment = dict(os.environ if env is None else env)
        environment.setdefault("PSEUDONYM_SECRET", TEST_SECRET)
        # Flink (and Python worker) logs of this job only, for window lines and leak scans.
        self.flink_log_dir = log_path.parent / f"{log_path.stem}-flink"
        environment["FLINK_LOG_DIR"] = str(self.flink_log_dir)
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flink_jobs.ecg_anonymization_job", *args],
            cwd=PROJECT_ROOT,
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill_hard(self) -> None:
        """kill -9 of the whole job: client, Flink JVM and Python workers."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        self._log.close()

    def stop(self) -> None:
        if self.alive():
            self.kill_hard()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def flink_log_text(self) -> str:
        return "".join(path.read_text(errors="replace") for path in sorted(self.flink_log_dir.glob("*.log*")))

    def window_log(self) -> list[tuple[str, int, int]]:
        """(group, window start, per-key window number) of every window this job anonymized."""
        return [
            (match[1], int(match[2]), int(match[3]))
            for match in re.finditer(r"window (\S+) \[(\d+), \d+\) #(\d+) ", self.flink_log_text())
        ]


def job_args(stack: Any, checkpoint_dir: Path, *extra: str) -> list[str]:
    return [
        "--kafka-bootstrap", stack.kafka_bootstrap,
        "--influx-transport", "v1", "--influx-url", stack.influx_v1_url, "--influx-db", stack.influx_db,
        "--checkpoint-dir", str(checkpoint_dir), "--checkpoint-interval-seconds", "2",
        "--restart-attempts", "2",
        *extra,
    ]  # fmt: skip


def wait_until(condition: Callable[[], Any], timeout: float, what: str, *, poll: float = 1.0,
               job: JobProcess | None = None) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        if job is not None and not job.alive():
            raise AssertionError(f"job exited ({job.process.returncode}) while waiting for {what}:\n"
                                 + job.log_text()[-3000:])
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def read_topic(bootstrap: str, topic: str, timeout: float = 5.0) -> list[Any]:
    """All records of a topic (every partition, from the beginning) via assign/seek."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        assignment = [TopicPartition(topic, partition) for partition in sorted(partitions)]
        consumer.assign(assignment)
        consumer.seek_to_beginning(*assignment)
        records: list[Any] = []
        idle_deadline = time.monotonic() + timeout
        while time.monotonic() < idle_deadline:
            batch = consumer.poll(timeout_ms=500)
            for partition_records in batch.values():
                records.extend(partition_records)
            if batch:
                idle_deadline = time.monotonic() + timeout / 2
        return records
    finally:
        consumer.close()
