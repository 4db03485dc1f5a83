"""Kafka broker outages under the running job (issue 20, item 4).

Each test has its own broker (not the session's: killing that one would disturb every other test) and
checks, with exact expected output and bounded waits: the job recovers on its own (no operator action:
the source reconnects, or the restart strategy restarts it from its last checkpoint); InfluxDB ends with
exactly the reference model's points; no reader sees a class below k while the test samples during the
outage and the recovery; the dead-letter topic holds exactly the injected bad messages (at-least-once:
set equality on the source position, a replayed letter an exact copy).

- ``test_broker_killed_mid_backlog``: kill -9 for 30 s and for 120 s while the job reads a pre-produced
  backlog, restart on the same log directory. The job's source is throttled (``MAX_RECORDS_PER_SECOND``,
  60 records/s) so that most of the backlog is still in Kafka at the kill: unthrottled, the job had read all of
  it before the broker came back, and the run showed nothing about reading after an outage. The test asserts
  that at least a quarter of the records were left to read when the broker came back: the source's read
  offsets (REST ``currentOffset`` per partition, the highest seen from the kill on; the broker served nothing
  meanwhile, so what was unread then is read afterwards);
- ``test_broker_killed_during_live_stream``: kill -9 for 30 s and for 120 s while the simulator produces in
  real time; its producer (``devstack.simulator.make_producer``: unbounded retries within a 300 s delivery
  timeout, idempotent, so order kept and nothing doubled) holds the frames and sends them when the broker is
  back: a device loses nothing, and the expected output is that of every frame. With the client's 120 s the
  120 s kill lost every frame from the kill on (``benchmarks/producer_outage.py``, docs/benchmarks.md);
- ``test_broker_refusing_connections_mid_backlog``: the same throttled backlog; the broker stays up, but its
  port refuses connections for 60 s: a TCP proxy in front of it (``testkit.tcp_proxy``; the broker advertises the
  proxy's port, so no client bypasses it) closes its listening socket and resets every open connection.
  A proxy rather than iptables REJECT: it needs no root and no firewall tool (this machine has neither
  iptables nor nft), and it touches this test's port only, never the other tests' brokers.

What the 120 s outage showed first, and what was wrong:

1. A reader saw, during the outage, one level-8 class of window 1763812885000 with 4 pseudonyms (k = 5).
   Reproduced (another window, 1 pseudonym, 3.5 s after the kill, while the job was still writing what it
   had read) and gone in the next query 0.1 s later. Cause: InfluxDB applies one write request series by
   series with no read isolation; ``benchmarks/influx_read_isolation.py`` shows it without any job: whole
   5-pseudonym classes written one request at a time, a reader saw part of a class in a few percent of its
   queries. The sink is not at fault (whole classes per request) and the checker is right about what a
   reader saw; the guarantee is per request (README, docs/privacy.md section 6). The tests therefore
   check every sighting again 0.5 s later (``BelowKSampler``): a class published below k stays; a race
   does not, and is printed.
2. The 120 s run did not end exact: 901,080 points for 838,080 expected. Flink's Kafka enumerator failed
   the job ~100 s into the outage (partition discovery timed out); the job restored from its last
   checkpoint with the broker still down; its source read nothing and reported idle, and
   connectors/java/EventTimeProgress took "all partitions idle" for "nothing more to read" and moved event
   time to the newest partition's watermark (the end-of-stream marker's): every restored window fired at
   once with part of its frames (levels and classes other than the uninterrupted run's, written as other
   series), and their other frames were to come late. Fixed there: the all-idle step now waits until the
   broker confirms that every partition is read to its end (``InputEndCheck``); meanwhile event time
   stays where it is.
3. With that, the points were exact but 95 dead letters came for 72 injected: when the broker was back,
   Flink's source still had every partition marked idle, the first partition to deliver set event time
   alone, and window 65 s fired with part of its frames (23 frames dead-lettered as late; its points
   happened to be complete from before the failover). Fixed in EventTimeProgress too: after an idleness
   the broker did not confirm, each partition holds event time at its own watermark until it delivers
   again or the broker confirms it read to its end.

Measured on the shared 2-core machine (load average ~25, other engineers' jobs running), 2026-12-05:

- 120 s kill mid-backlog: 1 job restart in every run (the enumerator's failover ~100 s in), the
  restored job held at its checkpoint's event time through the rest of the outage. Before the second
  fix: points exact, 95 dead letters for 72 injected (failed). After it: passed 2 of 2, 72 for 72; in
  both runs the last checkpoint before the failover had read the whole backlog, so every point was
  written before the broker came back (no "first new point" to time).
- 30 s kill mid-backlog (the existing case, now with the 30 s idle timeout): passed 1 of 1, 0
  restarts, 72 for 72, every point written before the broker came back.
- 60 s of refused connections: passed 2 of 2 (the first with only the first fix in the jar), 0
  restarts, 72 for 72; both times the job had read the backlog before the port closed (every point
  written during the refusal).
- 30 s kill during a live stream (20 devices, 100 s): passed 2 of 2, 0 restarts, the devices lost
  nothing, 60 dead letters for 60 injected; broker back -> first new point 45.4 s and 52.3 s (the
  broker's start, the producers' and the source's reconnect back-off, then the buffered frames). A
  first version started the stream with the job and failed before the outage: the job took 135 s to
  its first point, 16 s of stream were left; the stream now starts once every task runs. The broker
  confirmed "read to its end" ~8 s after it was back, before the devices had re-sent what they
  buffered: event time moved to the newest partition's watermark then, harmlessly here (every
  partition had stopped at about the same event time); a device whose buffered frames lag the others'
  by more than the 2 s bound would have them dead-lettered as late, as after any quiet stretch.
- The sampler saw no class below k that stayed in any run; one race, in the third 120 s run: window
  1763812885000 level 8 with 2 pseudonyms, gone 0.5 s later (every point exact at the end).

Unthrottled, the mid-backlog runs above had read the whole backlog into the pipeline within seconds
(PyFlink bundles of up to 100,000 records) before the broker came back. Since then (issue 20, item 4, the
open parts) their source is throttled, and the live stream has a 120 s kill too. Measured on the same
shared machine (load average 23-42), 2026-12-05:

- 120 s kill during a live stream (20 devices, 190 s, idle timeout 30 s): passed 2 of 2. First: 173 s of
  stream left at the kill, 35,640 of 1,326,960 points; the devices lost nothing; 1 job restart (the
  enumerator, ~100 s in); broker back -> first new point 42.6 s; 114 dead letters for 114 injected; 116 k
  samples, no race. Second: 180 s left, 21,600 points at the kill; nothing lost; 1 restart; first new point
  56.5 s after; 114 for 114; 118 k samples, no race.
- 30 s kill mid-backlog, throttled: with the idle timeout at 30 s, failed: windows 5..9 (event time
  20-45 s) fired just after the broker was back with 3 and 6 patients of 9 and 11 per site, 734,400 of
  838,080 points 420 s later; at 60 s the same with windows 5..15 (stopped before the bound). Partitions
  without a record for longer than the timeout (outage, broker start, the throttled reader's next turn at
  them) were taken for idle while the others delivered again: the open EventTimeProgress fix. At 330 s
  (outage + 300 s, the default of these runs now): passed 2 of 2; 835 and 858 of 2,404 records read when
  the broker was back, 1,569 and 1,546 after; 0 restarts; first new point 6.1 and 5.8 s after; 72 dead
  letters for 72.
- 120 s kill mid-backlog, throttled (idle timeout 420 s): passed 2 of 2; 835 and 777 read when back, 1,569
  and 1,627 after; 1 restart each (~100 s in); first new point 8.1 and 26.6 s after; dead letters 72 and 75
  (3 exact replays) for 72 positions; one race in the second run (window 1763812825000 level 8 with 1
  pseudonym, gone 0.5 s later; every point exact at the end).
- 60 s of refused connections, throttled (idle timeout 360 s): passed 2 of 2; 878 and 783 read when the port
  opened again, 1,526 and 1,621 after; 0 restarts; first new point 8.8 and 7.9 s after; 72 for 72.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devstack.influx_queries import create_database_v1
from devstack.kafka_admin import create_topics
from devstack.processes import free_port
from devstack.simulator import ProduceReport, SimConfig, SimMessage, generate_messages, produce
from devstack.stack import LocalStack
from testkit.flink_rest import MetricHighWater, job_restart_lines, rest_get, running_job_id
from testkit.jobs import JobProcess, wait_until
from testkit.kafka_topics import last_offsets_of
from testkit.reference import ExpectedOutput, expected_output
from testkit.tcp_proxy import TcpProxy
from tests.integration.support import BelowKSampler, IsolatedRun, visible_classes_below_k

START_MS = 1_763_812_800_000
K = 5
# A partition idle for 10 s (the default) is left out of event time. On the shared 2-core machine (load
# average ~25) a 120 s attempt had the other partitions' first fetch wait longer than that at the start of
# the backlog, before any outage: windows 0..75 s fired with 4 of 20 patients, the rest late. That is a
# load effect of its own (README "Event time"), not what these tests are about, so they give 30 s.
# The throttled backlog runs give 300 s more than the outage: a partition of a throttled source goes without
# records for the outage, the broker's start and the wait for the reader's next turn at it, and once past the
# timeout it is taken for idle although it has unread records, so event time moves on without them (30 s kill:
# at a 30 s timeout windows 5..9, at a 60 s timeout windows 5..15 fired with 3 and 6 of 9 and 11 patients, the
# rest late; at 30 s 734,400 of 838,080 points). The end-of-stream markers close the last windows, so a long timeout
# costs these runs nothing. Both go once connectors/java/EventTimeProgress leaves a partition out only when the
# broker confirms it has nothing unread: ECG_OUTAGE_IDLE_TIMEOUT_SECONDS sets the timeout of every run (10,
# the default, then).
def _idle_timeout_s(outage_s: int | None = None) -> str:
    default = 30 if outage_s is None else outage_s + 300
    return os.environ.get("ECG_OUTAGE_IDLE_TIMEOUT_SECONDS", str(default))


def _job_flags(idle_timeout_s: str) -> tuple[str, ...]:
    return ("--k-anonymity", str(K), "--restart-attempts", "20", "--idle-partition-timeout-seconds", idle_timeout_s)


# The backlog runs throttle the job's source (MAX_RECORDS_PER_SECOND) so that most of the backlog is still in
# Kafka when the broker goes: unthrottled, the job had read all of it before the broker came back. 60 records/s
# reads the ~2,500 records in ~40 s; the first points come after ~10 s of event time (~200 records).
BACKLOG_RECORDS_PER_S = 60


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[LocalStack]:
    """Kafka and influxd of this test's own."""
    stack = LocalStack(tmp_path / "stack")
    stack.start(kafka=True, influx_v1=True, victoria_metrics=False)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def proxied_stack(tmp_path: Path) -> Iterator[tuple[LocalStack, TcpProxy]]:
    """Kafka behind a TCP proxy (the broker advertises the proxy's port) and influxd, of this test's own."""
    broker_port = free_port()
    proxy = TcpProxy(broker_port).accept()
    stack = LocalStack(tmp_path / "stack", ports={"kafka": broker_port, "kafka_advertised": proxy.port})
    try:
        stack.start(kafka=True, influx_v1=True, victoria_metrics=False)
        yield stack, proxy
    finally:
        stack.stop()
        proxy.close()


