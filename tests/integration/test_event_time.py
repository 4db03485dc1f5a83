"""Event time that never stalls, on the real stack (Kafka -> job in a mini cluster -> influxd).

Hostile stream shapes, each with exact points (or exact accounting for late frames) and a bounded wait:

- partitions that never get data (two of four), no end-of-stream marker: windows close anyway once the
  quiet partitions count as idle;
- wards that go silent (and devices that come and go) while another ward keeps streaming: every
  buffered frame is published or suppressed, nothing stays pending;
- a burst after an idle stretch, one hour later in event time;
- a quiet stretch in the middle of federated rounds: the rounds after it still publish their global
  updates (the model stream read back must never stand in for the idle data's event time);
- one device far behind the others (out of order by far more than the bound): its frames are late,
  dead-lettered with reason "late" and counted, everything else exact.

- a restore with nothing left to read: the source had read the whole backlog before the checkpoint,
  the windows in the restored state still fire (Flink does not checkpoint watermarks; the job's
  event-time progress operator does).

Random kills -9 during the catch-up of a pre-produced backlog are in tests/integration/test_chaos_resume.py
(`run_chaos(..., backlog=True)`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from connectors.checkpoints import latest_checkpoint
from devstack.processes import free_port
from devstack.simulator import SimConfig, SimMessage, end_of_stream_messages, generate_messages, produce
from testkit.flink_rest import job_metrics, source_drained, stall_report
from testkit.jobs import JobProcess, wait_until
from testkit.kafka_topics import last_offsets_of
from testkit.reference import expected_branch, expected_output
from tests.integration.support import IsolatedRun, accounting_errors

START_MS = 1_763_812_800_000  # window-aligned
K = 3
BOUND_MS = 2_000  # MAX_OUT_OF_ORDERNESS_SECONDS default
IDLE_SECONDS = 3  # short idleness for the tests; the default (10 s) is documented in the README
# Web UI port of the anonymization job -> that of the cardio branch's own job (flink_jobs/cardio_job.py).
CARDIO_PORTS: dict[int, int] = {}


def on_partitions(messages: Iterable[SimMessage], partitions: tuple[int, ...]) -> list[SimMessage]:
    """Route each device to one of `partitions` (control messages keep theirs)."""
    routed = []
    for message in messages:
        if message.kind == "control":
            routed.append(message)
            continue
        device = message.key or b""
        routed.append(dataclasses.replace(message, partition=partitions[sum(device) % len(partitions)]))
    return routed


def start_job(run: IsolatedRun, tmp_path: Path, *extra: str, idle_seconds: float = IDLE_SECONDS,
              log_name: str = "job.log") -> tuple[JobProcess, int]:
    port, cardio_port = free_port(), free_port()
    CARDIO_PORTS[port] = cardio_port
    job = JobProcess(
        run.job_args("--k-anonymity", str(K), "--idle-partition-timeout-seconds", str(idle_seconds),
                     "--web-ui-port", str(port), "--cardio-web-ui-port", str(cardio_port), *extra),
        tmp_path / log_name,
    )
    return job, port


def branch_metrics(port: int) -> dict[str, float]:
    """The `ecg.*` metrics of the cardio branch's job started with the job behind `port`."""
    return job_metrics(CARDIO_PORTS[port])


def wait_for_drain_and_a_checkpoint(run: IsolatedRun, port: int, last_offsets: dict[int, int],
                                    job: JobProcess) -> None:
    """Until the job's source has read every partition to the end and a checkpoint completed after that."""
    wait_until(lambda: source_drained(port, last_offsets), 120, "the source at the end", job=job, poll=0.5)
    seen = latest_checkpoint(run.checkpoint_dir)
    wait_until(lambda: latest_checkpoint(run.checkpoint_dir) != seen, 30, "a checkpoint after the drain", job=job)


def wait_for_branch_drain_and_a_checkpoint(run: IsolatedRun, port: int, last_offsets: dict[int, int],
                                           job: JobProcess) -> None:
    """The same for the cardio branch's own job (checkpoints under CHECKPOINT_DIR/cardio)."""
    cardio_port, cardio_dir = CARDIO_PORTS[port], run.checkpoint_dir / "cardio"
    wait_until(lambda: source_drained(cardio_port, last_offsets), 120, "the branch's source at the end", job=job,
               poll=0.5)
    seen = latest_checkpoint(cardio_dir)
    wait_until(lambda: latest_checkpoint(cardio_dir) != seen, 30, "a branch checkpoint after the drain", job=job)


