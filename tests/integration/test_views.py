"""Anonymized views on a real standalone Flink cluster (issue 23): two views of one stream, each its own job
submitted through Flink's REST API (/jars/upload + /jars/:id/run of the Python driver), with its own k and
database; stop with a savepoint + resume publishes exactly the reference model's points; delete takes a final
savepoint, ends the job and drops the output. Real Kafka, influxd and Flink processes (tests/conftest.py).
The `flink run` fallback on a cluster without web submission is in test_web_ui.py (on its cluster).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.checkpoints import latest_checkpoint
from devstack.flink_cluster import FlinkCluster
from devstack.influx_queries import query_v1
from devstack.simulator import SimConfig, SimMessage, generate_messages, produce
from testkit.jobs import TEST_SECRET, wait_until
from testkit.reference import expected_output
from tests.integration.support import IsolatedRun, visible_classes_below_k
from views import Outputs, Profile, ViewError, ViewManager


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[FlinkCluster]:
    flink = FlinkCluster(tmp_path / "flink", rest_port=0, parallelism=1, slots=2)
    flink.start()
    try:
        yield flink
    finally:
        flink.stop()
        assert flink.pids() == [], "cluster processes left behind"


def stack_settings(run: IsolatedRun) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP": run.stack.kafka_bootstrap, "KAFKA_INPUT_TOPIC": run.raw_topic,
        "KAFKA_DLQ_TOPIC": run.dlq_topic, "INFLUX_TRANSPORT": "v1", "INFLUX_URL": run.stack.influx_v1_url,
        "CHECKPOINT_INTERVAL_SECONDS": "2", "RESTART_ATTEMPTS": "2",
    }


def stream(seconds: int = 30) -> list[SimMessage]:
    return list(generate_messages(SimConfig(patients=40, duration_s=seconds, start_ms=1_763_812_800_000, sites=2,
                                            end_of_stream=True, partitions=4, seed=23)))


def points_by_level(run: IsolatedRun, db: str) -> Counter[int]:
    rows = query_v1(run.stack.influx_v1_url, 'SELECT count("ecg_mv") FROM "ecg_anonymized" GROUP BY "level"', db)
    return Counter({int(row["level"]): int(row["count"]) for row in rows})


def running_names(cluster: FlinkCluster) -> set[str]:
    return {job["name"] for job in cluster.jobs_overview() if job["state"] == "RUNNING"}


def test_two_views_stop_resume_and_delete(isolated_run: IsolatedRun, cluster: FlinkCluster, tmp_path: Path) -> None:
    run = isolated_run
    messages = stream()
    first, rest = messages[: len(messages) // 2], messages[len(messages) // 2 :]
    expected = {5: expected_output(messages, k=5), 20: expected_output(messages, k=20)}
    assert expected[5].points_by_level != expected[20].points_by_level  # the two views publish different data
    manager = ViewManager(tmp_path / "views", cluster.rest_url, stack_settings(run), {"PSEUDONYM_SECRET": TEST_SECRET})
    suffix = uuid.uuid4().hex[:8]
    db = {"research": f"research_{suffix}", "public": f"public_{suffix}"}

    produce(first, run.stack.kafka_bootstrap, run.raw_topic)
    started = time.monotonic()
    research = manager.create("research", Profile(k=5), Outputs(influx_db=db["research"]))
    # public is throttled: 1,200 frames at 150/s (the throttle drops and reorders nothing: exact points)
    public = manager.create("public", Profile(k=20, max_records_per_second=150), Outputs(influx_db=db["public"]))
    print(f"two views submitted through {research.submit_mode} in {time.monotonic() - started:.1f} s")
    assert research.submit_mode == public.submit_mode == "rest"
    try:
        # Refused, and nothing started: a taken name, a taken output, an existing database.
        with pytest.raises(ViewError, match="already exists"):
            manager.create("research", Profile(k=7), Outputs(influx_db=f"other_{suffix}"))
        with pytest.raises(ViewError, match="already the output of view 'research'"):
            manager.create("copy", Profile(k=7), Outputs(influx_db=db["research"]))
        with pytest.raises(ViewError, match="already exists at"):
            manager.create("copy", Profile(k=7), Outputs(influx_db=run.db))
        assert len(cluster.jobs_overview()) == 2 and set(manager.views()) == {"research", "public"}

        wait_until(lambda: running_names(cluster) == {"view-research", "view-public"}, 120,
                   "both views RUNNING in /jobs/overview")
        wait_until(lambda: manager.status("research").points, 120, "first points of research")
        wait_until(lambda: manager.status("research").last_checkpoint, 60, "a completed checkpoint of research")

        savepoint = manager.stop("research")
        assert (Path(savepoint) / "_metadata").exists()
        assert Path(savepoint).parent == manager.savepoint_dir("research")
        assert cluster.job_state(research.job_id) == "FINISHED"
        stopped = manager.status("research")
        assert stopped.state == "STOPPED" and stopped.last_savepoint == savepoint
        points_at_stop = stopped.points or 0
        assert 0 < points_at_stop < expected[5].points
        with pytest.raises(ViewError, match="not RUNNING"):
            manager.stop("research")

        produce(rest, run.stack.kafka_bootstrap, run.raw_topic)
        time.sleep(3)
        assert manager.status("research").points == points_at_stop  # nothing published while stopped
        resumed = manager.resume("research", wait_running=120)
        assert resumed.restored_from == savepoint and resumed.job_id != research.job_id
        with pytest.raises(ViewError, match="stop it first"):
            manager.resume("research")

        for name, k in (("research", 5), ("public", 20)):
            wait_until(lambda name=name, k=k: (manager.status(name).points or 0) >= expected[k].points, 180,
                       f"{expected[k].points} points of {name}")
        time.sleep(4)  # more checkpoint intervals: nothing more may come
        statuses = {status.name: status for status in manager.list()}
        print("list:", *statuses.values(), sep="\n  ")
        assert statuses["research"].points == expected[5].points, "no point lost or written twice across stop/resume"
        assert statuses["public"].points == expected[20].points
        for name, k in (("research", 5), ("public", 20)):
            assert points_by_level(run, db[name]) == expected[k].points_by_level, name
        assert {s.state for s in statuses.values()} == {"RUNNING"}
        assert all(s.last_checkpoint for s in statuses.values())
        assert {s.unread_input for s in statuses.values()} <= {0, None}  # caught up (None: no probe yet)
        # In records: the throttled view may still have its trailing markers unread (461 records in one CI
        # rehearsal, with all points in); exact zero is checked on a quiet stream in test_liveness_guard.py.
        assert all(s.input_lag_records is None or s.input_lag_records >= 0 for s in statuses.values())
        # Best effort (REST metrics; with two views they were at times missing): when reported, data of 2025 is
        # days behind the wall clock.
        assert all(s.event_time_lag_ms is None or s.event_time_lag_ms > 86_400_000 for s in statuses.values())
        restored = (cluster.rest_get(f"/jobs/{resumed.job_id}/checkpoints").get("latest") or {}).get("restored") or {}
        assert restored.get("external_path", "").rstrip("/").endswith(Path(savepoint).name), restored
        for name, k in (("research", 5), ("public", 20)):
            assert visible_classes_below_k(run.stack.influx_v1_url, db[name], k) == [], name
        # The stricter view holds no class of fewer than 20 (research's would fail that check).
        assert visible_classes_below_k(run.stack.influx_v1_url, db["research"], 20) != []

        final = manager.delete("public", drop_output=True)
        assert (Path(final) / "_metadata").exists(), "delete takes a final savepoint (kept)"
        assert cluster.job_state(public.job_id) == "FINISHED"
        assert running_names(cluster) == {"view-research"}
        assert db["public"] not in manager.influx_databases() and db["research"] in manager.influx_databases()
        assert set(manager.views()) == {"research"}
        assert manager.status("research").state == "RUNNING"  # the other view never noticed
    finally:
        for job in cluster.jobs_overview():
            if job["state"] == "RUNNING":
                cluster.cancel(job["jid"])


@pytest.mark.slow
def test_a_view_resumes_after_the_whole_cluster_was_killed(isolated_run: IsolatedRun, cluster: FlinkCluster,
                                                          tmp_path: Path) -> None:
    """kill -9 of JobManager, TaskManager and Python workers (no savepoint, no HA: the new cluster knows no job);
    resume restarts the view from its latest retained checkpoint and it ends exact."""
    run = isolated_run
    messages = stream()
    first, rest = messages[: len(messages) // 2], messages[len(messages) // 2 :]
    expected = expected_output(messages, k=5)
    manager = ViewManager(tmp_path / "views", cluster.rest_url, stack_settings(run), {"PSEUDONYM_SECRET": TEST_SECRET})
    db = f"research_{uuid.uuid4().hex[:8]}"
    produce(first, run.stack.kafka_bootstrap, run.raw_topic)
    research = manager.create("research", Profile(k=5), Outputs(influx_db=db), wait_running=120)
    wait_until(lambda: manager.status("research").points, 120, "first points")
    wait_until(lambda: manager.status("research").last_checkpoint, 60, "a completed checkpoint")
    time.sleep(3)

    for pid in cluster.process_tree():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not cluster.pids(), 30, "cluster processes gone", poll=0.2)
    points_at_kill = manager.status("research").points or 0
    assert 0 < points_at_kill < expected.points
    cluster.start()
    assert manager.status("research").state == "UNKNOWN"  # the new cluster does not know the job

    produce(rest, run.stack.kafka_bootstrap, run.raw_topic)
    resumed = manager.resume("research", wait_running=120)
    try:
        checkpoint = latest_checkpoint(manager.checkpoint_dir("research"))
        assert checkpoint is not None and resumed.restored_from == str(checkpoint)
        assert research.job_id in str(checkpoint) and not resumed.last_savepoint
        wait_until(lambda: (manager.status("research").points or 0) >= expected.points, 180,
                   f"{expected.points} points after the resume")
        time.sleep(4)
        assert points_by_level(run, db) == expected.points_by_level
    finally:
        cluster.cancel(resumed.job_id)


@pytest.mark.slow
def test_a_view_far_behind_its_input_stops_with_a_savepoint_and_resumes_exact(
    isolated_run: IsolatedRun, cluster: FlinkCluster, tmp_path: Path
) -> None:
    """`stop` of a view in the middle of a catch-up: a savepoint's barrier is aligned, so it waits behind
    everything queued before it (once 120 s and "Checkpoint expired before completing", README *Anonymized
    views*); with the windows closed one per step (WindowCloser) and 1000-element bundles it goes through, and the
    resumed view ends exact."""
    run = isolated_run
    messages = stream(600)  # 24,000 frames: minutes of catch-up
    expected = expected_output(messages, k=5)
    manager = ViewManager(tmp_path / "views", cluster.rest_url, stack_settings(run), {"PSEUDONYM_SECRET": TEST_SECRET})
    db = f"behind_{uuid.uuid4().hex[:8]}"
    produce(messages, run.stack.kafka_bootstrap, run.raw_topic)
    manager.create("behind", Profile(k=5), Outputs(influx_db=db), wait_running=120)
    try:
        wait_until(lambda: manager.status("behind").points, 180, "first points")
        wait_until(lambda: manager.status("behind").last_checkpoint, 60, "a completed checkpoint")
        time.sleep(10)
        started = time.monotonic()
        savepoint = manager.stop("behind")
        took = time.monotonic() - started
        points_at_stop = manager.status("behind").points or 0
        print(f"stop with a savepoint at {points_at_stop} of {expected.points} points: {took:.1f} s")
        assert (Path(savepoint) / "_metadata").exists()
        assert 0 < points_at_stop < expected.points // 2, "stopped while far behind its input"
        manager.resume("behind", wait_running=120)
        wait_until(lambda: (manager.status("behind").points or 0) >= expected.points, 600,
                   f"{expected.points} points after the resume")
        time.sleep(4)
        assert manager.status("behind").points == expected.points
        assert points_by_level(run, db) == expected.points_by_level
    finally:
        for job in cluster.jobs_overview():
            if job["state"] == "RUNNING":
                cluster.cancel(job["jid"])
