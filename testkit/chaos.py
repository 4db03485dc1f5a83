"""Chaos resume: kill -9 the job at random moments mid-stream, resume each time from the latest
retained checkpoint, then compare everything with an uninterrupted run of the same data.

The command line is benchmarks/chaos_resume.py (`python -m benchmarks.chaos_resume --help`).

Live mode (default): the data is produced while the job runs and the kills come at random moments.
Backlog mode: everything is in the topic before the job starts (a replay, or a job that was down for a
while); the kills come at fractions of the output during the catch-up; the report says for each
whether the source had already read everything (the windows then still being published).

Figures printed: kills, resumes, points (chaos / uninterrupted / reference model), lost and duplicated
points, per-series-and-window fingerprints that differ, dead letters and their exact replays.
The same function backs tests/integration/test_chaos_resume.py (5 kills by default, 20 when slow),
and, with `delivery="exactly-once"`, tests/integration/test_exactly_once_chaos.py.

Delivery (`delivery="exactly-once"`): both runs with KAFKA_DELIVERY=exactly-once (Kafka transactions, each run
its own transactional id prefix), every output topic read with isolation_level=read_committed, and a run then
passes only with ZERO replays: no dead letter, anomaly id or model-update id seen twice. Per kill the report
says how long after the last completed checkpoint it came and how many records sat in open transactions of
the output topics (high watermark minus last stable offset) at the kill; `kill_timing` places kills right
after a completed checkpoint or while a transaction holds records. A transaction left open by a killed job
hides only its own records from a read_committed reader (and everything after them on that partition):
the resumed job, with the same transactional ids, aborts it when it starts (Flink's KafkaSink, connector
4.0, probes the transactional ids of its prefix from the restored checkpoint on and aborts what it finds
open), at the latest the broker does after KAFKA_TRANSACTION_TIMEOUT_MS. The readers here never wait on
it: each read stops after a few idle seconds, and every wait for output is bounded.
"""

from __future__ import annotations

import functools
import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from connectors.checkpoints import latest_checkpoint
from connectors.config import PROJECT_ROOT
from devstack.flink_cluster import FlinkCluster
from devstack.influx_queries import count_points_v1, create_database_v1, query_v1
from devstack.kafka_admin import create_topics
from devstack.processes import free_port
from devstack.simulator import ProduceReport, SimConfig, generate_messages, produce
from devstack.stack import LocalStack
from testkit.checkpoint_watch import CheckpointWatch, logged_checkpoint_times
from testkit.flink_rest import job_metrics, job_restarts, source_drained, vertex_watermarks
from testkit.jobs import TEST_SECRET, JobProcess, branch_args, job_args, wait_until
from testkit.kafka_topics import TransactionProbe, last_offsets_of, read_topic
from testkit.reference import expected_branch, expected_output

START_MS = 1_763_812_800_000
# Short federated rounds, so a 60 s run has several rounds (and their global updates) to replay.
BRANCH_ROUND_ARGS = ("--model-update-seconds", "20", "--model-grace-seconds", "5")
SECONDS_PER_KILL_CYCLE = 16  # JVM start + restore + one checkpoint + the random delay, measured here
SECONDS_PER_RECOVERY_CYCLE = 100  # ... + the wait until caught up (measure_recovery; 93 s measured at load 25)
DELIVERIES = ("at-least-once", "exactly-once")
# Where a kill lands (run_chaos's kill_timing, one entry per kill; missing entries: the default, a random
# moment 0-4 s after a new checkpoint live, the output-driven point in a backlog).
KILL_TIMINGS = ("default", "after-checkpoint", "open-transaction")
OPEN_TRANSACTION_WAIT_S = 30.0
JOB_ARGS_CHECKPOINT_INTERVAL_S = 2.0  # testkit.jobs.job_args's --checkpoint-interval-seconds
SETTLE_AFTER_KILL_S = 5.0  # measure_recovery: a killed job's last writes land within this
RECOVERY_WAIT_S = 300.0  # measure_recovery: how long a resumed job may take to checkpoint and catch up


@dataclass(frozen=True)
class KillTiming:
    """When a kill came: its kill_timing, seconds since the latest completed checkpoint's _metadata was
    written, and (exactly-once) records in open transactions per output topic right after the kill."""

    timing: str
    checkpoint: str
    checkpoint_age_s: float
    open_records: dict[str, int] | None = None


