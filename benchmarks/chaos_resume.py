"""Chaos resume: kill -9 the job at random moments mid-stream, resume each time from the latest
retained checkpoint, then compare everything with an uninterrupted run of the same data.

    .venv/bin/python -m benchmarks.chaos_resume --kills 5 [--seed 1] [--patients 12] [--keep]

Figures printed: kills, resumes, points (chaos / uninterrupted / reference model), lost and duplicated
points, per-series-and-window fingerprints that differ, dead letters and their exact replays.
The same function backs tests/integration/test_chaos_resume.py (5 kills by default, 20 when slow).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.checkpoints import latest_checkpoint
from connectors.config import PROJECT_ROOT
from connectors.flink_cluster import FlinkCluster
from connectors.local_stack import LocalStack, count_points_v1, create_database_v1, create_topics, query_v1
from connectors.simulator import ProduceReport, SimConfig, generate_messages, produce
from tests.integration.support import TEST_SECRET, JobProcess, expected_output, job_args, read_topic, wait_until

START_MS = 1_763_812_800_000
SECONDS_PER_KILL_CYCLE = 16  # JVM start + restore + one checkpoint + the random delay, measured here


@dataclass
class ChaosReport:
    kind: str = ""
    kills: int = 0
    resumes: int = 0
    resume_seconds: list[float] = field(default_factory=list)
    points_chaos: int = 0
    points_uninterrupted: int = 0
    points_model: int = 0
    fingerprints_compared: int = 0
    fingerprints_differing: int = 0
    dead_letters_distinct: int = 0
    dead_letters_replayed: int = 0
    dead_letters_uninterrupted: int = 0
    dead_letters_not_exact_replays: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return max(self.points_uninterrupted - self.points_chaos, 0)

    @property
    def duplicated(self) -> int:
        return max(self.points_chaos - self.points_uninterrupted, 0)

    @property
    def ok(self) -> bool:
        return (
            self.points_chaos == self.points_uninterrupted == self.points_model
            and self.fingerprints_differing == 0
            and self.fingerprints_compared > 0
            and self.dead_letters_distinct == self.dead_letters_uninterrupted
            and self.dead_letters_not_exact_replays == 0
            and self.kills >= 1
        )

    def summary(self) -> str:
        resume = (
            f"{sum(self.resume_seconds) / len(self.resume_seconds):.1f} s mean, {max(self.resume_seconds):.1f} s max"
            if self.resume_seconds else "-"
        )
        return "\n".join(
            [
                f"kills                                   {self.kills} ({self.kind})",
                f"resumes from latest checkpoint          {self.resumes} (restart to next checkpoint: {resume})",
                f"points chaos / uninterrupted / model    {self.points_chaos} / {self.points_uninterrupted} / "
                f"{self.points_model}",
                f"points lost / duplicated                {self.lost} / {self.duplicated}",
                f"series x 5 s fingerprints differing     {self.fingerprints_differing} of "
                f"{self.fingerprints_compared}",
                f"dead letters distinct / uninterrupted   {self.dead_letters_distinct} / "
                f"{self.dead_letters_uninterrupted}",
                f"dead letters replayed (exact / not)     {self.dead_letters_replayed} / "
                f"{self.dead_letters_not_exact_replays}",
                "anomaly / model-update ids              n/a: those branches are not in the job yet",
                f"wall time                               {self.seconds:.0f} s",
                f"result                                  {'PASS' if self.ok else 'FAIL'}",
                *self.notes,
            ]
        )


def fingerprints(url: str, db: str) -> dict[tuple[Any, ...], tuple[int, float]]:
    """Per series (all tags) and 5 s bucket: (point count, rounded sum of ecg_mv)."""
    rows = query_v1(url, 'SELECT count("ecg_mv"), sum("ecg_mv") FROM "ecg_anonymized" '
                         "WHERE time > 0 GROUP BY *, time(5s) fill(none)", db)
    return {
        tuple(sorted((k, v) for k, v in row.items() if k not in ("count", "sum"))): (
            int(row["count"]), round(float(row["sum"]), 6))
        for row in rows
    }


class _EmbeddedTarget:
    """The job in an embedded mini cluster: kill -9 its process group, resume with --from-checkpoint latest."""

    kind = "kill -9 of the job's JVM + Python workers"

    def __init__(self, args: list[str], workdir: Path) -> None:
        self._args, self._workdir = args, workdir
        self.job: JobProcess | None = JobProcess(args, workdir / "chaos-0.log")

    def kill(self) -> None:
        assert self.job is not None
        self.job.kill_hard()

    def resume(self, number: int) -> None:
        self.job = JobProcess([*self._args, "--from-checkpoint", "latest"], self._workdir / f"chaos-{number}.log")

    def notes(self) -> list[str]:
        return []

    def stop(self) -> None:
        if self.job is not None:
            self.job.stop()


class _ClusterTarget:
    """The job on a standalone cluster: kill -9 the TaskManager, start a new one; Flink's restart
    strategy restores the job from the latest checkpoint by itself."""

    kind = "kill -9 of the TaskManager"
    job: JobProcess | None = None

    def __init__(self, args: list[str], workdir: Path) -> None:
        # Fast loss detection: a killed TaskManager is noticed in seconds, not after the 50 s default.
        self.cluster = FlinkCluster(workdir / "flink", rest_port=0, parallelism=1,
                                    extra_config={"heartbeat.interval": 1000, "heartbeat.timeout": 5000})
        self.cluster.start()
        previous = os.environ.get("PSEUDONYM_SECRET")
        os.environ["PSEUDONYM_SECRET"] = TEST_SECRET
        try:
            # Every kill costs one restart attempt; the job must outlive all of them.
            self.job_id = self.cluster.submit(PROJECT_ROOT / "flink_jobs" / "ecg_anonymization_job.py",
                                              [*args, "--restart-attempts", "1000"])
        finally:
            if previous is None:
                os.environ.pop("PSEUDONYM_SECRET")
            else:
                os.environ["PSEUDONYM_SECRET"] = previous

    def kill(self) -> None:
        self.cluster.kill_taskmanager()

    def resume(self, number: int) -> None:
        self.cluster.start_taskmanager()
        wait_until(lambda: self.cluster.job_state(self.job_id) == "RUNNING", 120, "job RUNNING again")

    def notes(self) -> list[str]:
        metrics = self.cluster._rest("GET", f"/jobs/{self.job_id}/metrics?get=numRestarts")
        restarts = {m["id"]: m["value"] for m in metrics}.get("numRestarts", "?")
        return [f"job restarts counted by Flink (numRestarts)  {restarts}"]

    def stop(self) -> None:
        try:
            if self.cluster.job_state(self.job_id) == "RUNNING":
                self.cluster.cancel(self.job_id)
                self.cluster.wait_for_job(self.job_id, ("CANCELED",), timeout=60)
        finally:
            self.cluster.stop()


def _wait_for_new_checkpoint(checkpoints: Path, job: JobProcess | None, what: str) -> None:
    seen = latest_checkpoint(checkpoints)
    wait_until(lambda: latest_checkpoint(checkpoints) != seen, 120, what, job=job)


def _dead_letters(bootstrap: str, topic: str) -> Counter[bytes]:
    return Counter(record.value for record in read_topic(bootstrap, topic))


def run_chaos(stack: LocalStack, workdir: Path, *, kills: int = 5, seed: int = 1, patients: int = 12,
              sites: int = 2, k: int = 5, mode: str = "embedded", log: Any = print) -> ChaosReport:
    started = time.monotonic()
    rng = random.Random(seed)
    report = ChaosReport()
    run_id = uuid.uuid4().hex[:8]
    raw_topic, dlq_chaos, dlq_ref = f"chaos-raw-{run_id}", f"chaos-dlq-{run_id}", f"chaos-dlq-ref-{run_id}"
    create_topics(stack.kafka_bootstrap, {raw_topic: 4, dlq_chaos: 1, dlq_ref: 1})
    db_chaos, db_ref = f"chaos_{run_id}", f"chaos_ref_{run_id}"
    for db in (db_chaos, db_ref):
        create_database_v1(stack.influx_v1_url, db)
    url = stack.influx_v1_url

    stream_seconds = kills * SECONDS_PER_KILL_CYCLE + 20
    config = SimConfig(patients=patients, duration_s=60, start_ms=START_MS, sites=sites, bad_fraction=0.02,
                       end_of_stream=True, partitions=4, seed=seed)
    messages = list(generate_messages(config))
    model = expected_output(messages, k=k)
    report.points_model = model.points
    rate = len(messages) / stream_seconds
    log(f"{len(messages)} messages at {rate:.0f}/s over ~{stream_seconds} s; {kills} kills; "
        f"model {model.points} points")

    checkpoints = workdir / "checkpoints-chaos"
    args = job_args(stack, checkpoints, "--influx-db", db_chaos, "--kafka-input-topic", raw_topic,
                    "--kafka-dlq-topic", dlq_chaos, "--k-anonymity", str(k))
    produced = ProduceReport()
    producer = threading.Thread(
        target=lambda: produced.__dict__.update(produce(messages, stack.kafka_bootstrap, raw_topic, rate).__dict__),
        daemon=True,
    )
    target: _EmbeddedTarget | _ClusterTarget = (
        _ClusterTarget(args, workdir) if mode == "cluster" else _EmbeddedTarget(args, workdir)
    )
    report.kind = target.kind
    try:
        wait_until(lambda: latest_checkpoint(checkpoints), 120, "first checkpoint", job=target.job)
        producer.start()
        for number in range(1, kills + 1):
            _wait_for_new_checkpoint(checkpoints, target.job, "a checkpoint of this run")
            time.sleep(rng.uniform(0.0, 4.0))
            target.kill()
            report.kills += 1
            points = count_points_v1(url, db_chaos, "ecg_anonymized")
            log(f"kill {number} ({target.kind}): after {latest_checkpoint(checkpoints)}, {points} points so far, "
                f"producer {'running' if producer.is_alive() else 'done'}")
            if not producer.is_alive():
                report.notes.append(f"note: kill {number} happened after the producer finished")
            resumed_at = time.monotonic()
            target.resume(number)
            report.resumes += 1
            _wait_for_new_checkpoint(checkpoints, target.job, "a checkpoint after resume")
            report.resume_seconds.append(time.monotonic() - resumed_at)
        producer.join(timeout=600)
        wait_until(lambda: count_points_v1(url, db_chaos, "ecg_anonymized") >= model.points, 300,
                   "all points after the last resume", job=target.job)
        time.sleep(5)
        report.points_chaos = count_points_v1(url, db_chaos, "ecg_anonymized")
        report.notes.extend(target.notes())
    finally:
        target.stop()

    reference = JobProcess(
        job_args(stack, workdir / "checkpoints-ref", "--influx-db", db_ref, "--kafka-input-topic", raw_topic,
                 "--kafka-dlq-topic", dlq_ref, "--k-anonymity", str(k)),
        workdir / "uninterrupted.log",
    )
    try:
        wait_until(lambda: count_points_v1(url, db_ref, "ecg_anonymized") >= model.points, 300,
                   "uninterrupted run", job=reference)
        wait_until(lambda: len(_dead_letters(stack.kafka_bootstrap, dlq_ref)) >= produced.bad, 60, "reference DLQ",
                   job=reference)
        time.sleep(5)
        report.points_uninterrupted = count_points_v1(url, db_ref, "ecg_anonymized")
    finally:
        reference.stop()

    chaos_prints, ref_prints = fingerprints(url, db_chaos), fingerprints(url, db_ref)
    report.fingerprints_compared = len(ref_prints)
    report.fingerprints_differing = sum(
        1 for key in chaos_prints.keys() | ref_prints.keys() if chaos_prints.get(key) != ref_prints.get(key)
    )
    chaos_dlq, ref_dlq = _dead_letters(stack.kafka_bootstrap, dlq_chaos), _dead_letters(stack.kafka_bootstrap, dlq_ref)
    report.dead_letters_distinct = len(chaos_dlq)
    report.dead_letters_uninterrupted = sum(ref_dlq.values())
    report.dead_letters_replayed = sum(count - 1 for count in chaos_dlq.values())
    # A replay is exact when its bytes equal a message of the uninterrupted run (same position, reason, raw).
    report.dead_letters_not_exact_replays = sum(1 for value in chaos_dlq if value not in ref_dlq)
    report.seconds = time.monotonic() - started
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--patients", type=int, default=12)
    parser.add_argument("--mode", choices=("embedded", "cluster"), default="embedded",
                        help="embedded: kill -9 the job process; cluster: kill -9 the TaskManager")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, checkpoints)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    stack = LocalStack(workdir / "stack")
    try:
        stack.start(victoria_metrics=False)
        report = run_chaos(stack, workdir, kills=args.kills, seed=args.seed, patients=args.patients,
                           mode=args.mode)
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
