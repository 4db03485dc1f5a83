"""Cluster mode: `flink run` on a standalone cluster, cancel keeps the checkpoint, `flink run -s` resumes.

The workers see only what the job ships (devstack.flink_cluster puts no repository on their path), so the
job's own list of packages is what is tested here: the first run without the cardio branch, the resumed
one with it. On a cluster the branch is a second `flink run` of flink_jobs/cardio_job.py (as
docker/submit_job.py does), with its own consumer group and checkpoints.
The slowest test of the default suite (a real JobManager + TaskManager start in ~10 s each way).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from connectors.checkpoints import latest_checkpoint
from connectors.config import PROJECT_ROOT
from devstack.flink_cluster import FlinkCluster
from devstack.simulator import SimConfig, generate_messages, produce
from testkit.jobs import TEST_SECRET, wait_until
from testkit.reference import expected_output
from tests.integration.support import IsolatedRun

JOB_FILE = PROJECT_ROOT / "flink_jobs" / "ecg_anonymization_job.py"
CARDIO_JOB_FILE = PROJECT_ROOT / "flink_jobs" / "cardio_job.py"
K = 5


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PSEUDONYM_SECRET", TEST_SECRET)
    flink = FlinkCluster(tmp_path / "flink", rest_port=0, parallelism=1)
    flink.start()
    try:
        yield flink
    finally:
        flink.stop()
        assert flink.pids() == [], "cluster processes left behind"


def test_flink_run_cancel_and_resume_with_s(isolated_run: IsolatedRun, cluster: FlinkCluster) -> None:
    run, local_stack = isolated_run, isolated_run.stack
    messages = list(generate_messages(SimConfig(patients=12, duration_s=40, start_ms=1_763_812_800_000, sites=2,
                                                end_of_stream=True, partitions=4, seed=3)))
    data, end_of_stream = messages[: len(messages) // 2], messages[len(messages) // 2 :]
    expected = expected_output(messages, k=K)
    checkpoints = run.checkpoint_dir
    args = run.job_args("--k-anonymity", str(K))

    produce(data, local_stack.kafka_bootstrap, run.raw_topic)
    job_id = cluster.submit(JOB_FILE, [*args, "--cardio-branch", "false"])
    wait_until(lambda: any(j["jid"] == job_id and j["state"] == "RUNNING" for j in cluster.jobs_overview()), 120,
               "job RUNNING in /jobs/overview")
    wait_until(lambda: run.points() > 0, 120, "first points")
    wait_until(lambda: latest_checkpoint(checkpoints), 60, "a completed checkpoint")
    time.sleep(3)  # one more checkpoint interval past the first points

    cluster.cancel(job_id)
    assert cluster.wait_for_job(job_id, ("CANCELED",), timeout=60) == "CANCELED"
    retained = latest_checkpoint(checkpoints)
    assert retained is not None and (retained / "_metadata").exists(), "cancel must keep the checkpoint"
    points_before = run.points()
    assert 0 < points_before < expected.points

    produce(end_of_stream, local_stack.kafka_bootstrap, run.raw_topic)
    resumed = cluster.submit(JOB_FILE, args, from_savepoint=retained)
    cardio = cluster.submit(CARDIO_JOB_FILE, args)
    try:
        wait_until(lambda: cluster.job_state(resumed) == "RUNNING", 120, "resumed job RUNNING")
        wait_until(lambda: run.points() >= expected.points, 180,
                   f"{expected.points} points after resume")
        wait_until(lambda: run.model_updates(), 60, "the cardio branch's model updates after resume")
        time.sleep(4)
        assert run.points() == expected.points
        # Restored, not restarted: the job reports the restored checkpoint in its checkpoint stats.
        stats = cluster._rest("GET", f"/jobs/{resumed}/checkpoints")
        restored = (stats.get("latest") or {}).get("restored") or {}
        assert restored.get("external_path", "").rstrip("/").endswith(retained.name), stats
    finally:
        cluster.cancel(cardio)
        cluster.cancel(resumed)
