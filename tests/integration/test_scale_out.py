"""Scale out on Flink itself: a standalone cluster with 2 TaskManagers (1 slot each); a checkpoint taken at
parallelism 1 is restored at parallelism 2, and the restored job runs on both TaskManagers.

- The anonymization windows are keyed by site: at parallelism 2 the sites are spread over both
  TaskManagers, which the REST API shows as records read by each subtask of the k-anonymity operator.
- InfluxDB holds exactly the points of the reference model, as at parallelism 1 (the reference model
  anonymizes per site and window, independently of where a site is processed).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from connectors.checkpoints import latest_checkpoint
from connectors.config import PROJECT_ROOT
from devstack.flink_cluster import FlinkCluster
from devstack.simulator import SimConfig, generate_messages, produce
from testkit.jobs import TEST_SECRET, wait_until
from testkit.reference import expected_output
from tests.integration.support import IsolatedRun

JOB_FILE = PROJECT_ROOT / "flink_jobs" / "ecg_anonymization_job.py"
K = 5
START_MS = 1_763_812_800_000


@pytest.fixture(scope="module")
def two_taskmanagers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlinkCluster]:
    cluster = FlinkCluster(tmp_path_factory.mktemp("flink2"), rest_port=0, slots=1, taskmanagers=2, parallelism=1,
                           taskmanager_memory="3072m")
    cluster.start()
    try:
        assert cluster.overview()["taskmanagers"] == 2
        yield cluster
    finally:
        cluster.stop()
        assert cluster.pids() == [], "cluster processes left behind"


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PSEUDONYM_SECRET", TEST_SECRET)  # read by `flink run` -> the job


def messages_for_test(seed: int) -> list[Any]:
    # 4 sites: ward-1/ward-3 and ward-2/ward-4 fall into different halves of the 128 key groups.
    return list(generate_messages(SimConfig(patients=24, duration_s=30, start_ms=START_MS, sites=4,
                                            end_of_stream=True, partitions=4, seed=seed)))


def anonymization_vertex(cluster: FlinkCluster, job_id: str) -> dict[str, Any]:
    vertices = cluster.rest_get(f"/jobs/{job_id}")["vertices"]
    (vertex,) = [v for v in vertices if "anonymity" in v["name"].lower()]
    return dict(vertex)


def records_per_taskmanager(cluster: FlinkCluster, job_id: str) -> dict[str, int]:
    """taskmanager id -> records read by the k-anonymity subtasks there (REST: vertex subtasks)."""
    vertex = anonymization_vertex(cluster, job_id)
    subtasks = cluster.rest_get(f"/jobs/{job_id}/vertices/{vertex['id']}")["subtasks"]
    per_taskmanager: dict[str, int] = {}
    for subtask in subtasks:
        where = str(subtask.get("taskmanager-id") or subtask.get("endpoint") or subtask.get("host"))
        per_taskmanager[where] = per_taskmanager.get(where, 0) + int(subtask["metrics"]["read-records"])
    return per_taskmanager


def test_checkpoint_of_parallelism_one_restores_at_parallelism_two_over_both_taskmanagers(
    isolated_run: IsolatedRun, two_taskmanagers: FlinkCluster, secret: None
) -> None:
    """One job run at parallelism 1, cancelled after a checkpoint; its retained checkpoint restored at parallelism 2
    reads the rest on both TaskManagers and ends exact. (A parallelism-2 run from scratch was a test of its own
    until issue 21: the restored run checks the same spread and exact points with one job start less.)"""
    run, cluster = isolated_run, two_taskmanagers
    messages = messages_for_test(seed=12)
    expected = expected_output(messages, k=K)
    data = [m for m in messages if m.kind != "control"]
    first, rest = data[: len(data) // 2], data[len(data) // 2 :] + [m for m in messages if m.kind == "control"]
    args = run.job_args("--k-anonymity", str(K))

    assert produce(first, run.stack.kafka_bootstrap, run.raw_topic).errors == 0
    job_id = cluster.submit(JOB_FILE, [*args, "--parallelism", "1"])
    wait_until(lambda: cluster.job_state(job_id) == "RUNNING", 120, "parallelism-1 job RUNNING")
    assert anonymization_vertex(cluster, job_id)["parallelism"] == 1
    wait_until(lambda: run.points() > 0, 180, "first points")
    wait_until(lambda: latest_checkpoint(run.checkpoint_dir), 60, "a completed checkpoint")
    time.sleep(3)  # one more checkpoint past the first points
    cluster.cancel(job_id)
    assert cluster.wait_for_job(job_id, ("CANCELED",), timeout=60) == "CANCELED"
    retained = latest_checkpoint(run.checkpoint_dir)
    assert retained is not None and retained.parent.name == job_id
    assert 0 < run.points() < expected.points

    assert produce(rest, run.stack.kafka_bootstrap, run.raw_topic).errors == 0
    resumed = cluster.submit(JOB_FILE, [*args, "--parallelism", "2"], from_savepoint=retained)
    try:
        wait_until(lambda: cluster.job_state(resumed) == "RUNNING", 120, "parallelism-2 job RUNNING")
        assert anonymization_vertex(cluster, resumed)["parallelism"] == 2
        wait_until(lambda: run.points() >= expected.points, 240, f"{expected.points} points after the restore")
        time.sleep(4)
        assert run.points() == expected.points
        assert run.points_by_level() == expected.points_by_level
        restored = (cluster.rest_get(f"/jobs/{resumed}/checkpoints").get("latest") or {}).get("restored") or {}
        assert str(restored.get("external_path", "")).rstrip("/").endswith(f"{job_id}/{retained.name}"), restored
        # Both TaskManagers anonymized sites (the REST metrics lag a few seconds behind).
        spread = wait_until(lambda: (lambda r: r if len(r) == 2 and min(r.values()) > 0 else None)(
            records_per_taskmanager(cluster, resumed)), 60, "records on both TaskManagers")
        print(f"k-anonymity records per TaskManager after the restore: {spread}")
    finally:
        cluster.cancel(resumed)
        cluster.wait_for_job(resumed, ("CANCELED", "FAILED", "FINISHED"), timeout=60)