def _isolated_run(stack: LocalStack, tmp_path: Path) -> IsolatedRun:
    create_topics(stack.kafka_bootstrap, {"ecg-raw.outage": 4, "ecg-dlq.outage": 1})
    create_database_v1(stack.influx_v1_url, "outage")
    return IsolatedRun(
        stack, "ecg-raw.outage", "ecg-dlq.outage", "outage", tmp_path / "checkpoints", "ecg-anomalies",
        "ecg-model-updates",
    )


def _backlog() -> list[SimMessage]:
    return list(generate_messages(SimConfig(
        patients=20, duration_s=120, start_ms=START_MS, sites=2, bad_fraction=0.03, end_of_stream=True,
        partitions=4, seed=23,
    )))  # fmt: skip


def _recover_and_check(run: IsolatedRun, job: JobProcess, messages: list[SimMessage], expected: ExpectedOutput,
                       sampler: BelowKSampler, back_at: float, points_at_back: int) -> str:
    """After the broker is back: bounded waits for every point and dead letter, then the exact checks.
    Returns the figures as one line."""
    bad = [m for m in messages if m.kind == "bad"]
    first_new_point_s = None
    deadline = time.monotonic() + 420
    while run.points() < expected.points:
        assert time.monotonic() < deadline, f"{expected.points} points not reached in 420 s: {run.points()}"
        assert job.alive(), "the job must recover on its own:\n" + job.log_text()[-3000:]
        if first_new_point_s is None and run.points() > points_at_back:
            first_new_point_s = time.monotonic() - back_at
        sampler.sample()
        time.sleep(1)
    wait_until(lambda: len(run.dead_letters()) >= len(bad), 120, "dead letters", job=job)
    time.sleep(5)  # more checkpoint intervals: nothing more may arrive

    assert sampler.persistent == [], "a reader saw a class below k that stayed"
    assert visible_classes_below_k(run.stack.influx_v1_url, run.db, K) == []
    assert run.points() == expected.points
    assert run.points_by_level() == expected.points_by_level
    assert run.points(where='"imputed" = true') == expected.imputed_points

    letters = [(r.value, json.loads(r.value)) for r in run.dead_letters()]
    by_position = {(entry["partition"], entry["offset"]): entry for _, entry in letters}
    assert len(by_position) == len(bad), "every injected bad message reaches the DLQ, and nothing else"
    assert Counter(e["reason"] for e in by_position.values()) == Counter(m.expected_reason for m in bad)
    # A replayed dead letter is an exact copy (deduplicate on topic/partition/offset).
    assert all(json.loads(value) == by_position[(e["partition"], e["offset"])] for value, e in letters)
    restarts = sum("switched from state RUNNING to RESTARTING" in line and "ecg-anonymization (" in line
                   for line in job_restart_lines(job.flink_log_text()))
    first_new = (f"{first_new_point_s:.1f} s" if first_new_point_s is not None
                 else "none left to write (the job had read everything before the outage)")
    return (f"job restarts {restarts}; broker back -> first new point {first_new}; "
            f"dead letters {len(letters)} for {len(bad)} injected; k samples {sampler.samples}, "
            f"raced (gone 0.5 s later) {sampler.raced}")


