"""A Kafka outage under the running job (issue 20, item 4, its simplest case).

The job reads a backlog (20 patients x 120 s, bad messages injected) from its own Apache Kafka broker;
mid-backlog the broker is killed (kill -9) for 30 s and restarted on the same log directory. The job
must recover on its own (no operator action: the source reconnects, or the restart strategy restarts
it from its last checkpoint), and end with exactly the reference model's points in InfluxDB; no
reader may see a class below k at any moment during the outage; the dead-letter topic holds every
injected bad message (at-least-once: a job restart may replay some, never lose one).

The test has its own broker (not the session's): killing that one would disturb every other test.

Not yet here: a 120 s outage. Tried once (same data): the job failed over during the outage and
resumed on its own, and InfluxDB ended with exactly the reference points and no class below k, but
during the outage a reader saw one level-8 class of window 1763812885000 with 4 pseudonyms (k = 5),
i.e. a class visible in part for a moment; not understood yet (issue 20, item 4).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.influx_queries import create_database_v1
from devstack.kafka_admin import create_topics
from devstack.simulator import SimConfig, generate_messages, produce
from devstack.stack import LocalStack
from testkit.flink_rest import job_restart_lines
from testkit.jobs import JobProcess, wait_until
from testkit.reference import expected_output
from tests.integration.support import IsolatedRun, visible_classes_below_k

START_MS = 1_763_812_800_000
K = 5


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[LocalStack]:
    """Kafka and influxd of this test's own."""
    stack = LocalStack(tmp_path / "stack")
    stack.start(kafka=True, influx_v1=True, victoria_metrics=False)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.mark.slow
@pytest.mark.parametrize("outage_s", [30])
def test_broker_killed_mid_backlog(own_stack: LocalStack, tmp_path: Path, outage_s: int) -> None:
    stack = own_stack
    create_topics(stack.kafka_bootstrap, {"ecg-raw.outage": 4, "ecg-dlq.outage": 1})
    db = "outage"
    create_database_v1(stack.influx_v1_url, db)
    run = IsolatedRun(
        stack, "ecg-raw.outage", "ecg-dlq.outage", db, tmp_path / "checkpoints", "ecg-anomalies", "ecg-model-updates"
    )

    messages = list(generate_messages(SimConfig(
        patients=20, duration_s=120, start_ms=START_MS, sites=2, bad_fraction=0.03, end_of_stream=True,
        partitions=4, seed=23,
    )))  # fmt: skip
    bad = [m for m in messages if m.kind == "bad"]
    expected = expected_output(messages, k=K)
    report = produce(messages, stack.kafka_bootstrap, run.raw_topic)
    assert report.errors == 0, report.error_samples

    job = JobProcess(run.job_args("--k-anonymity", str(K), "--restart-attempts", "20"), tmp_path / "job.log")
    try:
        wait_until(lambda: run.points() > 0, 180, "first points", job=job)
        stack.kill_kafka()
        points_at_kill = run.points()
        assert points_at_kill < expected.points, "the outage must start mid-backlog: make the backlog longer"
        below_k: list[str] = []
        outage_end = time.monotonic() + outage_s
        while time.monotonic() < outage_end:
            below_k += visible_classes_below_k(stack.influx_v1_url, db, K)
            time.sleep(2)
        assert job.alive(), "the job must survive a broker outage:\n" + job.log_text()[-3000:]
        stack.restart_kafka()

        wait_until(lambda: run.points() >= expected.points, 420, f"{expected.points} points", job=job)
        wait_until(lambda: len(run.dead_letters()) >= len(bad), 120, "dead letters", job=job)
        time.sleep(5)  # more checkpoint intervals: nothing more may arrive
        assert below_k == []
        assert visible_classes_below_k(stack.influx_v1_url, db, K) == []
        assert run.points() == expected.points
        assert run.points_by_level() == expected.points_by_level
        assert run.points(where='"imputed" = true') == expected.imputed_points

        letters = [(r.value, json.loads(r.value)) for r in run.dead_letters()]
        by_position = {(entry["partition"], entry["offset"]): entry for _, entry in letters}
        assert len(by_position) == len(bad), "every injected bad message reaches the DLQ"
        assert Counter(e["reason"] for e in by_position.values()) == Counter(m.expected_reason for m in bad)
        # A replayed dead letter is an exact copy (deduplicate on topic/partition/offset).
        assert all(json.loads(value) == by_position[(e["partition"], e["offset"])] for value, e in letters)
        print(
            f"\noutage {outage_s} s at {points_at_kill}/{expected.points} points; job restarts: "
            f"{len(job_restart_lines(job.flink_log_text()))}; dead letters {len(letters)} for {len(bad)} injected"
        )
    finally:
        job.stop()