def assert_stays(run: IsolatedRun, points: int, seconds: float = 4.0) -> None:
    time.sleep(seconds)  # more checkpoint intervals and idle timeouts: nothing more may arrive
    assert run.points() == points


def assert_all_accounted(port: int, job: JobProcess, *, late: int = 0) -> dict[str, float]:
    metrics: dict[str, float] = {}

    def settled() -> bool:
        metrics.clear()
        metrics.update(job_metrics(port))
        return not accounting_errors(metrics) and metrics.get("frames_pending") == 0 and (
            metrics.get("late_records", 0) == late)

    try:
        wait_until(settled, 60, "accounting invariant with nothing pending", job=job)
    except AssertionError as error:
        raise AssertionError(f"{error}: {accounting_errors(metrics)} {metrics}") from None
    return metrics


def test_partitions_without_data_do_not_hold_back_event_time(isolated_run: IsolatedRun, tmp_path: Path) -> None:
    """Six devices on two of four partitions, no end-of-stream: the closed windows are published within
    the idle timeout; the end-of-stream marker later closes the rest."""
    run = isolated_run
    data = on_partitions(generate_messages(SimConfig(patients=6, duration_s=30, start_ms=START_MS, sites=1, seed=21)),
                         (0, 1))
    assert {m.partition for m in data} == {0, 1}
    last_ts = max(m.timestamp_ms for m in data)
    closed = expected_output(data, k=K, watermark_ms=last_ts - BOUND_MS - 1)
    everything = expected_output(data, k=K)
    assert 0 < closed.points < everything.points

    produce(data, run.stack.kafka_bootstrap, run.raw_topic)
    job, port = start_job(run, tmp_path)
    try:
        wait_until(lambda: run.points() >= closed.points, 90, f"{closed.points} points of the closed windows",
                   job=job)
        assert_stays(run, closed.points, IDLE_SECONDS + 2)

        produce(end_of_stream_messages(4), run.stack.kafka_bootstrap, run.raw_topic)
        wait_until(lambda: run.points() >= everything.points, 60, "all points after end-of-stream", job=job)
        assert_stays(run, everything.points)
        assert run.points_by_level() == everything.points_by_level
        metrics = assert_all_accounted(port, job)
        assert metrics["frames_valid"] == len(data)
    finally:
        job.stop()


def test_wards_and_devices_that_come_and_go_leave_nothing_pending(isolated_run: IsolatedRun,
                                                                 tmp_path: Path) -> None:
    """ward-1 streams 40 s; ward-2 only from 10 s to 20 s and then goes silent for good; devices of
    ward-1 join and leave. Every frame ends up published or suppressed; no buffer waits for a window
    that never comes."""
    run = isolated_run
    base = list(generate_messages(SimConfig(patients=10, duration_s=40, start_ms=START_MS, sites=2, seed=22)))
    wards: dict[bytes, str] = {}
    for message in base:
        if message.key and message.key not in wards:
            wards[message.key] = json.loads(message.value)["site"]
    devices = sorted(wards)

    def keep(message: SimMessage) -> bool:
        second = (message.timestamp_ms - START_MS) // 1000
        if wards[message.key or b""] == "ward-2":
            return 10 <= second < 20  # the whole ward comes and goes
        position = devices.index(message.key or b"")
        return (position % 3 != 1 or second < 25) and (position % 3 != 2 or second >= 7)  # churn

    data = [m for m in base if keep(m)]
    messages = data + end_of_stream_messages(4)
    expected = expected_output(messages, k=K)
    assert {"ward-1", "ward-2"} == set(wards.values())

    produce(messages, run.stack.kafka_bootstrap, run.raw_topic)
    job, port = start_job(run, tmp_path)
    try:
        wait_until(lambda: run.points() >= expected.points, 120, f"{expected.points} points", job=job)
        assert_stays(run, expected.points)
        assert run.points_by_level() == expected.points_by_level
        assert_all_accounted(port, job)
    finally:
        job.stop()