def _interrupted_mid_backlog(stack: LocalStack, tmp_path: Path, seconds: int, interrupt: Callable[[], object],
                             resume: Callable[[], object], what: str) -> str:
    """Backlog in the topic, the job reading it at BACKLOG_RECORDS_PER_S; `interrupt` the broker once the first
    points are in, keep it so for `seconds` while sampling what readers see and how far the source has read,
    `resume`, check that a sizeable part of the backlog was left to read after that, then the recovery and
    exactness checks. Returns the figures line."""
    run = _isolated_run(stack, tmp_path)
    messages = _backlog()
    expected = expected_output(messages, k=K)
    report = produce(messages, stack.kafka_bootstrap, run.raw_topic)
    assert report.errors == 0, report.error_samples
    last_offsets = last_offsets_of(stack.kafka_bootstrap, run.raw_topic)
    records = sum(offset + 1 for offset in last_offsets.values())
    sampler = BelowKSampler(stack.influx_v1_url, run.db, K)
    port = free_port()
    read = MetricHighWater(port, "records_in")  # every record the job has taken from Kafka, bad ones too

    idle_timeout_s = _idle_timeout_s(seconds)
    job = JobProcess(run.job_args(*_job_flags(idle_timeout_s), "--max-records-per-second", str(BACKLOG_RECORDS_PER_S),
                                  "--web-ui-port", str(port)), tmp_path / "job.log")
    try:
        wait_until(lambda: run.points() > 0, 180, "first points", job=job, poll=0.5)
        interrupt()
        read.sample()
        points_at_start, read_at_start = run.points(), int(read.highest)
        assert points_at_start < expected.points, f"the {what} must start mid-backlog: throttle the source more"
        sampler.sample_for(seconds, also=read.sample)
        assert job.alive(), f"the job must survive the {what}:\n" + job.log_text()[-3000:]
        read.sample()
        # The job has written points, so it has read records: the watch must see them, or the check on what was
        # left to read below would hold for any job.
        assert read.highest > 0, "records_in is not in the job's REST metrics"
        resume()
        back_at, points_at_back = time.monotonic(), run.points()
        # The broker served nothing since `interrupt`: what the job had not read by then, it reads after `resume`.
        # records_in counts at the Python parse step, behind the source by a bundle (200 ms), and the REST metrics
        # are up to 10 s old; every outage here is longer, so the last samples show what was read before it.
        unread_at_back = records - int(read.highest)
        assert unread_at_back >= records // 4, (
            f"only {unread_at_back} of {records} records left to read when the broker came back: "
            "throttle the source more")
        figures = _recover_and_check(run, job, messages, expected, sampler, back_at, points_at_back)
        return (f"(idle timeout {idle_timeout_s} s) at {points_at_start}/{expected.points} points and "
                f"{read_at_start}/{records} records read (REST, up to 10 s old); when back {points_at_back} points "
                f"and {records - unread_at_back} records read, so {unread_at_back} read after; {figures}")
    finally:
        job.stop()