@dataclass(frozen=True)
class KillRecovery:
    """What one kill cost (``measure_recovery``): the checkpoint the resumed job restored and its age at the
    kill (kill time minus its trigger: the input read since then is replayed; minus its completion as well),
    and the seconds from the kill to the first new point (the point count above the count at the kill, taken
    SETTLE_AFTER_KILL_S after it, when the killed job's last write requests have landed: replayed points are
    rewritten, not added) and to caught up (the count back on the track it was on before the kill:
    count at the kill + the rate of the 15 s before it x the time since, or every point), None if not seen
    within the wait."""

    restored: str
    age_from_trigger_s: float | None
    age_from_completion_s: float | None
    first_new_point_s: float | None
    caught_up_s: float | None
    interval_s: float

    @property
    def within_bound(self) -> bool:
        """The restored checkpoint was triggered at most 3 checkpoint intervals before the kill (issue 19)."""
        return self.age_from_trigger_s is not None and self.age_from_trigger_s <= 3 * self.interval_s

    def line(self) -> str:
        def seconds(value: float | None) -> str:
            return "not seen" if value is None else f"{value:.1f} s"

        return (f"restored {self.restored}, age {seconds(self.age_from_trigger_s)} from its trigger "
                f"({seconds(self.age_from_completion_s)} from its completion) vs 3 x interval = "
                f"{3 * self.interval_s:g} s: {'ok' if self.within_bound else 'OLDER'}; kill -> first new point "
                f"{seconds(self.first_new_point_s)}, kill -> caught up {seconds(self.caught_up_s)}")


@dataclass
class ChaosReport:
    kind: str = ""
    delivery: str = "at-least-once"
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
    branch: BranchComparison | None = None
    seconds: float = 0.0
    kill_points: list[str] = field(default_factory=list)
    kill_timings: list[KillTiming] = field(default_factory=list)
    recoveries: list[KillRecovery] = field(default_factory=list)  # with measure_recovery, one per kill
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
            and (self.branch is None or self.branch.ok)
            and (self.delivery != "exactly-once" or self.replays == 0)
            and all(recovery.within_bound for recovery in self.recoveries)
        )

    @property
    def replays(self) -> int:
        """Extra copies a reader saw: dead letters, anomaly ids and model-update ids seen more than once."""
        branch = self.branch.anomalies_replayed + self.branch.updates_replayed if self.branch else 0
        return self.dead_letters_replayed + branch

    def summary(self) -> str:
        resume = (
            f"{sum(self.resume_seconds) / len(self.resume_seconds):.1f} s mean, {max(self.resume_seconds):.1f} s max"
            if self.resume_seconds else "-"
        )
        return "\n".join(
            [
                f"kills                                   {self.kills} ({self.kind})",
                f"delivery                                {self.delivery}"
                + (" (read_committed readers; must have 0 replays)" if self.delivery == "exactly-once" else ""),
                *(f"  kill {i}: {point}" for i, point in enumerate(self.kill_points, start=1)),
                *(f"  recovery {i}: {recovery.line()}" for i, recovery in enumerate(self.recoveries, start=1)),
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
                *(self.branch.lines() if self.branch else ["anomaly / model-update ids              n/a"]),
                f"replays seen (dead letters + ids)       {self.replays}",
                f"wall time                               {self.seconds:.0f} s",
                f"result                                  {'PASS' if self.ok else 'FAIL'}",
                *self.notes,
            ]
        )


# --- the cardio branch: anomaly event_id and model update_id sets ------------------------------


@dataclass
class BranchComparison:
    """Anomaly events and model updates of the chaos run against the uninterrupted run: the sets of
    ids must be equal, and every repeated id must be an exact replay (same bytes)."""

    anomalies_chaos: int = 0  # distinct event ids
    anomalies_uninterrupted: int = 0
    anomalies_model: int = 0  # the pure reference model (testkit.branch_model.run_branch)
    anomalies_replayed: int = 0  # extra copies of an id
    anomalies_differing: int = 0  # ids only on one side, or with other bytes
    updates_chaos: int = 0
    updates_uninterrupted: int = 0
    updates_model: int = 0
    updates_replayed: int = 0
    updates_differing: int = 0

    @property
    def ok(self) -> bool:
        return (self.anomalies_differing == 0 and self.updates_differing == 0 and self.updates_uninterrupted > 0
                and self.anomalies_chaos == self.anomalies_uninterrupted == self.anomalies_model
                and self.updates_chaos == self.updates_uninterrupted == self.updates_model)

    def lines(self) -> list[str]:
        return [
            f"anomaly ids chaos / uninterrupted / model {self.anomalies_chaos} / {self.anomalies_uninterrupted} / "
            f"{self.anomalies_model} (replayed {self.anomalies_replayed}, differing {self.anomalies_differing})",
            f"update ids chaos / uninterrupted / model  {self.updates_chaos} / {self.updates_uninterrupted} / "
            f"{self.updates_model} (replayed {self.updates_replayed}, differing {self.updates_differing})",
        ]


