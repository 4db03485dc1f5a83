"""Helpers for tests that run the real job against the real local stack.

- `JobProcess`: the job as `python -m flink_jobs.ecg_anonymization_job` in its own process group
  (embedded Flink mini cluster), so `kill_hard()` is a real kill -9 of JVM and Python workers.
- `expected_output`: the reference model. It replays the same simulator messages through the same
  pure functions the job uses (parse_frame -> to_core_frame -> anonymize_window per site and event-time
  window, state threaded window to window), so the job's InfluxDB content can be checked exactly.
- `read_topic`: reads a whole topic with assign/seek (no consumer group, nothing committed).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
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

TEST_SECRET = "integration-test-secret-0123456789abcdef"


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


class JobProcess:
    """The anonymization job in an embedded mini cluster, in its own process group."""

    def __init__(self, args: Sequence[str], log_path: Path, env: dict[str, str] | None = None,
                 module: str = "flink_jobs.ecg_anonymization_job", cwd: Path = PROJECT_ROOT) -> None:
        self.log_path = log_path
        environment = dict(os.environ if env is None else env)
        environment.setdefault("PSEUDONYM_SECRET", TEST_SECRET)
        # Flink (and Python worker) logs of this job only, for window lines and leak scans.
        self.flink_log_dir = log_path.parent / f"{log_path.stem}-flink"
        environment["FLINK_LOG_DIR"] = str(self.flink_log_dir)
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=cwd,
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


def branch_args(anomaly_topic: str, model_topic: str) -> list[str]:
    """Flags of the cardio branch for a run with its own (fresh) anomaly and model topics."""
    if not anomaly_topic:
        return []
    return ["--kafka-anomaly-topic", anomaly_topic, "--kafka-model-topic", model_topic]


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


def read_topic(bootstrap: str, topic: str, timeout: float = 5.0,
               isolation_level: str = "read_uncommitted") -> list[Any]:
    """All records of a topic (every partition, from the beginning) via assign/seek; ``read_committed``
    leaves out the records of aborted and open transactions."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=1000,
                             isolation_level=isolation_level)
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


def job_metrics(port: int) -> dict[str, float]:
    """Every `ecg.*` metric of the running job (ids `<subtask>.<operator>.ecg.<name>`), summed over
    operators and subtasks, by name."""
    jid = running_job_id(port)
    assert jid is not None, "no RUNNING job"
    totals: dict[str, float] = {}
    for vertex in rest_get(port, f"/jobs/{jid}")["vertices"]:
        base = f"/jobs/{jid}/vertices/{vertex['id']}/metrics"
        names = [m["id"] for m in rest_get(port, base) if ".ecg." in m["id"]]
        for start in range(0, len(names), 20):
            query = urllib.parse.quote(",".join(names[start : start + 20]), safe=",")
            for metric in rest_get(port, f"{base}?get={query}"):
                short = metric["id"].rsplit(".", 1)[-1]
                totals[short] = totals.get(short, 0.0) + float(metric["value"])
    return totals


def vertex_watermarks(port: int) -> dict[str, int | None]:
    """Per vertex of the running job: the lowest input watermark over its subtasks (epoch ms; None
    before any watermark), from the REST API, to see where event time stops."""
    jid = running_job_id(port)
    assert jid is not None, "no RUNNING job"
    result: dict[str, int | None] = {}
    for vertex in rest_get(port, f"/jobs/{jid}")["vertices"]:
        items = rest_get(port, f"/jobs/{jid}/vertices/{vertex['id']}/watermarks")
        values = [int(float(item["value"])) for item in items]
        lowest = min(values) if values else None
        result[vertex["name"]] = None if lowest is None or lowest == -(2**63) else lowest
    return result


def stall_report(port: int) -> dict[str, dict[str, float | None]]:
    """Per vertex of the running job: its lowest input watermark and the time per second its subtasks were
    busy, idle and backpressured (the highest over subtasks), to say where a job that makes no progress
    waits. Best effort: an error is reported, not raised (this is for failure messages)."""
    try:
        jid = running_job_id(port)
        if jid is None:
            return {"job": {"running": 0.0}}
        report: dict[str, dict[str, float | None]] = {}
        watermarks = vertex_watermarks(port)
        names = ("busyTimeMsPerSecond", "idleTimeMsPerSecond", "backPressuredTimeMsPerSecond")
        for vertex in rest_get(port, f"/jobs/{jid}")["vertices"]:
            subtasks = rest_get(port, f"/jobs/{jid}/vertices/{vertex['id']}/subtasks/metrics?get={','.join(names)}")
            entry: dict[str, float | None] = {"watermark": watermarks.get(vertex["name"])}
            for metric in subtasks:
                entry[metric["id"]] = metric.get("max")
            report[vertex["name"][:60]] = entry
        return report
    except (OSError, AssertionError, KeyError, ValueError) as error:
        return {"error": {repr(error): None}}


