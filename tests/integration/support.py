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
import uuid
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


# --- Flink REST (embedded mini cluster started with --web-ui-port) and restart detection ----------


def rest_get(port: int, path: str, timeout: float = 10.0) -> Any:
    """GET a Flink REST path (e.g. ``/jobs/overview``) and decode its JSON."""
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
        return json.loads(response.read())


def running_job_id(port: int) -> str | None:
    """The jid of the one RUNNING job of the mini cluster behind `port`, None while there is none."""
    try:
        jobs = rest_get(port, "/jobs/overview")["jobs"]
    except OSError:  # REST not up yet
        return None
    running = [job["jid"] for job in jobs if job["state"] == "RUNNING"]
    assert len(running) <= 1, jobs
    return running[0] if running else None


def job_restarts(port: int, jid: str) -> int | None:
    """The job-level ``numRestarts`` metric: restarts since submission, global or of a failover
    region. None until the REST metric fetcher has it (a few seconds after the job starts)."""
    metrics = rest_get(port, f"/jobs/{jid}/metrics?get=numRestarts")
    return int(float(metrics[0]["value"])) if metrics else None


# Lines Flink's JobMaster logs whenever the job (not one task) leaves RUNNING for a restart or failure.
JOB_RESTART_PATTERN = re.compile(r"switched from state RUNNING to (?:FAILING|FAILED|RESTARTING)|"
                                 r"switched from RUNNING to (?:FAILING|FAILED|RESTARTING)")


def job_restart_lines(flink_log: str) -> list[str]:
    """Flink log lines showing a job failure/restart or a failed task (empty for a clean run)."""
    return [
        line for line in flink_log.splitlines()
        if JOB_RESTART_PATTERN.search(line) or "switched from RUNNING to FAILED" in line
        or "Recovering job" in line or "restarting the job" in line.lower()
    ]


# --- Kafka: produce with positions, read several topics at once --------------------------------


def make_large_producer(bootstrap: str, max_request_size: int = 16 * 1024 * 1024) -> Any:
    """A kafka-python producer that can send the 10 MB corpus entry (acks=all, ordered)."""
    from kafka import KafkaProducer

    return KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=max_request_size,
        max_in_flight_requests_per_connection=1, client_id="ecg-tests",
    )


def read_topics(bootstrap: str, topics: Iterable[str], timeout: float = 5.0,
                max_partition_fetch_bytes: int = 16 * 1024 * 1024) -> dict[str, list[Any]]:
    """All records of several topics (every partition, from the beginning) with one consumer.

    Fetch sizes allow the largest message the local broker takes, so no record is skipped."""
    from kafka import KafkaConsumer, TopicPartition

    wanted = sorted(set(topics))
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000,
                             max_partition_fetch_bytes=max_partition_fetch_bytes,
                             fetch_max_bytes=4 * max_partition_fetch_bytes)
    try:
        assignment = [
            TopicPartition(topic, partition)
            for topic in wanted
            for partition in sorted(consumer.partitions_for_topic(topic) or set())
        ]
        records: dict[str, list[Any]] = {topic: [] for topic in wanted}
        if not assignment:
            return records
        consumer.assign(assignment)
        consumer.seek_to_beginning(*assignment)
        idle_deadline = time.monotonic() + timeout
        while time.monotonic() < idle_deadline:
            batch = consumer.poll(timeout_ms=500)
            for partition, partition_records in batch.items():
                records[partition.topic].extend(partition_records)
            if batch:
                idle_deadline = time.monotonic() + timeout / 2
        return records
    finally:
        consumer.close()


def list_topics(bootstrap: str) -> list[str]:
    from connectors.local_stack import _admin

    admin = _admin(bootstrap)
    try:
        return sorted(admin.list_topics())
    finally:
        admin.close()


# --- Leak scanning ----------------------------------------------------------------------------


def find_needles(haystacks: Iterable[tuple[str, bytes | str]], needles: Iterable[str]) -> list[str]:
    """`"<needle> in <where>"` for every needle found in every (where, content) pair.

    Content is searched as bytes for the needle's UTF-8 and for its ASCII-escaped JSON form
    (``J\\u00fcrgen``), so a needle inside JSON written with ensure_ascii or a binary file still hits."""
    import json

    forms = {
        needle: {needle.encode("utf-8"), json.dumps(needle, ensure_ascii=True)[1:-1].encode("ascii")}
        for needle in dict.fromkeys(needles) if needle
    }
    hits: list[str] = []
    for where, content in haystacks:
        data = content.encode("utf-8", "surrogatepass") if isinstance(content, str) else bytes(content)
        hits.extend(f"{needle!r} in {where}" for needle, encoded in forms.items() if any(e in data for e in encoded))
    return hits


@dataclass
class IsolatedRun:
    """One test's own input topic, dead-letter topic and InfluxDB database on the shared local stack,
    and the job flags that point the job at them."""

    stack: Any
    raw_topic: str
    dlq_topic: str
    db: str
    checkpoint_dir: Path

    @classmethod
    def create(cls, stack: Any, fresh_topics: Callable[..., list[str]], workdir: Path,
               partitions: int = 4) -> IsolatedRun:
        from connectors.local_stack import create_database_v1

        (raw_topic,) = fresh_topics("ecg-raw", partitions=partitions)
        (dlq_topic,) = fresh_topics("ecg-dlq", partitions=1)
        db = "t_" + uuid.uuid4().hex[:10]
        create_database_v1(stack.influx_v1_url, db)
        return cls(stack, raw_topic, dlq_topic, db, workdir / "checkpoints")

    def job_args(self, *extra: str) -> list[str]:
        return job_args(self.stack, self.checkpoint_dir, "--influx-db", self.db,
                        "--kafka-input-topic", self.raw_topic, "--kafka-dlq-topic", self.dlq_topic, *extra)

    def points(self, where: str | None = None) -> int:
        from connectors.local_stack import count_points_v1

        return count_points_v1(self.stack.influx_v1_url, self.db, "ecg_anonymized", where=where)

    def points_by_level(self) -> Counter[int]:
        from connectors.local_stack import query_v1

        rows = query_v1(self.stack.influx_v1_url,
                        'SELECT count("ecg_mv") FROM "ecg_anonymized" GROUP BY "level"', self.db)
        return Counter({int(row["level"]): int(row["count"]) for row in rows})

    def dead_letters(self) -> list[Any]:
        return read_topic(self.stack.kafka_bootstrap, self.dlq_topic)
