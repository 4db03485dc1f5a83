"""The liveness guard (connectors/java/LivenessGuard.java, LIVENESS_TIMEOUT_SECONDS), issue 19.

1. An injected stall (the parse step stops once, ECG_TEST_STALL_* hook of operators/parse.py) while the
   topic still has unread records: the guard logs one ERROR naming the suspected operators, fails the
   task, the job restarts from its last checkpoint and the points end exact.
2. A quiet stream (everything read, nothing new) for many timeouts: the guard probes, finds no unread
   record and never fires; its gauges show the silence.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from devstack.processes import free_port
from devstack.simulator import SimConfig, generate_messages, produce
from testkit.flink_rest import job_metrics, job_restart_lines
from testkit.jobs import JobProcess, wait_until
from testkit.reference import expected_output
from tests.integration.support import IsolatedRun

START_MS = 1_763_812_800_000
K = 3
GUARD_ERROR = re.compile(r"ERROR\s+io\.ecgflinkanon\.connectors\.LivenessGuard\b.*LIVENESS:")


def test_guard_fails_a_stalled_job_which_then_recovers(isolated_run: IsolatedRun, tmp_path: Path) -> None:
    run, stack = isolated_run, isolated_run.stack
    config = SimConfig(patients=20, duration_s=60, start_ms=START_MS, sites=2, end_of_stream=True, partitions=4,
                       seed=3)
    messages = list(generate_messages(config))
    expected = expected_output(messages, k=K)
    assert produce(messages, stack.kafka_bootstrap, run.raw_topic).errors == 0

    marker = tmp_path / "stalled-once"
    env = dict(os.environ, ECG_TEST_STALL_AFTER_RECORDS="150", ECG_TEST_STALL_MARKER=str(marker),
               ECG_TEST_STALL_SECONDS="45")
    job = JobProcess(run.job_args("--k-anonymity", str(K), "--cardio-branch", "false",
                                  "--liveness-timeout-seconds", "8", "--python-bundle-size", "50"),
                     tmp_path / "job.log", env=env)
    try:
        wait_until(lambda: run.points() >= expected.points, 300, f"{expected.points} points after the stall",
                   job=job, poll=2.0)
        time.sleep(4)
        assert run.points() == expected.points
        assert run.points_by_level() == expected.points_by_level
        flink_log = job.flink_log_text()
    finally:
        job.stop()
    assert marker.exists(), "the injected stall did not happen"
    errors = [line for line in flink_log.splitlines() if GUARD_ERROR.search(line)]
    assert len(errors) == 1, errors
    assert "unread records" in errors[0] and "parse" in errors[0], errors[0]
    assert job_restart_lines(flink_log), "the guard's failure did not restart the job"
    print("\n" + errors[0])


def test_guard_never_fires_on_a_quiet_stream(isolated_run: IsolatedRun, tmp_path: Path) -> None:
    run, stack = isolated_run, isolated_run.stack
    config = SimConfig(patients=6, duration_s=20, start_ms=START_MS, sites=2, end_of_stream=False, partitions=4,
                       seed=4)
    messages = list(generate_messages(config))
    assert produce(messages, stack.kafka_bootstrap, run.raw_topic).errors == 0
    port = free_port()
    job = JobProcess(run.job_args("--k-anonymity", str(K), "--cardio-branch", "false",
                                  "--liveness-timeout-seconds", "2", "--web-ui-port", str(port)),
                     tmp_path / "job.log")
    try:
        wait_until(lambda: run.points() > 0, 180, "the first points", job=job, poll=2.0)
        time.sleep(12)  # six timeouts of a quiet stream (every record read, nothing new)
        assert job.alive()
        # Until REST shows a probe's result (-1 before the first; REST refreshes metrics every 10 s).
        metrics = wait_until(lambda: (lambda m: m if m.get("liveness_unread_records", -1) >= 0 else None)(
            job_metrics(port)), 30, "the guard's gauges after a probe")
        flink_log = job.flink_log_text()
    finally:
        job.stop()
    assert [line for line in flink_log.splitlines() if GUARD_ERROR.search(line)] == []
    assert job_restart_lines(flink_log) == []
    assert metrics["liveness_last_progress_age_ms"] > 2_000, metrics  # silent for longer than the timeout
    assert metrics["liveness_unread_records"] == 0, metrics  # probed, and found nothing unread
    assert metrics["input_lag_records"] == 0, metrics  # the broker's end offsets, every record read
    assert metrics["event_time_lag_ms"] > 0, metrics