def accounting_errors(metrics: dict[str, float]) -> list[str]:
    """The accounting invariant over the job's metrics; empty when every record is accounted for:
    input = control + dead-lettered + valid; valid = windowed + late; windowed = anonymized + pending;
    anonymized = published + suppressed."""
    m = {name: int(metrics.get(name, 0)) for name in (
        "records_in", "control_records", "dead_lettered", "frames_valid", "frames_windowed", "late_records",
        "frames_pending", "frames_anonymized", "frames_published", "frames_suppressed", "accounting_violations")}
    checks = {
        "records_in = control + dead_lettered + valid":
            m["records_in"] == m["control_records"] + m["dead_lettered"] + m["frames_valid"],
        "valid = windowed + late": m["frames_valid"] == m["frames_windowed"] + m["late_records"],
        "windowed = anonymized + pending": m["frames_windowed"] == m["frames_anonymized"] + m["frames_pending"],
        "anonymized = published + suppressed":
            m["frames_anonymized"] == m["frames_published"] + m["frames_suppressed"],
        "no accounting violation": m["accounting_violations"] == 0,
    }
    return [f"{name}: {m}" for name, ok in checks.items() if not ok]


def source_offsets(port: int) -> dict[int, int]:
    """Per partition, the offset the running job's Kafka source has read up to (REST metrics
    `...KafkaSourceReader.topic.<topic>.partition.<p>.currentOffset`; the job reads one topic, whose
    name Flink may rewrite in metric ids)."""
    jid = running_job_id(port)
    if jid is None:
        return {}
    offsets: dict[int, int] = {}
    for vertex in rest_get(port, f"/jobs/{jid}")["vertices"]:
        base = f"/jobs/{jid}/vertices/{vertex['id']}/metrics"
        names = [m["id"] for m in rest_get(port, base)
                 if ".KafkaSourceReader.topic." in m["id"] and m["id"].endswith(".currentOffset")]
        for start in range(0, len(names), 20):
            query = urllib.parse.quote(",".join(names[start : start + 20]), safe=",")
            for metric in rest_get(port, f"{base}?get={query}"):
                partition = int(metric["id"].rsplit(".partition.", 1)[1].split(".")[0])
                offsets[partition] = max(offsets.get(partition, -1), int(float(metric["value"])))
    return offsets


def source_drained(port: int, last_offsets: dict[int, int]) -> bool:
    """True once the source has read up to the last record of every partition."""
    try:
        offsets = source_offsets(port)
    except OSError:
        return False
    return all(offsets.get(partition, -1) >= last for partition, last in last_offsets.items())