def _messages_by_id(bootstrap: str, topic: str, id_field: str, isolation_level: str = "read_uncommitted"
                    ) -> dict[str, Counter[bytes]]:
    import json

    by_id: dict[str, Counter[bytes]] = {}
    for record in read_topic(bootstrap, topic, isolation_level=isolation_level):
        by_id.setdefault(json.loads(record.value)[id_field], Counter())[record.value] += 1
    return by_id


def compare_branch_outputs(bootstrap: str, chaos_topics: tuple[str, str], reference_topics: tuple[str, str],
                           isolation_level: str = "read_uncommitted") -> BranchComparison:
    """(anomaly topic, model topic) of the chaos run vs the uninterrupted run."""
    result = BranchComparison()
    for index, id_field in enumerate(("event_id", "update_id")):
        chaos = _messages_by_id(bootstrap, chaos_topics[index], id_field, isolation_level)
        reference = _messages_by_id(bootstrap, reference_topics[index], id_field, isolation_level)
        # An id differs if it is on one side only or its bytes differ (a replay must be exact).
        differing = sum(1 for key in chaos.keys() | reference.keys()
                        if set(chaos.get(key, {})) != set(reference.get(key, {})) or len(chaos.get(key, {})) != 1)
        replayed = sum(sum(copies.values()) - 1 for copies in chaos.values())
        if index == 0:
            result.anomalies_chaos, result.anomalies_uninterrupted = len(chaos), len(reference)
            result.anomalies_replayed, result.anomalies_differing = replayed, differing
        else:
            result.updates_chaos, result.updates_uninterrupted = len(chaos), len(reference)
            result.updates_replayed, result.updates_differing = replayed, differing
    return result


def _branch_ids(bootstrap: str, topics: tuple[str, str], isolation_level: str = "read_uncommitted"
                ) -> tuple[int, int]:
    """Distinct (anomaly event ids, model update ids) published so far."""
    return (len(_messages_by_id(bootstrap, topics[0], "event_id", isolation_level)),
            len(_messages_by_id(bootstrap, topics[1], "update_id", isolation_level)))


def missing_branch_ids(bootstrap: str, topics: tuple[str, str], model: Any,
                       isolation_level: str = "read_uncommitted") -> list[str]:
    """The model's anomaly events and model updates a run has not published, summarized."""
    import json

    lines = []
    published = (_messages_by_id(bootstrap, topics[0], "event_id", isolation_level),
                 _messages_by_id(bootstrap, topics[1], "update_id", isolation_level))
    wanted = ([json.loads(event.to_json()) for event in model.anomalies],
              [json.loads(update.to_json()) for update in [*model.local_updates, *model.global_updates]])
    for index, id_field in enumerate(("event_id", "update_id")):
        missing = [item for item in wanted[index] if item[id_field] not in published[index]]
        if not missing:
            continue
        kinds = Counter(str(item.get("kind")) for item in missing)
        pids = Counter(str(item.get("pid", "-"))[:8] for item in missing)
        times = sorted(int(item.get("ts", item.get("ts_ms", 0)) or 0) for item in missing)
        lines.append(f"missing {len(missing)} of {len(wanted[index])} {id_field}s: kinds {dict(kinds)}, "
                     f"{len(pids)} pids (most: {pids.most_common(3)}), ts {times[0]}..{times[-1]}")
    return lines


def log_job_state(rest_port: int, prefixes: tuple[str, ...], log: Any = print) -> None:
    """On a stall: the job's metrics with these prefixes and each vertex's input watermark."""
    try:
        metrics = job_metrics(rest_port)
        log("  metrics: " + ", ".join(f"{name}={metrics[name]:g}" for name in sorted(metrics)
                                      if name.startswith(prefixes)))
        for vertex, watermark in vertex_watermarks(rest_port).items():
            log(f"  watermark {watermark} at {vertex}")
    except (OSError, ValueError, AssertionError) as error:  # diagnostics only: never hide the stall itself
        log(f"  (job state unavailable: {error!r})")