@pytest.mark.slow
@pytest.mark.parametrize("outage_s", [30, 120])
def test_broker_killed_mid_backlog(own_stack: LocalStack, tmp_path: Path, outage_s: int) -> None:
    figures = _interrupted_mid_backlog(own_stack, tmp_path, outage_s, own_stack.kill_kafka, own_stack.restart_kafka,
                                       "outage")
    print(f"\nkill -9 {outage_s} s mid-backlog {figures}")


@pytest.mark.slow
@pytest.mark.parametrize("outage_s", [30, 120])
def test_broker_killed_during_live_stream(own_stack: LocalStack, tmp_path: Path, outage_s: int) -> None:
    stream_s = outage_s + 70
    stack = own_stack
    run = _isolated_run(stack, tmp_path)
    sampler = BelowKSampler(stack.influx_v1_url, run.db, K)
    port = free_port()
    job = JobProcess(run.job_args(*_job_flags(_idle_timeout_s()), "--web-ui-port", str(port)), tmp_path / "job.log")
    try:
        # The stream starts once every task of the job runs: on the shared machine the job took 135 s to
        # its first point once, longer than a stream that was already running had left.
        jid = wait_until(lambda: running_job_id(port), 240, "the job RUNNING", job=job)
        wait_until(lambda: all(v["status"] == "RUNNING" for v in rest_get(port, f"/jobs/{jid}")["vertices"]), 240,
                   "every task RUNNING", job=job)
        start_ms = (int(time.time() * 1000) // 5000 + 1) * 5000
        messages = list(generate_messages(SimConfig(
            patients=20, duration_s=stream_s, start_ms=start_ms, sites=2, bad_fraction=0.03, end_of_stream=True,
            partitions=4, seed=29,
        )))  # fmt: skip
        expected = expected_output(messages, k=K)
        reports: list[ProduceReport] = []
        # The devices: every frame sent when its last sample is due, through the outage.
        producer = threading.Thread(
            target=lambda: reports.append(produce(messages, stack.kafka_bootstrap, run.raw_topic,
                                                  realtime_frame_ms=1000, flush_timeout_s=180)),
            name="live devices", daemon=True)
        producer.start()

        wait_until(lambda: run.points() > 0, 180, "first points", job=job)
        stream_left_s = (start_ms + stream_s * 1000) / 1000 - time.time()
        assert stream_left_s > outage_s + 10, f"the job took too long to its first point: {stream_left_s:.0f} s left"
        stack.kill_kafka()
        points_at_kill = run.points()
        sampler.sample_for(outage_s)
        assert job.alive(), "the job must survive a broker outage:\n" + job.log_text()[-3000:]
        stack.restart_kafka()
        back_at, points_at_back = time.monotonic(), run.points()
        producer.join(timeout=stream_s + 240)
        assert not producer.is_alive() and reports, "the devices' producer did not finish"
        assert reports[0].errors == 0, f"a device lost frames: {reports[0].error_samples}"
        figures = _recover_and_check(run, job, messages, expected, sampler, back_at, points_at_back)
        print(f"\nkill -9 {outage_s} s during a live stream (idle timeout {_idle_timeout_s()} s), "
              f"{stream_left_s:.0f} s of stream left, at "
              f"{points_at_kill}/{expected.points} points; the devices lost nothing; {figures}")
    finally:
        job.stop()


@pytest.mark.slow
def test_broker_refusing_connections_mid_backlog(proxied_stack: tuple[LocalStack, TcpProxy], tmp_path: Path) -> None:
    refused_s = 60
    stack, proxy = proxied_stack
    figures = _interrupted_mid_backlog(stack, tmp_path, refused_s, proxy.refuse, proxy.accept, "refusal")
    print(f"\nbroker up, port refusing for {refused_s} s mid-backlog {figures}")
