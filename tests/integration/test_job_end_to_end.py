"""End to end on the real local stack: simulator -> Kafka -> job (mini cluster) -> InfluxDB 1.x + DLQ.

20 patients x 60 s of MIT-BIH frames with malformed messages injected. InfluxDB must hold exactly the
points of the reference model, the dead-letter topic exactly the injected bad messages, and no raw
identifier (nor the HMAC secret) may appear in InfluxDB or the job's log.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from devstack.influx_queries import query_v1
from devstack.simulator import SimConfig, generate_messages, produce
from testkit.jobs import TEST_SECRET, JobProcess, wait_until
from testkit.reference import expected_output
from tests.integration.support import IsolatedRun

START_MS = 1_763_812_800_000  # window-aligned, fixed so the run is reproducible
K = 5


def test_twenty_patients_sixty_seconds(isolated_run: IsolatedRun, tmp_path: Path) -> None:
    run, local_stack = isolated_run, isolated_run.stack

    config = SimConfig(
        patients=20, duration_s=60, start_ms=START_MS, sites=2, bad_fraction=0.05, end_of_stream=True, partitions=4,
        seed=7,
    )
    messages = list(generate_messages(config))
    bad = [message for message in messages if message.kind == "bad"]
    assert len(bad) == 60
    expected = expected_output(messages, k=K)
    assert expected.points > 300_000 and len(expected.points_by_level) >= 2

    report = produce(messages, local_stack.kafka_bootstrap, run.raw_topic)
    assert report.errors == 0, report.error_samples

    job = JobProcess(run.job_args("--k-anonymity", str(K)), tmp_path / "job.log")
    try:
        url, db = local_stack.influx_v1_url, run.db
        wait_until(lambda: run.points() >= expected.points, 240, f"{expected.points} points in InfluxDB", job=job)
        wait_until(lambda: len(run.dead_letters()) >= len(bad), 60, "dead letters", job=job)
        time.sleep(5)  # more checkpoint intervals: nothing more may arrive
        assert run.points() == expected.points
        assert run.points_by_level() == expected.points_by_level
        assert run.points(where='"imputed" = true') == expected.imputed_points

        # Dead-letter topic: exactly the injected malformed messages, each with its specific reason.
        dlq = [json.loads(record.value) for record in run.dead_letters()]
        assert len(dlq) == len(bad)
        assert Counter(entry["reason"] for entry in dlq) == Counter(message.expected_reason for message in bad)
        assert {entry["topic"] for entry in dlq} == {run.raw_topic}
        assert len({(entry["partition"], entry["offset"]) for entry in dlq}) == len(bad)

        # No raw identifier and no secret in any tag value or in the job log; pids are the pseudonyms.
        tag_values: set[str] = set()
        for key in ("pid", "lead", "age", "sex", "zip", "level"):
            rows = query_v1(url, f'SHOW TAG VALUES FROM "ecg_anonymized" WITH KEY = "{key}"', db)
            tag_values.update(str(row["value"]) for row in rows)
        pids = {str(row["value"]) for row in query_v1(url, 'SHOW TAG VALUES WITH KEY = "pid"', db)}
        assert pids == expected.pids
        identifiers = {m.patient_id for m in messages if m.patient_id} | {m.patient_name for m in messages
                                                                          if m.patient_name}
        assert len(identifiers) == 40
        log_text = job.log_text()
        leaks = [i for i in identifiers | {TEST_SECRET} if i in log_text or any(i in v for v in tag_values)]
        assert leaks == []
    finally:
        job.stop()