def test_partitions_with_unread_records_never_count_as_idle(isolated_run: IsolatedRun, tmp_path: Path) -> None:
    """A backlog on four partitions read at 60 records/s (a throttled view; a loaded machine does the same)
    with a 1 s idle timeout: the reader spends seconds on one partition's poll while the others, with records
    left, wait longer than the timeout and the source takes them for idle. Event time must wait for them (the
    broker says they have records unread): exact points and no late frame. Before that, frames came late."""
    run = isolated_run
    data = list(generate_messages(SimConfig(patients=8, duration_s=30, start_ms=START_MS, sites=1, seed=25)))
    messages = on_partitions(data, (0, 1, 2, 3)) + end_of_stream_messages(4)
    expected = expected_output(messages, k=K)
    produce(messages, run.stack.kafka_bootstrap, run.raw_topic)
    job, port = start_job(run, tmp_path, "--max-records-per-second", "60", "--cardio-branch", "false",
                          idle_seconds=1)
    try:
        wait_until(lambda: run.points() >= expected.points, 120, f"{expected.points} points", job=job)
        assert_stays(run, expected.points)
        assert run.points_by_level() == expected.points_by_level
        metrics = assert_all_accounted(port, job, late=0)
        assert metrics["frames_valid"] == len(data)
    finally:
        job.stop()
    held = job.flink_log_text().count("holds event time until it delivers or the broker confirms it")
    assert held > 0, "the shape did not make the source take a partition with records for idle"


@pytest.mark.slow
def test_throttled_reader_takes_turns_on_partitions_of_large_producer_batches(isolated_run: IsolatedRun,
                                                                             tmp_path: Path) -> None:
    """One throttled reader (43 records/s, as a view throttled to R/4 in benchmarks/view_throttle.py) owns four
    partitions whose records came in the simulator's producer batches of ~256 KB (~100 frames). The broker returns
    a batch larger than max.partition.fetch.bytes only to the first non-empty partition of a fetch: while the
    source lowered that limit to ~1 KB per record/s (43 KB), two partitions stayed at the end of their first batch
    until the other two were read to their end (for minutes in the benchmark, their frames then late: issue 23).
    Every partition must take its turns: when the first partition is read to its end, every other one is read past
    half of its records; and the run ends exact with no late frame."""
    from testkit.flink_rest import source_offsets

    run = isolated_run
    data = list(generate_messages(SimConfig(patients=40, duration_s=50, start_ms=START_MS, sites=2, seed=27)))
    messages = on_partitions(data, (0, 1, 2, 3)) + end_of_stream_messages(4)
    expected = expected_output(messages, k=K)
    produce(messages, run.stack.kafka_bootstrap, run.raw_topic)  # batch.size 256 KB, linger 20 ms
    last_offsets = last_offsets_of(run.stack.kafka_bootstrap, run.raw_topic)
    assert min(last_offsets.values()) > 400, last_offsets  # ~1.2 MB each: several batches per partition
    job, port = start_job(run, tmp_path, "--max-records-per-second", "43", "--parallelism", "1",
                          "--checkpoint-interval-seconds", "5", "--cardio-branch", "false", idle_seconds=10)
    at_first_end: dict[int, int] = {}  # every partition's offset when the first one was read to its end

    def progress() -> bool:
        try:
            offsets = source_offsets(port)
        except OSError:
            return False
        ended = [p for p, last in last_offsets.items() if offsets.get(p, -1) >= last]
        if ended and not at_first_end:
            at_first_end.update({p: offsets.get(p, -1) for p in last_offsets})
        return len(ended) == len(last_offsets)

    try:
        wait_until(progress, 180, "every partition read to its end", job=job, poll=0.5)
        behind = {p: offset for p, offset in at_first_end.items() if offset < last_offsets[p] / 2}
        assert not behind, (f"partitions left behind while another was read to its end: {behind} "
                            f"(offsets then {at_first_end}, ends {last_offsets})")
        wait_until(lambda: run.points() >= expected.points, 60, f"{expected.points} points", job=job)
        assert_stays(run, expected.points)
        assert run.points_by_level() == expected.points_by_level
        metrics = assert_all_accounted(port, job, late=0)
        assert metrics["frames_valid"] == len(data)
    finally:
        job.stop()


