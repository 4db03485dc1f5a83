"""Crash and resume: kill -9 the job mid-stream, resume from the latest retained checkpoint.

InfluxDB must afterwards hold exactly the reference model's points (0 lost, 0 duplicated) with the
same level distribution. The windows' frames and each site's state between windows (running means for
imputation, the privacy core's memory of published labels) live in keyed state: a resume that lost it
would publish other labels or values, and the per-key window counter would restart.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from connectors.checkpoints import completed_checkpoints
from devstack.simulator import ProduceReport, SimConfig, generate_messages, produce
from testkit.jobs import JobProcess, wait_until
from testkit.reference import expected_output
from tests.integration.support import IsolatedRun

START_MS = 1_763_812_800_000
K = 5


def newest_checkpoint_number(root: Path) -> int:
    """N of the newest completed chk-N (Flink retains only the last few, so their count stops growing)."""
    completed = completed_checkpoints(root)
    return int(completed[-1].name.removeprefix("chk-")) if completed else 0


def test_kill_minus_nine_and_resume_from_latest_checkpoint(isolated_run: IsolatedRun, tmp_path: Path) -> None:
    run, local_stack = isolated_run, isolated_run.stack
    messages = list(
        generate_messages(
            SimConfig(patients=20, duration_s=60, start_ms=START_MS, sites=2, bad_fraction=0.02,
                      end_of_stream=True, partitions=4, seed=11)
        )
    )
    bad = [m for m in messages if m.kind == "bad"]
    expected = expected_output(messages, k=K)
    assert len(expected.points_by_level) >= 2, "scenario must publish at several levels"

    checkpoints = run.checkpoint_dir
    args = run.job_args("--k-anonymity", str(K))
    first = JobProcess(args, tmp_path / "job-1.log")
    report = ProduceReport()
    producer = threading.Thread(
        target=lambda: report.__dict__.update(produce(messages, local_stack.kafka_bootstrap, run.raw_topic,
                                                      rate=40).__dict__),
        daemon=True,
    )
    second: JobProcess | None = None
    try:
        wait_until(lambda: completed_checkpoints(checkpoints), 120, "a first completed checkpoint", job=first)
        producer.start()
        wait_until(lambda: run.points() > 0, 120, "first points", job=first)
        # Crash mid-stream once a checkpoint holds a fired window. The next checkpoint to complete may
        # have been triggered before the first window fired (its barrier then still finds that window open,
        # and the resumed job redoes every window); the one after it was triggered after the first points.
        seen = newest_checkpoint_number(checkpoints)
        wait_until(lambda: newest_checkpoint_number(checkpoints) >= seen + 2, 60,
                   "a checkpoint triggered after the first points", job=first)
        first.kill_hard()
        points_at_crash = run.points()
        assert producer.is_alive(), "the crash must happen mid-stream; slow the producer down"
        assert 0 < points_at_crash < expected.points

        time.sleep(2)
        second = JobProcess([*args, "--from-checkpoint", "latest"], tmp_path / "job-2.log")
        wait_until(lambda: "resuming from checkpoint" in second.log_text(), 60, "resume log line", job=second)
        producer.join(timeout=120)
        assert report.errors == 0
        wait_until(lambda: run.points() >= expected.points, 240, f"{expected.points} points after resume", job=second)
        time.sleep(5)  # more checkpoint intervals: nothing more may arrive
        assert run.points() == expected.points
        assert run.points_by_level() == expected.points_by_level

        # The resumed job restored offsets and keyed state: it re-did only windows after the
        # checkpoint, and each key's window counter (kept in state) continued instead of restarting at 1.
        first_windows, resumed_windows = first.window_log(), second.window_log()
        assert first_windows and resumed_windows
        assert len(resumed_windows) < expected.windows
        for group in {g for g, _, _ in resumed_windows}:
            first_number = min(n for g, _, n in resumed_windows if g == group)
            assert first_number > 1, f"{group}: window counter restarted; keyed state was not restored"

        # Dead letters are at-least-once: every bad message is there; any duplicate is an exact replay.
        dlq = [record.value for record in run.dead_letters()]
        by_position: dict[tuple[int, int], set[bytes]] = {}
        for value in dlq:
            entry = json.loads(value)
            by_position.setdefault((entry["partition"], entry["offset"]), set()).add(value)
        assert len(by_position) == len(bad)
        assert all(len(values) == 1 for values in by_position.values())
    finally:
        first.stop()
        if second is not None:
            second.stop()
