"""Chaos resume from the command line: kill -9 the job at random moments mid-stream, resume each time from
the latest retained checkpoint, then compare everything with an uninterrupted run of the same data.

    .venv/bin/python -m benchmarks.chaos_resume --kills 5 [--seed 1] [--patients 12] [--keep]
    .venv/bin/python -m benchmarks.chaos_resume --backlog [--kills 4] [--patients 40]
    .venv/bin/python -m benchmarks.chaos_resume --delivery exactly-once --kill-timing after-checkpoint,open-transaction
    .venv/bin/python -m benchmarks.chaos_resume --backlog --recovery --checkpoint-interval 5 --patients 150
        --duration 170   (one command)

`--recovery` (issue 19 item 4): per kill the restored checkpoint's age at the kill (from its trigger and from its
completion) against 3 x the checkpoint interval, kill -> first new point and kill -> caught up (live: the resumed
job catches up before the next kill; backlog: kills at random shares of the output, each once the resumed job
writes new points). A restore older than 3 intervals fails the run.

The driver (live and backlog mode, what is compared and reported) is testkit/chaos.py, shared with
tests/integration/test_chaos_resume.py.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from devstack.stack import LocalStack
from testkit.chaos import DELIVERIES, KILL_TIMINGS, run_chaos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--patients", type=int, default=12)
    parser.add_argument("--mode", choices=("embedded", "cluster"), default="embedded",
                        help="embedded: kill -9 the job process; cluster: kill -9 the TaskManager")
    parser.add_argument("--backlog", action="store_true",
                        help="produce everything before the job starts; kill during the catch-up")
    parser.add_argument("--duration", type=int, default=60, help="seconds of signal per patient")
    parser.add_argument("--delivery", choices=DELIVERIES, default="at-least-once",
                        help="exactly-once: Kafka transactions, read_committed readers, zero replays required")
    parser.add_argument("--kill-timing", default="",
                        help=f"comma-separated, one per kill, each of {', '.join(KILL_TIMINGS)}")
    parser.add_argument("--recovery", action="store_true",
                        help="measure each kill's recovery: restored checkpoint's age, kill -> first new point, "
                             "kill -> caught up")
    parser.add_argument("--checkpoint-interval", type=float, default=None,
                        help="the job's checkpoint interval in s (default: the test harness's 2 s)")
    parser.add_argument("--sites", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, checkpoints)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    stack = LocalStack(workdir / "stack")
    try:
        stack.start(victoria_metrics=False)
        report = run_chaos(stack, workdir, kills=args.kills, seed=args.seed, patients=args.patients,
                           mode=args.mode, backlog=args.backlog, duration_s=args.duration,
                           delivery=args.delivery, kill_timing=[t for t in args.kill_timing.split(",") if t],
                           sites=args.sites, checkpoint_interval_s=args.checkpoint_interval,
                           measure_recovery=args.recovery)
    finally:
        stack.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report.summary())
    if args.keep:
        print(f"work folder (logs, checkpoints): {workdir}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