def test_burst_after_an_idle_hour(isolated_run: IsolatedRun, tmp_path: Path) -> None:
    """20 s of data, then nothing for longer than the idle timeout, then a burst one hour later in event
    time: both parts are published exactly, the quiet stretch closes what it can."""
    run = isolated_run
    first = list(generate_messages(SimConfig(patients=6, duration_s=20, start_ms=START_MS, sites=1, seed=23)))
    hour_later = START_MS + 3_600_000
    burst = list(generate_messages(SimConfig(patients=6, duration_s=20, start_ms=hour_later, sites=1, seed=23)))
    first_closed = expected_output(first, k=K, watermark_ms=max(m.timestamp_ms for m in first) - BOUND_MS - 1)
    everything = expected_output(first + burst, k=K)

    produce(first, run.stack.kafka_bootstrap, run.raw_topic)
    job, port = start_job(run, tmp_path)
    try:
        wait_until(lambda: run.points() >= first_closed.points, 90, "points before the idle stretch", job=job)
        assert_stays(run, first_closed.points, IDLE_SECONDS + 2)
        produce(burst + end_of_stream_messages(4), run.stack.kafka_bootstrap, run.raw_topic)
        wait_until(lambda: run.points() >= everything.points, 90, "points of the burst", job=job)
        assert_stays(run, everything.points)
        assert run.points_by_level() == everything.points_by_level
        assert_all_accounted(port, job)
    finally:
        job.stop()


def test_federated_rounds_go_on_after_a_quiet_stretch(isolated_run: IsolatedRun, tmp_path: Path) -> None:
    """35 s of data, then nothing for longer than the idle timeout (every input partition idle), then
    the rest of the same devices' stream: anomalies and model updates equal the reference model's, so
    the rounds after the quiet stretch are aggregated and published. (Before the model stream was marked
    idle, its "no constraint" watermark became the detector's event time while the data was idle, the
    aggregator took every round for closed and never published a global update again.)"""
    run = isolated_run
    messages = list(generate_messages(SimConfig(patients=8, duration_s=80, start_ms=START_MS, sites=1, seed=25)))
    before = [m for m in messages if m.timestamp_ms < START_MS + 35_000]
    after = [m for m in messages if m.timestamp_ms >= START_MS + 35_000] + end_of_stream_messages(4)
    rounds = ("--model-update-seconds", "20", "--model-grace-seconds", "5")
    model = expected_branch(messages, run.job_args("--k-anonymity", str(K), *rounds))
    expected_updates = {u.update_id: json.loads(u.to_json()) for u in [*model.local_updates, *model.global_updates]}
    expected_anomalies = {e.event_id: json.loads(e.to_json()) for e in model.anomalies}
    assert sum(g.ts_ms > START_MS + 35_000 for g in model.global_updates) >= 2, "rounds after the quiet stretch"
    expected = expected_output(messages + end_of_stream_messages(4), k=K)

    produce(before, run.stack.kafka_bootstrap, run.raw_topic)
    job, port = start_job(run, tmp_path, *rounds)
    try:
        closed = expected_output(before, k=K, watermark_ms=max(m.timestamp_ms for m in before) - BOUND_MS - 1)
        wait_until(lambda: run.points() >= closed.points, 90, "points before the quiet stretch", job=job)
        time.sleep(IDLE_SECONDS + 3)  # every partition idle: the detector's input is idle
        produce(after, run.stack.kafka_bootstrap, run.raw_topic)
        wait_until(lambda: run.points() >= expected.points, 90, "all points", job=job)
        try:
            wait_until(lambda: {u["update_id"] for u in run.model_updates()} >= expected_updates.keys(), 90,
                       "every model update of the reference model", job=job, poll=2.0)
        except AssertionError as error:
            published = {u["update_id"] for u in run.model_updates()}
            missing = sorted((u["kind"], u["round"]) for i, u in expected_updates.items() if i not in published)
            raise AssertionError(f"{error}; missing (kind, round): {missing}; metrics {branch_metrics(port)}") from None
        time.sleep(3)
        assert {u["update_id"]: u for u in run.model_updates()} == expected_updates
        assert {a["event_id"]: a for a in run.anomalies()} == expected_anomalies
        assert run.points_by_level() == expected.points_by_level
        branch = wait_until(lambda: (lambda m: m if "model_updates_late" in m else None)(branch_metrics(port)), 30,
                            "the branch job's metrics (REST fetches them every few seconds)", job=job)
        assert branch["model_updates_late"] == 0
        assert branch["model_round_ticks"] > 0, "round ticks reach the aggregator"
    finally:
        job.stop()


