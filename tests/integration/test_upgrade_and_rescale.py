"""Tomorrow's job graph restores today's checkpoint: stable uids and a fixed max parallelism.

The job runs without the anomaly / federated-learning branch (CARDIO_BRANCH=false) at parallelism 1, is
killed after a checkpoint, and resumes from that checkpoint WITH the branch and at parallelism 2 (the
upgrade and the rescale in one restore). InfluxDB must hold exactly the reference model's points (the
restored keyed state of the anonymization windows, the source offsets and the event-time progress are
found by their uids and redistributed by key group), and the new branch starts and publishes.
"""

from __future__ import annotations

import time
from pathlib import Path

from connectors.checkpoints import latest_checkpoint
from devstack.simulator import SimConfig, end_of_stream_messages, generate_messages, produce
from testkit.jobs import JobProcess, wait_until
from testkit.kafka_topics import read_topic
from testkit.reference import expected_output
from tests.integration.support import IsolatedRun

START_MS = 1_763_812_800_000
K = 5


def test_checkpoint_without_the_branch_restores_with_it_at_parallelism_two(isolated_run: IsolatedRun,
                                                                           fresh_topics, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run = isolated_run
    anomalies, models = fresh_topics("ecg-anomalies", "ecg-model-updates")
    data = list(generate_messages(SimConfig(patients=16, duration_s=60, start_ms=START_MS, sites=4, seed=61)))
    first, second = data[: len(data) // 3], data[len(data) // 3 :]
    messages = data + end_of_stream_messages(4)
    expected = expected_output(messages, k=K)
    args = run.job_args("--k-anonymity", str(K), "--kafka-anomaly-topic", anomalies, "--kafka-model-topic", models)

    assert produce(first, run.stack.kafka_bootstrap, run.raw_topic).errors == 0
    before = JobProcess([*args, "--cardio-branch", "false", "--parallelism", "1"], tmp_path / "job-1.log")
    after: JobProcess | None = None
    try:
        wait_until(lambda: run.points() > 0, 180, "first points", job=before)
        seen = latest_checkpoint(run.checkpoint_dir)
        wait_until(lambda: latest_checkpoint(run.checkpoint_dir) != seen, 60, "a checkpoint with data", job=before)
        before.kill_hard()
        assert 0 < run.points() < expected.points
        assert read_topic(run.stack.kafka_bootstrap, models, timeout=2) == [], "the branch was off"

        after = JobProcess([*args, "--cardio-branch", "true", "--parallelism", "2", "--from-checkpoint", "latest"],
                           tmp_path / "job-2.log")
        wait_until(lambda: "resuming from checkpoint" in after.log_text(), 60, "resume", job=after)
        assert produce(second + end_of_stream_messages(4), run.stack.kafka_bootstrap, run.raw_topic).errors == 0
        wait_until(lambda: run.points() >= expected.points, 240, f"{expected.points} points", job=after)
        time.sleep(4)
        assert run.points() == expected.points
        assert run.points_by_level() == expected.points_by_level
        wait_until(lambda: read_topic(run.stack.kafka_bootstrap, models, timeout=2), 120,
                   "model updates from the new branch", job=after)
        restored = [line for line in after.flink_log_text().splitlines() if "Restoring job" in line]
        assert restored, "the job must have been restored from the checkpoint"
    finally:
        before.stop()
        if after is not None:
            after.stop()