def last_offsets_of(bootstrap: str, topic: str) -> dict[int, int]:
    """Offset of the last record of each non-empty partition (the broker's end offsets, minus one)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        assignment = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or set())]
        begin = consumer.beginning_offsets(assignment)
        end = consumer.end_offsets(assignment)
    finally:
        consumer.close()
    return {tp.partition: end[tp] - 1 for tp in assignment if end[tp] > begin[tp]}


def visible_classes_below_k(url: str, db: str, k: int, window_seconds: int = 5,
                            measurement: str = "ecg_anonymized") -> list[str]:
    """What a privacy officer checks on the output, at this moment: the published points (levels 1..8)
    grouped by the window of their timestamps and by class (level + generalized labels); every group
    with fewer than k distinct pseudonyms, as text (empty = fine)."""
    from devstack.local_stack import query_v1

    rows = query_v1(url, f'SELECT count("ecg_mv") FROM "{measurement}" WHERE "level" != \'9\' AND time > 0 '
                         f'GROUP BY time({window_seconds}s), "level", "age", "sex", "zip", "pid" fill(none)', db)
    groups: dict[tuple[Any, ...], set[str]] = defaultdict(set)
    for row in rows:
        groups[(row["time"], row["level"], row["age"], row["sex"], row["zip"])].add(row["pid"])
    return [f"window {key[0]} level {key[1]} {key[2:]}: {len(pids)} pseudonyms"
            for key, pids in sorted(groups.items()) if len(pids) < k]


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
    from devstack.local_stack import _admin

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
    anomaly_topic: str = ""
    model_topic: str = ""

    @classmethod
    def create(cls, stack: Any, fresh_topics: Callable[..., list[str]], workdir: Path,
               partitions: int = 4) -> IsolatedRun:
        from devstack.local_stack import create_database_v1

        (raw_topic,) = fresh_topics("ecg-raw", partitions=partitions)
        dlq_topic, anomaly_topic, model_topic = fresh_topics("ecg-dlq", "ecg-anomalies", "ecg-model-updates",
                                                             partitions=1)
        db = "t_" + uuid.uuid4().hex[:10]
        create_database_v1(stack.influx_v1_url, db)
        return cls(stack, raw_topic, dlq_topic, db, workdir / "checkpoints", anomaly_topic, model_topic)

    def job_args(self, *extra: str) -> list[str]:
        return job_args(self.stack, self.checkpoint_dir, "--influx-db", self.db,
                        "--kafka-input-topic", self.raw_topic, "--kafka-dlq-topic", self.dlq_topic,
                        *branch_args(self.anomaly_topic, self.model_topic), *extra)

    def anomalies(self) -> list[dict[str, Any]]:
        import json

        return [json.loads(r.value) for r in read_topic(self.stack.kafka_bootstrap, self.anomaly_topic)]

    def model_updates(self) -> list[dict[str, Any]]:
        import json

        return [json.loads(r.value) for r in read_topic(self.stack.kafka_bootstrap, self.model_topic)]

    def points(self, where: str | None = None) -> int:
        from devstack.local_stack import count_points_v1

        return count_points_v1(self.stack.influx_v1_url, self.db, "ecg_anonymized", where=where)

    def points_by_level(self) -> Counter[int]:
        from devstack.local_stack import query_v1

        rows = query_v1(self.stack.influx_v1_url,
                        'SELECT count("ecg_mv") FROM "ecg_anonymized" GROUP BY "level"', self.db)
        return Counter({int(row["level"]): int(row["count"]) for row in rows})

    def dead_letters(self) -> list[Any]:
        return read_topic(self.stack.kafka_bootstrap, self.dlq_topic)


# --- The cardio branch: reference model and ground truth -------------------------------------


def expected_branch(messages: Iterable[SimMessage], job_argv: Sequence[str], secret: str = TEST_SECRET) -> Any:
    """What the cardio branch must publish: the same frames through anomaly.pipeline.run_branch (the
    job's pure core in event-time order) with the job's own settings (same flags)."""
    from anomaly.beats import CardioBeats
    from anomaly.device import FrameInput
    from anomaly.pipeline import run_branch
    from connectors.config import load_settings
    from flink_jobs.cardio_branch import device_config

    settings = load_settings(list(job_argv), environ={"PSEUDONYM_SECRET": secret})
    hierarchy = load_hierarchy(settings.path("hierarchy_path"))
    options = IntakeOptions(secret.encode(), settings.pseudonym_hex_chars, hierarchy.quasi_identifiers)
    frames = [FrameInput(frame.pid, frame.ts_ms, frame.fs, frame.samples)
              for _, _, frame in core_frames(messages, options)]
    return run_branch(frames, device_config(settings), CardioBeats())


@dataclass(frozen=True)
class EpisodeScore:
    kind: str
    events: int
    true_events: int
    episodes: int
    episodes_found: int

    @property
    def precision(self) -> float:
        return self.true_events / self.events if self.events else float("nan")

    @property
    def recall(self) -> float:
        return self.episodes_found / self.episodes if self.episodes else float("nan")


# Which ground-truth episode kinds an anomaly kind may report (z-scores report either direction).
MATCHING_EPISODES = {
    "tachycardia": {"tachycardia"}, "bradycardia": {"bradycardia"}, "asystole": {"asystole"}, "noise": {"noise"},
    "hr_zscore_30s": {"tachycardia", "bradycardia"}, "hr_zscore_5min": {"tachycardia", "bradycardia"},
}


def score_events(events: Iterable[dict[str, Any]], truth: Iterable[dict[str, Any]], secret: str = TEST_SECRET,
                 slack_ms: int = 0) -> dict[str, EpisodeScore]:
    """Precision (events overlapping an episode of a matching kind on the same pid) and recall
    (episodes with at least one such event) per anomaly kind."""
    from privacy.pseudonym import pseudonymize

    episodes = [{**t, "pid": pseudonymize(t["patient_id"], secret.encode(), scope=t["site"])} for t in truth]
    events = list(events)
    scores = {}
    for kind, matching in MATCHING_EPISODES.items():
        own = [e for e in events if e["kind"] == kind]
        relevant = [t for t in episodes if t["kind"] in matching]

        def overlaps(event: dict[str, Any], episode: dict[str, Any]) -> bool:
            return (event["pid"] == episode["pid"] and event["window_start"] < episode["end_ms"] + slack_ms
                    and event["window_end"] > episode["start_ms"] - slack_ms)

        true_events = sum(1 for e in own if any(overlaps(e, t) for t in relevant))
        found = sum(1 for t in relevant if any(overlaps(e, t) for e in own))
        scores[kind] = EpisodeScore(kind, len(own), true_events, len(relevant), found)
    return scores


def score_table(scores: dict[str, EpisodeScore]) -> str:
    lines = ["kind              events  precision  episodes  recall"]
    for score in scores.values():
        lines.append(f"{score.kind:<17} {score.events:>6}  {score.precision:>9.2f}  {score.episodes:>8}  "
                     f"{score.recall:>6.2f}")
    return "\n".join(lines)