def _branch_topics(stack: LocalStack, run_id: str, name: str) -> tuple[str, str]:
    topics = (f"chaos-anomalies-{name}-{run_id}", f"chaos-models-{name}-{run_id}")
    create_topics(stack.kafka_bootstrap, {topic: 1 for topic in topics})
    return topics


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
        self.rest_port = free_port()
        self._args, self._workdir = [*args, "--web-ui-port", str(self.rest_port)], workdir
        self.job: JobProcess | None = JobProcess(self._args, workdir / "chaos-0.log")

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
            # Every kill costs one restart attempt; the jobs must outlive all of them. On a cluster the
            # cardio branch is a job of its own, submitted beside the anonymization job (as
            # docker/submit_job.py does); the killed TaskManager runs both, so both restore.
            self.jobs = {what: self.cluster.submit(PROJECT_ROOT / "flink_jobs" / job_file,
                                                   [*args, "--restart-attempts", "1000"])
                         for what, job_file in (("job", "ecg_anonymization_job.py"), ("cardio job", "cardio_job.py"))}
        finally:
            if previous is None:
                os.environ.pop("PSEUDONYM_SECRET")
            else:
                os.environ["PSEUDONYM_SECRET"] = previous

    @property
    def rest_port(self) -> int:
        return self.cluster.rest_port

    def kill(self) -> None:
        self.cluster.kill_taskmanager()

    def resume(self, number: int) -> None:
        self.cluster.start_taskmanager()
        wait_until(lambda: all(self.cluster.job_state(job_id) == "RUNNING" for job_id in self.jobs.values()), 120,
                   "both jobs RUNNING again")

    def notes(self) -> list[str]:
        notes = []
        for what, job_id in self.jobs.items():
            restarts = job_restarts(self.rest_port, job_id)
            notes.append(f"{what} restarts counted by Flink (numRestarts)  {'?' if restarts is None else restarts}")
        return notes

    def stop(self) -> None:
        try:
            for job_id in self.jobs.values():
                if self.cluster.job_state(job_id) == "RUNNING":
                    self.cluster.cancel(job_id)
                    self.cluster.wait_for_job(job_id, ("CANCELED",), timeout=60)
        finally:
            self.cluster.stop()


def _wait_for_new_checkpoint(checkpoints: Path, job: JobProcess | None, what: str, poll: float = 1.0,
                             timeout: float = 120.0) -> None:
    seen = latest_checkpoint(checkpoints)
    wait_until(lambda: latest_checkpoint(checkpoints) != seen, timeout, what, job=job, poll=poll)


def _checkpoint_age(checkpoints: Path) -> tuple[str, float]:
    """(name of the latest completed checkpoint, seconds since its _metadata was written)."""
    latest = latest_checkpoint(checkpoints)
    if latest is None:
        return "-", float("nan")
    return latest.name, time.time() - (latest / "_metadata").stat().st_mtime


def _wait_for_backlog_kill_point(number: int, kills: int, points_now: Any, total: int, job: Any) -> None:
    """The first kill at 1 / (2 kills) of the output; every later one right away, that is as soon as the
    resumed job has completed its first checkpoint (the loop waits for it after each resume), while it
    replays from its restore point. The catch-up takes seconds, so the kills follow the job, not the clock.
    (Kills at fixed shares of the output, or at the first new window after a resume, came after the
    resumed job's final burst of windows, at 100 %, in 3 of 4 runs on Apache Kafka: a resumed job replays
    quietly and then writes the windows left in one burst.) The source reads far ahead of the windows;
    the report says per kill whether it had read everything (from REST metrics, which Flink refreshes
    every 10 s)."""
    if number == 1:
        share = 0.5 / kills
        wait_until(lambda: points_now() >= share * total, 180, f"{share:.0%} of the output", job=job, poll=0.2)


def _at_least(points_now: Any, wanted: float) -> bool:
    return bool(points_now() >= wanted)


class PointCounts:
    """The chaos run's point count, sampled every second in a thread: (wall time, count) pairs."""

    def __init__(self, points_now: Any, poll_s: float = 1.0) -> None:
        self._points_now, self.poll_s = points_now, poll_s
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="point-counts")

    def start(self) -> PointCounts:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.time(), self._points_now()))
            except OSError:  # influxd busy: the next sample
                pass
            self._stop.wait(self.poll_s)

    def rate_before(self, moment: float, span_s: float = 15.0) -> float:
        """Points per second over the `span_s` before `moment`."""
        inside = [(t, n) for t, n in self.samples if moment - span_s <= t <= moment]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return 0.0
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])

    def first_time(self, after: float, condition: Any) -> float | None:
        """Seconds from `after` to the first sample (taken after it) whose (time, count) meets `condition`."""
        return next((t - after for t, n in list(self.samples) if t > after and condition(t, n)), None)


@dataclass(frozen=True)
class _Kill:
    restored: Path | None  # what --from-checkpoint latest resumed from
    killed_at: float
    points_at_kill: int
    rate_before: float  # points/s over the 15 s before the kill
    logged: tuple[int, int] | None = None  # the restored checkpoint's (trigger, completion) ms from the job's log


