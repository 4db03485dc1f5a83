"""Real-process tests for the local stack (devstack.stack, its CLI devstack.local_stack, the process and query
helpers): Apache Kafka, influxd 1.x, victoria-metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devstack.influx_queries import count_points_v1, count_points_vm, export_vm, query_v1, write_v1
from devstack.processes import ProcRecord, StackError, pid_alive, proc_start_ticks, terminate_verified
from devstack.stack import DEFAULT_TOPICS, LocalStack
from testkit.jobs import wait_until
from testkit.kafka_topics import TransactionProbe

REPO_ROOT = Path(__file__).resolve().parents[2]
TEN_MB = 10 * 1024 * 1024
FreshTopics = Callable[..., list[str]]


def _producer(bootstrap: str, **kw: Any) -> Any:
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, **kw)


def _read_all(
    bootstrap: str, topic: str, partitions: int, expected: int, *, wait: float = 30.0, **kw: Any
) -> list[Any]:
    """Read a topic from the beginning with assign/seek (no consumer group) until ``expected``
    records arrived or ``wait`` seconds passed."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=5000,
        **kw,
    )
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = time.monotonic() + wait
        while len(out) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                out.extend(batch)
        return out
    finally:
        consumer.close()


# ---- lifecycle -------------------------------------------------------------------------------


def test_start_stop_leaves_no_process(tmp_path: Path) -> None:
    run_dir = tmp_path / "stack"
    with LocalStack(run_dir) as stack:
        recs = stack.records()
        assert set(recs) == {"kafka", "influxd", "victoria-metrics"}
        assert all(r.alive() for r in recs.values())
        state = json.loads((run_dir / "stack.json").read_text())
        assert state["kafka_bootstrap"] == stack.kafka_bootstrap
        assert state["influx_v1_url"] == stack.influx_v1_url
        assert state["influx_v2_url"] == stack.influx_v2_url
        for ep in (stack.kafka_bootstrap, stack.influx_v1_url, stack.influx_v2_url):
            assert "127.0.0.1:" in ep
        assert {p.name for p in run_dir.glob("*.pid")} == {
            "kafka.pid",
            "influxd.pid",
            "victoria-metrics.pid",
        }
        with pytest.raises(StackError, match="already running"):
            LocalStack(run_dir).start(kafka=True, influx_v1=False, victoria_metrics=False)
    assert not any(pid_alive(r.pid) and r.matches() for r in recs.values())
    assert not list(run_dir.glob("*.pid"))
    assert not (run_dir / "stack.json").exists()
    with pytest.raises(StackError):
        _ = stack.kafka_bootstrap


def test_partial_start(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path / "s", topics={"only": 2})
    try:
        stack.start(kafka=True, influx_v1=False, victoria_metrics=False)
        assert set(stack.records()) == {"kafka"}
        with pytest.raises(StackError, match="not running"):
            _ = stack.influx_v1_url
    finally:
        stack.stop()
    assert stack.alive_pids() == []


def test_never_kills_a_process_it_did_not_start(tmp_path: Path) -> None:
    run_dir = tmp_path / "stack"
    run_dir.mkdir()
    foreign = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        ticks = proc_start_ticks(foreign.pid)
        assert ticks is not None
        # 1) pid file pointing at the foreign pid, but another start time (pid reuse)
        (run_dir / "kafka.pid").write_text(
            json.dumps(ProcRecord("kafka", foreign.pid, ticks + 1, ["sleep", "60"]).to_json())
        )
        # 2) right pid and start time, but a different command line
        (run_dir / "influxd.pid").write_text(
            json.dumps(ProcRecord("influxd", foreign.pid, ticks, ["influxd", "-config", "x"]).to_json())
        )
        LocalStack.attach(run_dir).stop()
        assert terminate_verified(ProcRecord("x", foreign.pid, ticks + 1, ["sleep", "60"]), timeout=0.2)
        time.sleep(0.2)
        assert foreign.poll() is None, "a foreign process was signalled"
        assert not (run_dir / "kafka.pid").exists()  # stale pid files are dropped
        # the CLI stop on that run dir must not touch it either
        subprocess.run(
            [sys.executable, "-m", "devstack.local_stack", "stop", "--run-dir", str(run_dir)],
            cwd=REPO_ROOT,
            check=True,
            capture_output=True,
        )
        assert foreign.poll() is None
    finally:
        foreign.kill()
        foreign.wait()


