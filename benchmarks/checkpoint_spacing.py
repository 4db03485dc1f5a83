"""Checkpoint spacing during a catch-up (issue 19 item 4): how far apart do completed checkpoints come while the
job reads a backlog at full speed, with the defaults and with each lever, in one invocation?

    .venv/bin/python -m benchmarks.checkpoint_spacing [--patients 150] [--duration 170] [--sites 3]
        [--variant "NAME=<job flags>"]... [--no-defaults] [--checkpoint-interval 5]

`--patients` x `--duration` s of MIT-BIH frames (360 samples each, 2 % malformed; 150 x 170 s is ~9 M samples)
are produced once into one 4-partition topic. Then each variant (`defaults` first, then every `--variant` in the
order given) runs the job (embedded mini cluster, cardio branch on as by default, each run with fresh output
topics, database and checkpoint folder) from the start of the topic until every point of the reference model
(testkit.reference.expected_output) is in InfluxDB (or its count has not grown for 90 s: frames judged late
never come, and the points column then shows fewer), and is stopped. Meanwhile testkit.checkpoint_watch polls
both jobs' REST checkpoint history. Printed per variant and job (main, cardio), over the catch-up (from the job's
first point to its last; the cardio job: the same stretch):
completed checkpoints, max and p95 gap between completions, the longest time from a checkpoint's trigger to the
next completion (what a kill -9 at the worst moment replays), checkpoint duration max / p95, the slowest
barrier's start delay and alignment, the largest checkpoint, and the catch-up's seconds and points/s.
The target (issue 19 item 4): gaps of at most 3 x the checkpoint interval. Below each table, the 3 slowest
checkpoints of each job with every vertex's barrier start delay (trigger -> barrier at the vertex): where the
barrier waited.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devstack.influx_queries import count_points_v1, create_database_v1
from devstack.kafka_admin import create_topics
from devstack.processes import free_port
from devstack.simulator import SimConfig, generate_messages, produce
from devstack.stack import LocalStack
from testkit.chaos import START_MS
from testkit.checkpoint_watch import CheckpointWatch, CompletedCheckpoint, Spacing, now_ms, spacing
from testkit.jobs import JobProcess, branch_args, job_args, wait_until
from testkit.reference import expected_output

K = 5


@dataclass
class VariantResult:
    name: str
    flags: list[str]
    seconds: float
    points: int
    main: Spacing
    cardio: Spacing | None
    slowest_main: list[str]
    slowest_cardio: list[str]

    @property
    def points_per_s(self) -> float:
        return self.points / self.seconds if self.seconds else 0.0


def run_variant(stack: LocalStack, workdir: Path, topic: str, name: str, flags: list[str], total_points: int,
                interval_s: float, timeout_s: float) -> VariantResult:
    run_id = f"{name}-{uuid.uuid4().hex[:6]}"
    db = f"spacing_{run_id.replace('-', '_')}"
    create_database_v1(stack.influx_v1_url, db)
    dlq, anomalies, models = f"spacing-dlq-{run_id}", f"spacing-anomalies-{run_id}", f"spacing-models-{run_id}"
    create_topics(stack.kafka_bootstrap, {dlq: 1, anomalies: 1, models: 1})
    main_port, cardio_port = free_port(), free_port()
    args = job_args(stack, workdir / f"checkpoints-{run_id}", "--influx-db", db, "--kafka-input-topic", topic,
                    "--kafka-dlq-topic", dlq, "--k-anonymity", str(K), *branch_args(anomalies, models),
                    "--kafka-group-id", f"spacing-{run_id}", "--web-ui-port", str(main_port),
                    "--cardio-web-ui-port", str(cardio_port),
                    "--checkpoint-interval-seconds", f"{interval_s:g}", *flags)
    job = JobProcess(args, workdir / f"{run_id}.log")
    watches = (CheckpointWatch(main_port).start(), CheckpointWatch(cardio_port).start())
    try:
        wait_until(lambda: count_points_v1(stack.influx_v1_url, db, "ecg_anonymized") > 0, 300,
                   f"first point ({name})", job=job, poll=0.5)
        first_ms = now_ms()
        _wait_for_points(lambda: count_points_v1(stack.influx_v1_url, db, "ecg_anonymized"), total_points,
                         timeout_s, job)
        last_ms = now_ms()
    finally:
        for watch in watches:
            watch.stop()
        job.stop()
    points = count_points_v1(stack.influx_v1_url, db, "ecg_anonymized")
    cardio = watches[1].checkpoints()
    return VariantResult(name, flags, (last_ms - first_ms) / 1000, points,
                         spacing(watches[0].checkpoints(), first_ms, last_ms),
                         spacing(cardio, first_ms, last_ms) if cardio else None,
                         _slowest(watches[0].checkpoints()), _slowest(cardio))


def _slowest(checkpoints: list[CompletedCheckpoint], count: int = 3) -> list[str]:
    ordered = sorted(checkpoints, key=lambda c: -c.duration_ms)[:count]
    return [f"{c.checkpoint_id}, {c.duration_ms / 1000:.1f} ("
            + ", ".join(f"{name[:40]} {delay / 1000:.1f}" for name, delay in c.start_delays_ms.items()) + ")"
            for c in ordered]


def _wait_for_points(points_now: Callable[[], int], total: int, timeout_s: float, job: JobProcess,
                     stalled_s: float = 90.0) -> None:
    """Until every point is in, or the count has not grown for `stalled_s` (frames judged late on a loaded
    machine never come: the table then shows fewer points), or `timeout_s`."""
    deadline, last, last_change = time.monotonic() + timeout_s, -1, time.monotonic()
    while time.monotonic() < deadline and job.alive():
        count = points_now()
        if count >= total:
            return
        if count != last:
            last, last_change = count, time.monotonic()
        elif time.monotonic() - last_change > stalled_s:
            return
        time.sleep(1.0)


def table(results: list[VariantResult], interval_s: float) -> str:
    header = ["variant", "job", "points", "catch-up s", "points/s", *Spacing.HEADER, f"gaps <= 3 x {interval_s:g} s"]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for result in results:
        for job, figures in (("main", result.main), ("cardio", result.cardio)):
            if figures is None:
                continue
            verdict = "yes" if figures.max_gap_s <= 3 * interval_s else "no"
            cells = [result.name, job, f"{result.points:,}", f"{result.seconds:.0f}", f"{result.points_per_s:,.0f}",
                     *figures.cells(), verdict]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=150)
    parser.add_argument("--duration", type=int, default=170, help="seconds of signal per patient")
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--checkpoint-interval", type=float, default=5.0)
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS",
                        help='another run with these job flags, e.g. "bundle1000=--python-bundle-size 1000"')
    parser.add_argument("--no-defaults", action="store_true", help="skip the run with the job's defaults")
    parser.add_argument("--timeout", type=float, default=900, help="seconds a catch-up may take")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, checkpoints)")
    args = parser.parse_args(argv)
    variants: list[tuple[str, list[str]]] = [] if args.no_defaults else [("defaults", [])]
    for spec in args.variant:
        name, _, flags = spec.partition("=")
        variants.append((name, shlex.split(flags)))

    workdir = Path(tempfile.mkdtemp(prefix="ckpt-spacing-"))
    stack = LocalStack(workdir / "stack")
    results: list[VariantResult] = []
    try:
        stack.start(victoria_metrics=False)
        config = SimConfig(patients=args.patients, duration_s=args.duration, start_ms=START_MS, sites=args.sites,
                           bad_fraction=0.02, end_of_stream=True, partitions=4, seed=1)
        messages = list(generate_messages(config))
        total = expected_output(messages, k=K).points
        topic = f"spacing-raw-{uuid.uuid4().hex[:6]}"
        create_topics(stack.kafka_bootstrap, {topic: 4})
        produced = produce(messages, stack.kafka_bootstrap, topic)
        if produced.errors:
            raise RuntimeError(f"producing the backlog failed: {produced.error_samples}")
        print(f"backlog: {len(messages)} messages, {total} points expected "
              f"({args.patients} patients x {args.duration} s, {args.sites} sites); "
              f"checkpoint interval {args.checkpoint_interval:g} s", flush=True)
        for name, flags in variants:
            started = time.monotonic()
            result = run_variant(stack, workdir, topic, name, flags, total, args.checkpoint_interval, args.timeout)
            results.append(result)
            print(f"{name} ({' '.join(flags) or 'job defaults'}): {result.points} points, catch-up "
                  f"{result.seconds:.0f} s, run {time.monotonic() - started:.0f} s", flush=True)
            print(table([result], args.checkpoint_interval), flush=True)
            for job, watch_points in (("main", result.slowest_main), ("cardio", result.slowest_cardio)):
                print(f"  {job}: slowest checkpoints (id, duration s (barrier start delay s per vertex)): "
                      + "; ".join(watch_points), flush=True)
    finally:
        stack.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(table(results, args.checkpoint_interval))
    if args.keep:
        print(f"work folder (logs, checkpoints): {workdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