def _after_resume(counts: PointCounts, restored: Path | None, killed_at: float, points_at_kill: int, total: int,
                  until_caught_up: bool, job: Any, logged: tuple[int, int] | None) -> _Kill:
    """Waits (at most RECOVERY_WAIT_S) until the resumed job writes new points (a backlog: the next kill may come
    before it has caught up) or has caught up (live)."""
    rate = counts.rate_before(killed_at)
    # Write requests the killed job had sent still land for a moment after the kill (a first run measured a
    # "first new point" 1.5 s after the kill); the resumed job needs far longer to start, so the count a few
    # seconds after the kill is what the killed job wrote.
    time.sleep(max(0.0, killed_at + SETTLE_AFTER_KILL_S + counts.poll_s - time.time()))
    points_at_kill = max([points_at_kill, *(n for t, n in counts.samples
                                            if killed_at <= t <= killed_at + SETTLE_AFTER_KILL_S)])
    kill = _Kill(restored, killed_at, points_at_kill, rate, logged)
    condition = _caught_up(kill, total) if until_caught_up else _new_point(kill)
    try:
        wait_until(lambda: counts.first_time(killed_at, condition) is not None, RECOVERY_WAIT_S,
                   "caught up" if until_caught_up else "a new point", job=job, poll=1.0)
    except AssertionError:
        pass  # reported as not seen
    return kill


def _new_point(kill: _Kill) -> Any:
    return lambda _moment, count: count > kill.points_at_kill


def _caught_up(kill: _Kill, total: int) -> Any:
    return lambda moment, count: count >= min(total, kill.points_at_kill + kill.rate_before * (moment - kill.killed_at))


def _measure(kill: _Kill, watch: CheckpointWatch, counts: PointCounts, total: int, interval_s: float,
             until: float) -> KillRecovery:
    """A kill's figures from the checkpoint history and the point counts sampled before `until` (the next kill)."""
    restored = kill.restored
    checkpoint = watch.find(restored.parent.name, int(restored.name[4:])) if restored is not None else None
    # A checkpoint that completed less than a poll before the kill is only in the killed job's log.
    times = (checkpoint.trigger_ms, checkpoint.completed_ms) if checkpoint is not None else kill.logged

    def seconds_to(condition: Any) -> float | None:
        return counts.first_time(kill.killed_at, lambda moment, count: moment <= until and condition(moment, count))

    return KillRecovery(
        restored=restored.name if restored is not None else "none (from the start)",
        age_from_trigger_s=None if times is None else kill.killed_at - times[0] / 1000,
        age_from_completion_s=None if times is None else kill.killed_at - times[1] / 1000,
        first_new_point_s=seconds_to(_new_point(kill)), caught_up_s=seconds_to(_caught_up(kill, total)),
        interval_s=interval_s)


def _dead_letters(bootstrap: str, topic: str, isolation_level: str = "read_uncommitted") -> Counter[bytes]:
    return Counter(record.value for record in read_topic(bootstrap, topic, isolation_level=isolation_level))


def delivery_args(delivery: str, transactional_id_prefix: str) -> list[str]:
    """Job flags of a delivery guarantee: nothing for at-least-once (the job's default), else Kafka
    transactions under a prefix of this run's own (a resumed job must use the prefix of the killed one)."""
    if delivery not in DELIVERIES:
        raise ValueError(f"delivery must be one of {DELIVERIES}, not {delivery!r}")
    if delivery == "at-least-once":
        return []
    return ["--kafka-delivery", delivery, "--kafka-transactional-id-prefix", transactional_id_prefix]