def test_cli_detach_status_stop(tmp_path: Path) -> None:
    run_dir = tmp_path / "cli"
    cli = [sys.executable, "-m", "devstack.local_stack"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    started = subprocess.run(
        [*cli, "start", "--detach", "--no-vm", "--run-dir", str(run_dir)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    try:
        assert started.returncode == 0, started.stderr
        state = json.loads((run_dir / "stack.json").read_text())
        pids = [p["pid"] for p in state["processes"].values()]
        assert len(pids) == 2 and all(pid_alive(p) for p in pids)  # survived the CLI's exit
        status = subprocess.run(
            [*cli, "status", "--run-dir", str(run_dir)],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert status.returncode == 0 and state["kafka_bootstrap"] in status.stdout
    finally:
        subprocess.run([*cli, "stop", "--run-dir", str(run_dir)], cwd=REPO_ROOT, env=env, timeout=60, check=False)
    deadline = time.monotonic() + 5
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pid_alive(p) for p in pids)
    after = subprocess.run([*cli, "status", "--run-dir", str(run_dir)], cwd=REPO_ROOT, env=env, check=False)
    assert after.returncode == 1


# ---- Kafka ------------------------------------------------------------------------------------


def test_default_topics_created(local_stack: LocalStack) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=local_stack.kafka_bootstrap)
    try:
        desc = {t["name"]: t for t in admin.describe_topics(list(DEFAULT_TOPICS))}
    finally:
        admin.close()
    for name, parts in DEFAULT_TOPICS.items():
        assert len(desc[name]["partitions"]) == parts


def test_kafka_round_trip(kafka_bootstrap: str, fresh_topics: FreshTopics) -> None:
    (topic,) = fresh_topics("ecg-raw", partitions=4)
    producer = _producer(kafka_bootstrap)
    sent = {}
    base_ts = 1_763_812_800_000
    for i in range(200):
        key = f"dev-{i % 7}".encode()
        value = json.dumps({"i": i}).encode()
        md = producer.send(topic, value=value, key=key, timestamp_ms=base_ts + i).get(timeout=30)
        sent[i] = (key, md.partition)
    producer.close()
    got = _read_all(kafka_bootstrap, topic, 4, 200)
    assert len(got) == 200
    by_i = {json.loads(r.value)["i"]: r for r in got}
    assert set(by_i) == set(range(200))
    for i, rec in by_i.items():
        assert rec.key == sent[i][0]
        assert rec.partition == sent[i][1]
        assert rec.timestamp == base_ts + i  # record timestamp preserved (CreateTime)
    # same key -> same partition
    parts_by_key: dict[bytes, set[int]] = {}
    for rec in got:
        parts_by_key.setdefault(rec.key, set()).add(rec.partition)
    assert all(len(p) == 1 for p in parts_by_key.values())


def test_kafka_10mb_message(kafka_bootstrap: str, fresh_topics: FreshTopics) -> None:
    (topic,) = fresh_topics("big")
    payload = os.urandom(TEN_MB)
    producer = _producer(kafka_bootstrap, max_request_size=TEN_MB + 1024 * 1024)
    producer.send(topic, value=payload, key=b"k").get(timeout=60)
    producer.close()
    got = _read_all(
        kafka_bootstrap,
        topic,
        1,
        1,
        fetch_max_bytes=4 * TEN_MB,
        max_partition_fetch_bytes=4 * TEN_MB,
    )
    assert len(got) == 1 and got[0].value == payload


def test_read_committed_hides_aborted_and_open_transactions(kafka_bootstrap: str, fresh_topics: FreshTopics) -> None:
    """What KAFKA_DELIVERY=exactly-once relies on: a read_committed reader never sees the records of an
    aborted transaction, nor those of one still open; a read_uncommitted reader sees them all."""
    (topic,) = fresh_topics("tx")
    producer = _producer(kafka_bootstrap, transactional_id=f"tx-{topic}", enable_idempotence=True)
    producer.init_transactions()
    for values, commit in (([b"c1", b"c2"], True), ([b"a1"], False), ([b"c3"], True)):
        producer.begin_transaction()
        for value in values:
            producer.send(topic, value)
        producer.flush()  # the records are in the log before the transaction ends
        if commit:
            producer.commit_transaction()
        else:
            producer.abort_transaction()
    producer.close()
    still_open = _producer(kafka_bootstrap, transactional_id=f"tx-open-{topic}", enable_idempotence=True)
    still_open.init_transactions()
    still_open.begin_transaction()
    still_open.send(topic, b"open")
    still_open.flush()
    probe = TransactionProbe(kafka_bootstrap, [topic])  # what the exactly-once chaos runs report per kill
    try:
        committed = [r.value for r in _read_all(kafka_bootstrap, topic, 1, 4, wait=5, isolation_level="read_committed")]
        everything = [r.value for r in _read_all(kafka_bootstrap, topic, 1, 5, isolation_level="read_uncommitted")]
        # high watermark - last stable offset: the record of the open transaction
        open_records = probe.open_records()
    finally:
        still_open.abort_transaction()
        still_open.close()
    try:
        wait_until(lambda: probe.open_records() == {topic: 0}, 10, "the aborted transaction closed", poll=0.2)
    finally:
        probe.close()
    assert committed == [b"c1", b"c2", b"c3"]
    assert everything == [b"c1", b"c2", b"a1", b"c3", b"open"]
    assert open_records[topic] >= 1, open_records
    # once the open transaction is aborted, a read_committed reader reaches the end and still sees 3
    after = [r.value for r in _read_all(kafka_bootstrap, topic, 1, 4, wait=3, isolation_level="read_committed")]
    assert after == [b"c1", b"c2", b"c3"]


def test_kafka_keeps_topics_and_records_across_a_kill_and_restart(tmp_path: Path) -> None:
    """kill -9 of the broker loses nothing acknowledged (acks=all): it restarts on the same log
    directory and address with its topics and records, and takes new ones."""
    stack = LocalStack(tmp_path / "stack", topics={"durable": 2})
    try:
        stack.start(kafka=True, influx_v1=False, victoria_metrics=False)
        bootstrap = stack.kafka_bootstrap
        producer = _producer(bootstrap, acks="all")
        for i in range(50):
            producer.send("durable", key=str(i).encode(), value=f"before-{i}".encode())
        producer.flush()
        producer.close()
        pid = stack.records()["kafka"].pid
        stack.kill_kafka()
        assert not pid_alive(pid) and "kafka" not in stack.records()
        stack.restart_kafka()
        assert stack.kafka_bootstrap == bootstrap
        assert stack.records()["kafka"].pid != pid
        producer = _producer(bootstrap, acks="all")
        producer.send("durable", key=b"x", value=b"after").get(timeout=30)
        producer.close()
        values = sorted(r.value for r in _read_all(bootstrap, "durable", 2, 51))
        assert values == sorted([f"before-{i}".encode() for i in range(50)] + [b"after"])
    finally:
        stack.stop()
    assert stack.alive_pids() == []


def test_kafka_behind_a_proxy_that_refuses_connections(tmp_path: Path) -> None:
    """The broker advertises the proxy's port (``kafka_advertised``), so every client goes through the
    proxy; while the proxy refuses, the broker is up but no client reaches it; after that it takes
    records again. (The broker-outage test closes the port this way for 60 s under a running job.)"""
    from kafka.errors import KafkaError

    from devstack.processes import free_port, tcp_open
    from testkit.tcp_proxy import TcpProxy

    broker_port = free_port()
    proxy = TcpProxy(broker_port).accept()
    stack = LocalStack(tmp_path / "stack", topics={"proxied": 1},
                       ports={"kafka": broker_port, "kafka_advertised": proxy.port})
    try:
        stack.start(kafka=True, influx_v1=False, victoria_metrics=False)
        assert stack.kafka_bootstrap == f"127.0.0.1:{proxy.port}"
        producer = _producer(stack.kafka_bootstrap, acks="all")
        producer.send("proxied", value=b"before").get(timeout=30)
        producer.close()
        proxy.refuse()
        assert tcp_open("127.0.0.1", broker_port) and not tcp_open("127.0.0.1", proxy.port)
        with pytest.raises(KafkaError):  # no broker at the bootstrap address, or the send times out
            refused = _producer(stack.kafka_bootstrap, acks="all", max_block_ms=3000, request_timeout_ms=3000,
                                delivery_timeout_ms=6000)
            try:
                refused.send("proxied", value=b"refused").get(timeout=10)
            finally:
                refused.close(timeout=1)
        proxy.accept()
        producer = _producer(stack.kafka_bootstrap, acks="all")
        producer.send("proxied", value=b"after").get(timeout=30)
        producer.close()
        assert sorted(r.value for r in _read_all(stack.kafka_bootstrap, "proxied", 1, 2)) == [b"after", b"before"]
    finally:
        stack.stop()
        proxy.close()


def test_clean_start_empties_kafka(tmp_path: Path) -> None:
    """start(clean=True) formats a new log directory: no topic of the last run survives."""
    from kafka import KafkaAdminClient

    run_dir = tmp_path / "stack"
    with LocalStack(run_dir, topics={"first-run": 1}).start(kafka=True, influx_v1=False, victoria_metrics=False):
        pass
    stack = LocalStack(run_dir, topics={"second-run": 1})
    try:
        stack.start(kafka=True, influx_v1=False, victoria_metrics=False, clean=True)
        admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
        try:
            assert set(admin.list_topics()) == {"second-run"}
        finally:
            admin.close()
    finally:
        stack.stop()


# ---- InfluxDB 1.x ----------------------------------------------------------------------------


def test_influx_v1_write_and_count(local_stack: LocalStack) -> None:
    url, db = local_stack.influx_v1_url, local_stack.influx_db
    base = 1_763_812_800_000_000_000
    lines = [
        f"ecg_v1test,pid=p{i % 3},lead=II ecg_mv={i * 0.001},hr_bpm=72,imputed=false {base + i * 4_000_000}"
        for i in range(1000)
    ]
    write_v1(url, db, lines)
    assert count_points_v1(url, db, "ecg_v1test") == 1000
    write_v1(url, db, lines[:100])  # replay: same series + timestamp overwrite, no new points
    assert count_points_v1(url, db, "ecg_v1test") == 1000
    assert count_points_v1(url, db, "ecg_v1test", where="\"pid\" = 'p0'") == 334
    rows = query_v1(url, 'SELECT "ecg_mv", "pid" FROM "ecg_v1test" ORDER BY time LIMIT 2', db)
    assert rows[0]["time"] == base and rows[1]["time"] == base + 4_000_000  # epoch=ns ints
    assert count_points_v1(url, db, "no_such_measurement") == 0


# ---- victoria-metrics ------------------------------------------------------------------------


def test_vm_v2_write_and_count(local_stack: LocalStack) -> None:
    from influxdb_client.client.influxdb_client import InfluxDBClient
    from influxdb_client.client.write_api import SYNCHRONOUS
    from influxdb_client.domain.write_precision import WritePrecision

    url = local_stack.influx_v2_url
    base = 1_763_812_800_000_000_000
    lines = [
        f"ecg_vmtest,pid=p{i % 2},lead=II ecg_mv={i * 0.5},hr_bpm=60,imputed={'true' if i % 5 == 0 else 'false'}"
        f" {base + i * 4_000_000}"
        for i in range(500)
    ]
    with InfluxDBClient(url=url, token="dummy", org="dummy") as client:
        write = client.write_api(write_options=SYNCHRONOUS)
        write.write(bucket="ecg", record=lines, write_precision=WritePrecision.NS)
        write.write(bucket="ecg", record=lines[:50], write_precision=WritePrecision.NS)  # replay
    assert count_points_vm(url, "ecg_vmtest") == 500
    assert count_points_vm(url, "ecg_vmtest", pid="p0") == 250
    series = export_vm(url, '{__name__=~"ecg_vmtest_.*"}')
    names = sorted({s["metric"]["__name__"] for s in series})
    assert names == ["ecg_vmtest_ecg_mv", "ecg_vmtest_hr_bpm", "ecg_vmtest_imputed"]
    imputed = [s for s in series if s["metric"]["__name__"] == "ecg_vmtest_imputed"]
    assert sum(sum(s["values"]) for s in imputed) == 100  # bool -> 0/1
    mv0 = next(s for s in series if s["metric"] == {"__name__": "ecg_vmtest_ecg_mv", "pid": "p0", "lead": "II"})
    assert mv0["timestamps"][:2] == [base // 1_000_000, base // 1_000_000 + 8]  # milliseconds