def test_device_far_behind_the_others_is_late_and_accounted(isolated_run: IsolatedRun, tmp_path: Path) -> None:
    """Device dev-0001's frames arrive after everybody else's, 10-30 s of event time behind them:
    every one of them is behind the watermark, goes to the dead-letter topic as `late` and is counted;
    the others' points are exact."""
    run = isolated_run
    messages = list(generate_messages(SimConfig(patients=7, duration_s=30, start_ms=START_MS, sites=1, seed=24)))
    laggard = b"dev-0001"
    others = [m for m in messages if m.key != laggard]
    watermark = max(m.timestamp_ms for m in others) - BOUND_MS - 1
    # Its frames of the windows that the others' event time has already closed (the first 20 s).
    behind = [m for m in messages if m.key == laggard and m.timestamp_ms - m.timestamp_ms % 5000 + 4999 <= watermark]
    expected = expected_output(others + end_of_stream_messages(4), k=K)

    produce(on_partitions(others, (0, 1, 2, 3)), run.stack.kafka_bootstrap, run.raw_topic)
    job, port = start_job(run, tmp_path)
    try:
        closed = expected_output(others, k=K, watermark_ms=watermark)
        wait_until(lambda: run.points() >= closed.points, 90, "the others' points", job=job)
        produce(behind + end_of_stream_messages(4), run.stack.kafka_bootstrap, run.raw_topic)
        wait_until(lambda: run.points() >= expected.points, 60, "all points", job=job)
        assert_stays(run, expected.points)
        assert_all_accounted(port, job, late=len(behind))
        late = [json.loads(r.value) for r in run.dead_letters()]
        assert len(late) == len(behind) and {entry["reason"] for entry in late} == {"late"}
        assert sorted(entry["offset"] for entry in late) == sorted(set(entry["offset"] for entry in late))
    finally:
        job.stop()


