"""One-time backfill from Kafka on the real local stack: with KAFKA_STOP_AT the job reads a bounded range,
closes every window at the end of its input and exits 0 by itself, with exactly the points that streaming
mode publishes for the same frames (the reference model); a range by timestamps gives exactly the points
of the frames inside it."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

from devstack.influx_queries import count_points_v1, create_database_v1
from devstack.simulator import SimConfig, SimMessage, generate_messages, produce
from testkit.jobs import TEST_SECRET, JobProcess
from testkit.kafka_topics import read_topic
from testkit.reference import expected_output
from tests.integration.support import IsolatedRun

START_MS = 1_763_812_800_000  # window-aligned
K = 5
FINISH_SECONDS = 300  # a generous bound: the job must end by itself well before it on this 2-core box


def _run_to_completion(args: list[str], log_path: Path) -> JobProcess:
    job = JobProcess(args, log_path)
    try:
        returncode = job.process.wait(timeout=FINISH_SECONDS)
    except subprocess.TimeoutExpired:
        job.stop()
        raise AssertionError(
            f"the backfill did not finish within {FINISH_SECONDS} s:\n" + job.log_text()[-3000:]
        ) from None
    assert returncode == 0, job.log_text()[-3000:]
    # At the job's end Beam logs its Python workers' environment: the secret (set in the job's environment
    # by JobProcess) must not be in it.
    assert "Closing environment" in job.flink_log_text(), "control: the workers' environment was closed"
    assert TEST_SECRET not in job.flink_log_text() and TEST_SECRET not in job.log_text()
    return job


def _broker_offsets(bootstrap: str, topic: str, first_ms: int, stop_ms: int) -> tuple[dict[int, int], bool]:
    """The end offsets the broker reports now, and whether its offsets-for-times lookups give the first
    record at or after each timestamp (a control: the range test relies on it)."""
    from kafka import KafkaConsumer, TopicPartition

    records = read_topic(bootstrap, topic)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted({r.partition for r in records})]
        ends = {tp.partition: int(offset) for tp, offset in consumer.end_offsets(partitions).items()}
        lookups_right = True
        for stamp in (first_ms, stop_ms):
            found = consumer.offsets_for_times({tp: stamp for tp in partitions})
            for tp, answer in found.items():
                actual = min((r.offset for r in records if r.partition == tp.partition and r.timestamp >= stamp),
                             default=None)
                lookups_right &= (answer.offset if answer else None) == actual
    finally:
        consumer.close()
    return ends, lookups_right


FIRST, STOP = START_MS + 10_000, START_MS + 25_000  # the range by timestamps, window-aligned


def _produce(run: IsolatedRun) -> tuple[list[SimMessage], dict[int, int], bool]:
    config = SimConfig(patients=20, duration_s=30, start_ms=START_MS, sites=2, partitions=4, seed=11)
    messages = list(generate_messages(config))  # no end-of-stream marker: the end of the input closes the windows
    report = produce(messages, run.stack.kafka_bootstrap, run.raw_topic)
    assert report.errors == 0, report.error_samples
    return messages, *_broker_offsets(run.stack.kafka_bootstrap, run.raw_topic, FIRST, STOP)


def test_backfill_ends_by_itself_with_the_streaming_points(isolated_run: IsolatedRun, tmp_path: Path) -> None:
    run, stack = isolated_run, isolated_run.stack
    messages, end_offsets, lookups_right = _produce(run)

    # Up to the offsets at start: all of the input.
    position = {record.value: (record.partition, record.offset) for record in read_topic(stack.kafka_bootstrap,
                                                                                         run.raw_topic)}
    assert len(position) == len(messages) and lookups_right
    assert all(position[m.value][1] < end_offsets[position[m.value][0]] for m in messages)
    expected = expected_output(messages, k=K)
    assert expected.points > 50_000 and expected.windows >= 6
    _run_to_completion(run.job_args("--k-anonymity", str(K), "--kafka-stop-at", "latest", "--cardio-branch", "false"),
                       tmp_path / "all.log")
    assert run.points() == expected.points
    assert run.points_by_level() == expected.points_by_level
    assert run.points(where='"imputed" = true') == expected.imputed_points


def test_backfill_of_a_range_by_timestamps(isolated_run: IsolatedRun, tmp_path: Path) -> None:
    run, stack = isolated_run, isolated_run.stack
    messages, _, lookups_right = _produce(run)
    assert lookups_right
    first, stop = FIRST, STOP
    expected = expected_output(messages, k=K)
    in_range = [message for message in messages if first <= message.timestamp_ms < stop]
    expected_range = expected_output(in_range, k=K)
    assert 0 < expected_range.points < expected.points and expected_range.windows == 2 * 3
    db = "t_" + uuid.uuid4().hex[:10]
    create_database_v1(stack.influx_v1_url, db)
    _run_to_completion(
        run.job_args("--k-anonymity", str(K), "--influx-db", db, "--checkpoint-dir", str(tmp_path / "range-cp"),
                     "--kafka-starting-offsets", str(first), "--kafka-stop-at", "2025-11-22T12:00:25Z",
                     "--cardio-branch", "false"),
        tmp_path / "range.log",
    )
    assert count_points_v1(stack.influx_v1_url, db, "ecg_anonymized") == expected_range.points
    for outside in (f"time < {first * 1_000_000}", f"time >= {stop * 1_000_000}"):
        assert count_points_v1(stack.influx_v1_url, db, "ecg_anonymized", where=outside) == 0
