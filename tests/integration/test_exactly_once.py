"""KAFKA_DELIVERY=exactly-once on Apache Kafka: one kill -9 of the job mid-stream, resumed from its
latest checkpoint (a first step of issue 20, item 3).

The kill comes while a transaction holds dead letters. A read_committed reader of the dead-letter
topic must see every injected bad message exactly once (on Tansu, the former local broker, which
showed aborted transactions, every dead letter replayed after a restart was seen twice), and InfluxDB
must hold exactly the reference model's points.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from connectors.checkpoints import completed_checkpoints, latest_checkpoint
from devstack.simulator import ProduceReport, SimConfig, generate_messages, produce
from testkit.jobs import JobProcess, wait_until
from testkit.kafka_topics import read_topic
from testkit.reference import expected_output
from tests.integration.support import IsolatedRun

START_MS = 1_763_812_800_000
K = 5


@pytest.mark.slow
def test_dead_letters_exactly_once_across_a_kill(isolated_run: IsolatedRun, tmp_path: Path) -> None:
    run, stack = isolated_run, isolated_run.stack
    messages = list(generate_messages(SimConfig(
        patients=20, duration_s=60, start_ms=START_MS, sites=2, bad_fraction=0.05, end_of_stream=True,
        partitions=4, seed=31,
    )))  # fmt: skip
    bad = [m for m in messages if m.kind == "bad"]
    expected = expected_output(messages, k=K)

    def committed_letters() -> list[bytes]:
        return [
            r.value
            for r in read_topic(stack.kafka_bootstrap, run.dlq_topic, timeout=1.0, isolation_level="read_committed")
        ]

    def all_letters() -> list[bytes]:
        return [r.value for r in read_topic(stack.kafka_bootstrap, run.dlq_topic, timeout=1.0)]

    dlq_partition = TopicPartition(run.dlq_topic, 0)
    end_offsets = KafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, isolation_level="read_uncommitted")
    stable_offsets = KafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, isolation_level="read_committed")

    def records_in_open_transaction() -> int:
        """High watermark minus last stable offset of the DLQ: records of a transaction still open."""
        high = end_offsets.end_offsets([dlq_partition])[dlq_partition]
        stable = stable_offsets.end_offsets([dlq_partition])[dlq_partition]
        return max(0, high - stable)

    env = {**os.environ, "KAFKA_DELIVERY": "exactly-once"}
    args = run.job_args("--k-anonymity", str(K))
    checkpoints = run.checkpoint_dir
    first = JobProcess(args, tmp_path / "job-1.log", env=env)
    second: JobProcess | None = None
    report = ProduceReport()
    producer = threading.Thread(
        target=lambda: report.__dict__.update(
            produce(messages, stack.kafka_bootstrap, run.raw_topic, rate=40).__dict__
        ),
        daemon=True,
    )
    try:
        wait_until(lambda: completed_checkpoints(checkpoints), 120, "a first completed checkpoint", job=first)
        producer.start()
        wait_until(lambda: committed_letters(), 120, "first committed dead letters", job=first)
        seen = latest_checkpoint(checkpoints)
        wait_until(lambda: latest_checkpoint(checkpoints) != seen, 30, "a checkpoint with data", job=first)
        # Kill while the open transaction holds dead letters: they must never become visible to a
        # read_committed reader, and the resumed job must write them again.
        wait_until(
            lambda: records_in_open_transaction() > 0, 60, "dead letters in an open transaction", poll=0.05, job=first
        )
        first.kill_hard()
        assert producer.is_alive(), "the kill must happen mid-stream"
        open_at_kill = records_in_open_transaction()
        letters_at_kill = len(committed_letters())
        assert 0 < letters_at_kill < len(bad)
        assert open_at_kill > 0, "the kill came right after a commit: nothing to abort"

        second = JobProcess([*args, "--from-checkpoint", "latest"], tmp_path / "job-2.log", env=env)
        producer.join(timeout=120)
        assert report.errors == 0
        wait_until(lambda: run.points() >= expected.points, 240, f"{expected.points} points", job=second)
        wait_until(lambda: len(committed_letters()) >= len(bad), 120, "every dead letter committed", job=second)
        time.sleep(5)  # more checkpoints (and transactions): nothing more may become visible
        assert run.points() == expected.points
        assert run.points_by_level() == expected.points_by_level

        committed = [json.loads(value) for value in committed_letters()]
        positions = Counter((entry["partition"], entry["offset"]) for entry in committed)
        assert len(committed) == len(bad), f"duplicates: {[p for p, n in positions.items() if n > 1]}"
        assert len(positions) == len(bad)
        assert Counter(entry["reason"] for entry in committed) == Counter(m.expected_reason for m in bad)
        # The records of the transaction open at the kill are still in the log, aborted.
        everything = len(all_letters())
        assert everything >= len(bad) + open_at_kill
        print(
            f"\ndead letters: {len(bad)} injected, {letters_at_kill} committed and {open_at_kill} in the open "
            f"transaction at the kill, {len(committed)} read_committed, {everything} read_uncommitted"
        )
    finally:
        first.stop()
        if second is not None:
            second.stop()
        end_offsets.close()
        stable_offsets.close()