def run_chaos(stack: LocalStack, workdir: Path, *, kills: int = 5, seed: int = 1, patients: int = 12,
              sites: int = 2, k: int = 5, mode: str = "embedded", backlog: bool = False, duration_s: int = 60,
              after_kill: Any = None, log: Any = print, delivery: str = "at-least-once",
              kill_timing: Sequence[str] = (), checkpoint_interval_s: float | None = None,
              measure_recovery: bool = False) -> ChaosReport:
    """``after_kill(url, db)`` runs after every kill, before the resume (e.g. a reader's view check).

    ``checkpoint_interval_s``: the job's interval (default: testkit.jobs.job_args's 2 s). ``measure_recovery``:
    per kill a KillRecovery (restored checkpoint's age vs 3 x the interval, kill -> first new point, kill ->
    caught up; the run fails if a restore is older than 3 intervals), read from the REST checkpoint history
    (testkit.checkpoint_watch) and the point count sampled every second. Live: after each resume the driver
    waits until the job has caught up, then kills a random 0..max(4 s, interval) after a completed checkpoint.
    Backlog: kills at random shares of the output (5-90 %, drawn from ``seed``; a share already passed: a random
    0..interval s later), each once the resumed job writes new points, so all land in the catch-up; a kill's
    caught-up time counts only if it came before the next kill.

    ``delivery="exactly-once"``: both runs use Kafka transactions, every topic is read with
    isolation_level=read_committed, and the report requires zero replays. ``kill_timing``: per kill one of
    KILL_TIMINGS ("after-checkpoint": within ~50 ms of a completed checkpoint; "open-transaction": when an
    output topic holds records of a transaction not yet committed, at most OPEN_TRANSACTION_WAIT_S)."""
    started = time.monotonic()
    rng = random.Random(seed)
    unknown = [timing for timing in kill_timing if timing not in KILL_TIMINGS]
    if unknown:
        raise ValueError(f"kill_timing entries must be in {KILL_TIMINGS}: {unknown}")
    exactly_once = delivery == "exactly-once"
    isolation = "read_committed" if exactly_once else "read_uncommitted"
    report = ChaosReport(delivery=delivery)
    run_id = uuid.uuid4().hex[:8]
    raw_topic, dlq_chaos, dlq_ref = f"chaos-raw-{run_id}", f"chaos-dlq-{run_id}", f"chaos-dlq-ref-{run_id}"
    create_topics(stack.kafka_bootstrap, {raw_topic: 4, dlq_chaos: 1, dlq_ref: 1})
    db_chaos, db_ref = f"chaos_{run_id}", f"chaos_ref_{run_id}"
    for db in (db_chaos, db_ref):
        create_database_v1(stack.influx_v1_url, db)
    url = stack.influx_v1_url

    stream_seconds = kills * (SECONDS_PER_RECOVERY_CYCLE if measure_recovery else SECONDS_PER_KILL_CYCLE) + 20
    config = SimConfig(patients=patients, duration_s=duration_s, start_ms=START_MS, sites=sites, bad_fraction=0.02,
                       end_of_stream=True, partitions=4, seed=seed)
    messages = list(generate_messages(config))
    model = expected_output(messages, k=k)
    report.points_model = model.points
    rate = 0.0 if backlog else len(messages) / stream_seconds
    pace = "pre-produced (backlog)" if backlog else f"at {rate:.0f}/s over ~{stream_seconds} s"
    log(f"{len(messages)} messages {pace}; {kills} kills; model {model.points} points; delivery {delivery}")
    last_offsets: dict[int, int] = {}
    produced = ProduceReport()
    if backlog:
        produced = produce(messages, stack.kafka_bootstrap, raw_topic)
        if produced.errors:
            raise RuntimeError(f"producing the backlog failed: {produced.error_samples}")
        last_offsets = last_offsets_of(stack.kafka_bootstrap, raw_topic)

    branch_chaos, branch_ref = _branch_topics(stack, run_id, "chaos"), _branch_topics(stack, run_id, "ref")
    checkpoints = workdir / "checkpoints-chaos"
    interval_args = [] if checkpoint_interval_s is None else ["--checkpoint-interval-seconds",
                                                              f"{checkpoint_interval_s:g}"]
    args = job_args(stack, checkpoints, "--influx-db", db_chaos, "--kafka-input-topic", raw_topic,
                    "--kafka-dlq-topic", dlq_chaos, "--k-anonymity", str(k), *branch_args(*branch_chaos),
                    *BRANCH_ROUND_ARGS, *delivery_args(delivery, f"chaos-{run_id}"), *interval_args)
    # The branch lags the anonymized points (the beat detector is the slowest stage): a run is over
    # when its branch has published every id of the pure reference model, not when the points are in.
    branch_model = expected_branch(messages, args)
    report.branch = BranchComparison(
        anomalies_model=len({event.event_id for event in branch_model.anomalies}),
        updates_model=len({u.update_id for u in [*branch_model.local_updates, *branch_model.global_updates]}))
    branch_expected = (report.branch.anomalies_model, report.branch.updates_model)

    def branch_done(topics: tuple[str, str]) -> bool:
        published = _branch_ids(stack.kafka_bootstrap, topics, isolation)
        return all(now >= expected for now, expected in zip(published, branch_expected, strict=True))

    def wait_for_branch(topics: tuple[str, str], job: Any, rest_port: int | None, what: str) -> None:
        """Until the branch has published every id of the model; on a timeout, say what is missing
        (and the branch's metrics) instead of failing here: the comparison then reports it."""
        try:
            wait_until(lambda: branch_done(topics), 150, what, job=job, poll=2.0)
        except AssertionError as error:
            log(f"BRANCH INCOMPLETE: {error}")
            for line in missing_branch_ids(stack.kafka_bootstrap, topics, branch_model, isolation):
                log("  " + line)
            if rest_port is not None:
                log_job_state(rest_port, ("cardio_", "model_", "devices_", "anomalies_"), log)

    def wait_for_points(db: str, job: Any, rest_port: int | None, what: str) -> None:
        try:
            wait_until(lambda: count_points_v1(url, db, "ecg_anonymized") >= model.points, 300, what, job=job)
        except AssertionError:
            log(f"POINTS INCOMPLETE: {count_points_v1(url, db, 'ecg_anonymized')} of {model.points} ({what})")
            if rest_port is not None:
                log_job_state(rest_port, ("records_", "frames_", "late_", "dead_", "windows", "accounting_"), log)
            raise
    producer = threading.Thread(
        target=lambda: produced.__dict__.update(produce(messages, stack.kafka_bootstrap, raw_topic, rate).__dict__),
        daemon=True,
    )
    target: _EmbeddedTarget | _ClusterTarget = (
        _ClusterTarget(args, workdir) if mode == "cluster" else _EmbeddedTarget(args, workdir)
    )
    report.kind = target.kind
    def points_now() -> int:
        return count_points_v1(url, db_chaos, "ecg_anonymized")

    # Exactly-once: records in transactions not yet committed, per output topic (high watermark - LSO).
    output_topics = {"dlq": dlq_chaos, "anomalies": branch_chaos[0], "models": branch_chaos[1]}
    probe = TransactionProbe(stack.kafka_bootstrap, list(output_topics.values())) if exactly_once else None

    def open_records() -> dict[str, int]:
        assert probe is not None
        by_topic = probe.open_records()
        return {name: by_topic.get(topic, 0) for name, topic in output_topics.items()}

    interval = checkpoint_interval_s or JOB_ARGS_CHECKPOINT_INTERVAL_S
    watch = CheckpointWatch(target.rest_port).start() if measure_recovery else None
    counts = PointCounts(points_now).start() if measure_recovery else None
    # Drawn only when used, so the other modes' kill moments stay those of their seed.
    kill_shares = sorted(rng.uniform(0.05, 0.9) for _ in range(kills)) if backlog and measure_recovery else []
    killed: list[_Kill] = []
    try:
        wait_until(lambda: latest_checkpoint(checkpoints), 120, "first checkpoint", job=target.job)
        if not backlog:
            producer.start()
        for number in range(1, kills + 1):
            timing = kill_timing[number - 1] if number <= len(kill_timing) else "default"
            if not backlog:  # backlog: the catch-up takes seconds, kill on output progress alone
                _wait_for_new_checkpoint(checkpoints, target.job, "a checkpoint of this run")
            if backlog and measure_recovery:
                wanted = kill_shares[number - 1] * model.points
                if points_now() >= wanted:  # passed while recovering: a random moment after
                    time.sleep(rng.uniform(0.0, interval))
                wait_until(functools.partial(_at_least, points_now, wanted), 300,
                           f"{wanted / model.points:.0%} of the output", job=target.job, poll=0.5)
            elif backlog:
                _wait_for_backlog_kill_point(number, kills, points_now, model.points, target.job)
            drained = backlog and source_drained(target.rest_port, last_offsets)
            if timing == "after-checkpoint":  # within ~50 ms of the next completed checkpoint
                _wait_for_new_checkpoint(checkpoints, target.job, "a checkpoint to kill right after", poll=0.05)
            elif timing == "open-transaction" and probe is not None:
                try:
                    wait_until(lambda: sum(open_records().values()) > 0, OPEN_TRANSACTION_WAIT_S,
                               "records in an open transaction", job=target.job, poll=0.05)
                except AssertionError:
                    report.notes.append(f"note: kill {number}: no open transaction with records within "
                                        f"{OPEN_TRANSACTION_WAIT_S:.0f} s, killed anyway")
            elif not backlog:
                time.sleep(rng.uniform(0.0, max(4.0, interval) if measure_recovery else 4.0))
            if watch is not None:
                watch.poll_once()  # the checkpoints completed up to the kill
            checkpoint_name, checkpoint_age = _checkpoint_age(checkpoints)
            target.kill()
            killed_at = time.time()
            report.kills += 1
            points = points_now()
            in_transactions = open_records() if probe is not None else None
            point = (f"{points} of {model.points} points ({100 * points / max(model.points, 1):.0f} %), "
                     f"after {checkpoint_name}, {checkpoint_age:.2f} s after it completed"
                     + (f", source drained: {'yes' if drained else 'no'}" if backlog else "")
                     + ("" if in_transactions is None else ", records in open transactions "
                        + " ".join(f"{name} {count}" for name, count in in_transactions.items()))
                     + ("" if timing == "default" else f" [timing: {timing}]"))
            report.kill_points.append(point)
            report.kill_timings.append(KillTiming(timing, checkpoint_name, checkpoint_age, in_transactions))
            log(f"kill {number} ({target.kind}): {point}, producer "
                f"{'running' if producer.is_alive() else 'done' if not backlog else 'none (backlog)'}")
            if not backlog and not producer.is_alive():
                report.notes.append(f"note: kill {number} happened after the producer finished")
            if backlog and points >= model.points:
                report.notes.append(f"note: kill {number} happened after all points were written")
            if after_kill is not None:
                after_kill(url, db_chaos)
            restored = latest_checkpoint(checkpoints)  # what --from-checkpoint latest resumes from
            logged = (logged_checkpoint_times(target.job.flink_log_text(), restored.parent.name, int(restored.name[4:]))
                      if restored is not None and counts is not None and target.job is not None else None)
            resumed_at = time.monotonic()
            target.resume(number)
            report.resumes += 1
            # During a catch-up a resumed job's first checkpoint can take minutes (issue 19 item 4): measuring
            # recovery waits for it as long as for catching up.
            _wait_for_new_checkpoint(checkpoints, target.job, "a checkpoint after resume",
                                     timeout=RECOVERY_WAIT_S if measure_recovery else 120.0)
            report.resume_seconds.append(time.monotonic() - resumed_at)
            if counts is not None:
                killed.append(_after_resume(counts, restored, killed_at, points, model.points, not backlog,
                                            target.job, logged))
        if not backlog:
            producer.join(timeout=600)
        wait_for_points(db_chaos, target.job, target.rest_port, "all points after the last resume")
        if watch is not None and counts is not None:
            ends = [kill.killed_at for kill in killed[1:]] + [time.time()]
            for number, (kill, until) in enumerate(zip(killed, ends, strict=True), start=1):
                report.recoveries.append(_measure(kill, watch, counts, model.points, interval, until))
                log(f"recovery {number}: {report.recoveries[-1].line()}")
        wait_for_branch(branch_chaos, target.job, target.rest_port, "every anomaly and model update (chaos)")
        time.sleep(5)
        report.points_chaos = count_points_v1(url, db_chaos, "ecg_anonymized")
        report.notes.extend(target.notes())
    finally:
        target.stop()
        if probe is not None:
            probe.close()
        if watch is not None:
            watch.stop()
        if counts is not None:
            counts.stop()

    reference = JobProcess(
        job_args(stack, workdir / "checkpoints-ref", "--influx-db", db_ref, "--kafka-input-topic", raw_topic,
                 "--kafka-dlq-topic", dlq_ref, "--k-anonymity", str(k), *branch_args(*branch_ref), *BRANCH_ROUND_ARGS,
                 *delivery_args(delivery, f"ref-{run_id}")),
        workdir / "uninterrupted.log",
    )
    try:
        wait_until(lambda: count_points_v1(url, db_ref, "ecg_anonymized") >= model.points, 300,
                   "uninterrupted run", job=reference)
        wait_until(lambda: len(_dead_letters(stack.kafka_bootstrap, dlq_ref, isolation)) >= produced.bad, 60,
                   "reference DLQ", job=reference)
        wait_for_branch(branch_ref, reference, None, "every anomaly and model update (uninterrupted)")
        time.sleep(5)
        report.points_uninterrupted = count_points_v1(url, db_ref, "ecg_anonymized")
    finally:
        reference.stop()

    chaos_prints, ref_prints = fingerprints(url, db_chaos), fingerprints(url, db_ref)
    report.fingerprints_compared = len(ref_prints)
    report.fingerprints_differing = sum(
        1 for key in chaos_prints.keys() | ref_prints.keys() if chaos_prints.get(key) != ref_prints.get(key)
    )
    chaos_dlq = _dead_letters(stack.kafka_bootstrap, dlq_chaos, isolation)
    ref_dlq = _dead_letters(stack.kafka_bootstrap, dlq_ref, isolation)
    report.dead_letters_distinct = len(chaos_dlq)
    report.dead_letters_uninterrupted = sum(ref_dlq.values())
    report.dead_letters_replayed = sum(count - 1 for count in chaos_dlq.values())
    # A replay is exact when its bytes equal a message of the uninterrupted run (same position, reason, raw).
    report.dead_letters_not_exact_replays = sum(1 for value in chaos_dlq if value not in ref_dlq)
    compared = compare_branch_outputs(stack.kafka_bootstrap, branch_chaos, branch_ref, isolation)
    report.branch = replace(compared, anomalies_model=report.branch.anomalies_model,
                            updates_model=report.branch.updates_model)
    report.seconds = time.monotonic() - started
    return report