# Back in the default run (issue 19): in one full run it stalled (RUNNING, checkpoints every 2 s, no window for 100 s);
# the only path that moves event time here is the source reporting idle. EventTimeProgress now applies the source's
# idleness rule itself when that report has not come 5 s after the timeout (and logs that it did).
def test_restore_with_nothing_left_to_read_still_fires_the_restored_windows(isolated_run: IsolatedRun,
                                                                             tmp_path: Path) -> None:
    """A backlog where partition 3 stops after 10 s while the others run to 40 s, no end-of-stream. The
    job reads everything; partition 3 holds event time back until it counts as idle (30 s here), so the
    checkpoint taken meanwhile holds unpublished windows and source offsets at the end of every partition.
    Kill -9 then, resume: no record will ever arrive again, yet every window the uninterrupted job
    publishes (all but the last, still open one) must come out, exactly."""
    run = isolated_run
    messages = list(generate_messages(SimConfig(patients=8, duration_s=40, start_ms=START_MS, sites=1, seed=25)))
    devices = sorted({m.key for m in messages if m.key})
    short = set(devices[:2])
    data = [dataclasses.replace(m, partition=3) for m in messages
            if m.key in short and m.timestamp_ms < START_MS + 10_000]
    data += on_partitions((m for m in messages if m.key not in short), (0, 1, 2))
    last_ts = max(m.timestamp_ms for m in data)
    expected = expected_output(data, k=K, watermark_ms=last_ts - BOUND_MS - 1)
    stalled = expected_output(data, k=K, watermark_ms=START_MS + 10_000 - BOUND_MS - 1)
    assert stalled.points < expected.points

    produce(data, run.stack.kafka_bootstrap, run.raw_topic)
    last_offsets = last_offsets_of(run.stack.kafka_bootstrap, run.raw_topic)
    assert set(last_offsets) == {0, 1, 2, 3}
    first, port = start_job(run, tmp_path, idle_seconds=30, log_name="job-1.log")
    second: JobProcess | None = None
    try:
        wait_for_drain_and_a_checkpoint(run, port, last_offsets, first)
        first.kill_hard()
        assert run.points() <= stalled.points, "partition 3 must still hold event time back at the kill"

        # Nothing is left to read: the restored job's idle timeout only sets when its event time moves on (as in
        # the test below); 30 s again only made the test longer (170 s vs 124 s back to back, loaded machine).
        second, port = start_job(run, tmp_path, "--from-checkpoint", "latest", idle_seconds=10,
                                 log_name="job-2.log")
        try:
            wait_until(lambda: run.points() >= expected.points, 120, f"{expected.points} points after the restore",
                       job=second)
        except AssertionError as error:
            raise AssertionError(f"{error}; {job_metrics(port)}; {stall_report(port)}") from None
        assert_stays(run, expected.points)
        assert run.points_by_level() == expected.points_by_level
        metrics = job_metrics(port)
        assert metrics.get("records_in", 0) == 0, "the restored source had nothing left to read"
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_devices_waiting_for_their_prior_at_a_restore_are_released(isolated_run: IsolatedRun, tmp_path: Path) -> None:
    """Partition 3 gets no data, so event time stays at its start until it counts as idle (30 s here):
    the global round the devices wait for cannot close, and the checkpoint taken after the source has
    read everything holds every device waiting for its prior, all its frames buffered. Kill -9 then,
    resume: no frame will ever arrive again, and the poll timers PyFlink had not yet handed to the JVM
    are not in the checkpoint, so only the prior notices (federated.priors) can release the devices
    once the round is published, and only a round tick (connectors/java RoundTicks) re-arms a round
    timer that the aggregator registered in the bundle just before the checkpoint (missing in 1 of 8
    runs before the ticks). Every local model update of the reference model must come (this failed
    before the notices: not one came)."""
    run = isolated_run
    messages = on_partitions(generate_messages(SimConfig(patients=8, duration_s=80, start_ms=START_MS, sites=1,
                                                         seed=26)), (0, 1, 2))
    rounds = ("--model-update-seconds", "20", "--model-grace-seconds", "5")
    model = expected_branch(messages, run.job_args("--k-anonymity", str(K), *rounds))
    expected_locals = {u.update_id for u in model.local_updates}
    assert len(expected_locals) >= 8

    produce(messages, run.stack.kafka_bootstrap, run.raw_topic)
    last_offsets = last_offsets_of(run.stack.kafka_bootstrap, run.raw_topic)
    first, port = start_job(run, tmp_path, *rounds, idle_seconds=30, log_name="job-1.log")
    second: JobProcess | None = None
    try:
        wait_for_drain_and_a_checkpoint(run, port, last_offsets, first)
        wait_for_branch_drain_and_a_checkpoint(run, port, last_offsets, first)
        waiting = branch_metrics(port).get("devices_waiting_for_prior", 0)
        first.kill_hard()
        assert not [u for u in run.model_updates() if u["kind"] == "local"], "devices must still wait at the kill"

        # Nothing is left to read: a short idle timeout here only brings the restored event time sooner.
        # The budget covers both jobs' start-up: on a loaded machine the restored cardio job took 150 s to
        # reach its first watermark (failed once that way at 150 s, its last log line 8 s after that watermark).
        second, port = start_job(run, tmp_path, *rounds, "--from-checkpoint", "latest", idle_seconds=10,
                                 log_name="job-2.log")
        try:
            wait_until(lambda: {u["update_id"] for u in run.model_updates() if u["kind"] == "local"}
                       >= expected_locals, 240, "every local update after the restore", job=second, poll=2.0)
        except AssertionError as error:
            seen = [(u["kind"], u.get("round"), u.get("update_id")) for u in run.model_updates()]
            raise AssertionError(f"{error} (waiting at the kill: {waiting}); {branch_metrics(port)}; "
                                 f"{stall_report(CARDIO_PORTS[port])}; expected {sorted(expected_locals)}; "
                                 f"model topic {seen}") from None
    finally:
        first.stop()
        if second is not None:
            second.stop()
