"""A stalled cardio branch does not hold back the anonymized output (issue 19), and it runs at a lower
scheduling priority (CARDIO_NICE, issue 24).

The branch runs as its own Flink job (flink_jobs/cardio_job.py, own consumer group and checkpoints),
started by the anonymization job. Here its whole process tree (Python client, JVM, workers) is
suspended with SIGSTOP before the input arrives: InfluxDB must still receive exactly the reference
points, and after SIGCONT the branch catches up and publishes its model updates.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from devstack.simulator import SimConfig, generate_messages, produce
from testkit.jobs import JobProcess, wait_until
from testkit.reference import expected_output
from tests.integration.support import IsolatedRun

START_MS = 1_763_812_800_000
K = 3


def _cardio_tree(job: JobProcess) -> list[int]:
    """The cardio job's client process and all its descendants (its mini cluster JVM)."""
    listing = subprocess.run(["ps", "-o", "pid=,ppid=,args=", "-g", str(job.process.pid)], capture_output=True,
                             text=True, check=True).stdout
    rows = [line.split(None, 2) for line in listing.splitlines() if line.strip()]
    tree = {int(pid) for pid, _, args in rows if "flink_jobs.cardio_job" in args}
    grew = True
    while grew:
        children = {int(pid) for pid, ppid, _ in rows if int(ppid) in tree} - tree
        tree |= children
        grew = bool(children)
    return sorted(tree)


def _has_jvm(pids: list[int]) -> bool:
    return any(Path(f"/proc/{pid}/comm").read_text().strip() == "java" for pid in pids
               if Path(f"/proc/{pid}/comm").exists())


def _niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])  # field 19: nice


def test_suspended_branch_does_not_hold_back_points(isolated_run: IsolatedRun, tmp_path: Path) -> None:
    run, stack = isolated_run, isolated_run.stack
    config = SimConfig(patients=12, duration_s=60, start_ms=START_MS, sites=2, end_of_stream=True, partitions=4,
                       seed=5, hr_fraction=0.0)
    messages = list(generate_messages(config))
    expected = expected_output(messages, k=K)
    assert expected.points > 100_000

    job = JobProcess(run.job_args("--k-anonymity", str(K), "--model-update-seconds", "30",
                                  "--model-grace-seconds", "5"), tmp_path / "job.log")
    stopped: list[int] = []
    try:
        cardio = wait_until(lambda: (lambda tree: tree if _has_jvm(tree) else None)(_cardio_tree(job)), 120,
                            "the cardio job's JVM", job=job)
        time.sleep(10)  # let its job start and read the (empty) topic
        stopped = _cardio_tree(job)
        assert set(cardio) <= set(stopped)
        # CARDIO_NICE (default 10): the branch's client, JVM and Python workers yield the cores to the output.
        assert {_niceness(pid) for pid in stopped} == {min(19, _niceness(job.process.pid) + 10)}
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        assert produce(messages, stack.kafka_bootstrap, run.raw_topic).errors == 0

        wait_until(lambda: run.points() >= expected.points, 240, f"{expected.points} points with the branch stopped",
                   job=job, poll=2.0)
        time.sleep(4)
        assert run.points() == expected.points
        assert run.points_by_level() == expected.points_by_level
        assert run.model_updates() == []  # the branch really was stopped

        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        stopped = []
        wait_until(lambda: any(u["kind"] == "global" for u in run.model_updates()), 240,
                   "the resumed branch's global model updates", job=job, poll=3.0)
        assert run.points() == expected.points
    finally:
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        job.stop()
