"""No identifier leaks: no raw patient id, patient name or secret reaches any sink or log.

End to end: 20 patients x 45 s of simulator frames (5 % bad, a tachycardia episode, end-of-stream) through
the real job with CSV output on and distinctive secrets in the job's environment (PSEUDONYM_SECRET, INFLUX_TOKEN,
INFLUX_USERNAME + INFLUX_PASSWORD, so the v1 writer sends basic auth). Afterwards every sink is
scanned for every raw identifier and every secret:

- all of InfluxDB (every point of every measurement, tag values, series, keys),
- every Kafka topic of the stack except the input topic (the anomaly and model-update topics hold
  messages, and nothing but their contract fields with pids), the dead-letter topic included: the job
  runs with DLQ_RAW=encrypted, so each letter holds no identifier and no secret, and its sealed raw
  message opens, with the DLQ key, to exactly the input record at the letter's position,
- every CSV file, the job's stdout log and every file in its Flink log dir (incl. the configuration
  dump at startup), and the Flink REST API: configuration, plan, exceptions and every metric of every
  vertex with its value.

Positive controls keep the scan honest: it finds every raw id in the input topic, the pseudonyms in
InfluxDB and CSV, the secrets in the job's process environment, and the configuration dump in the log.

Plus fast unit tests: the InfluxDB writers' error messages (v1 basic auth, v2 token) never carry
the credentials, for a refused connection, 4xx and 5xx answers.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import http.server
import json
import logging
import os
import re
import secrets as random_secrets
import threading
import time
import traceback
import urllib.error
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from connectors import influxdb
from devstack.bad_input_corpus import valid_frame
from devstack.influx_queries import count_points_v1, create_database_v1, query_v1
from devstack.processes import free_port
from devstack.simulator import KIND_FRAME, Episode, SimConfig, SimMessage, generate_messages, produce
from privacy.dead_letters import open_raw
from testkit.flink_rest import rest_get, running_job_id
from testkit.jobs import JobProcess, job_args, wait_until
from testkit.kafka_topics import list_topics, read_topics
from testkit.reference import expected_output
from tests.integration.support import find_needles

START_MS = 1_763_812_800_000
K = 5


def _distinctive(message: SimMessage, token: str) -> SimMessage:
    """The simulator's message with identifiers unique to this run (other tests' topics on the shared
    broker hold the simulator's usual names, which must not count as hits)."""
    if message.kind != KIND_FRAME:
        return message
    frame = json.loads(message.value)
    frame["patient_id"] = f"{frame['patient_id']}-{token}"
    frame["patient_name"] = f"{frame['patient_name']} Zz{token}"
    value = json.dumps(frame, separators=(",", ":")).encode("utf-8")
    return dataclasses.replace(message, value=value, patient_id=frame["patient_id"],
                               patient_name=frame["patient_name"])


def _influx_dump(url: str, db: str) -> Iterator[tuple[str, str]]:
    """Everything the InfluxDB database holds, as (statement, JSON text) pairs."""
    for statement in (
        "SHOW MEASUREMENTS", "SHOW SERIES", "SHOW TAG KEYS", "SHOW FIELD KEYS", 'SHOW TAG VALUES WITH KEY =~ /.*/',
        "SHOW RETENTION POLICIES", "SELECT * FROM /.*/",
    ):
        yield statement, json.dumps(query_v1(url, statement, db), ensure_ascii=False)
    for statement in ("SHOW DATABASES", "SHOW USERS"):
        yield statement, json.dumps(query_v1(url, statement), ensure_ascii=False)


def _rest_dump(port: int, jid: str) -> Iterator[tuple[str, str]]:
    """What Flink's web UI shows about the cluster and the job, as (REST path, JSON text) pairs."""
    paths = ["/config", "/overview", "/jobmanager/config", "/jobmanager/environment", "/jobs/overview",
             f"/jobs/{jid}", f"/jobs/{jid}/config", f"/jobs/{jid}/plan", f"/jobs/{jid}/exceptions",
             f"/jobs/{jid}/checkpoints", f"/jobs/{jid}/jobmanager/config", f"/jobs/{jid}/jobmanager/environment"]
    taskmanagers = rest_get(port, "/taskmanagers")["taskmanagers"]
    paths += [f"/taskmanagers/{tm['id']}{tail}" for tm in taskmanagers for tail in ("", "/logs")]
    for path in paths:
        yield path, json.dumps(rest_get(port, path), ensure_ascii=False)
    # Every metric of every vertex (names and values, the operators' own group `ecg` included): what the
    # web UI's Metrics tab and any metrics reporter see.
    for vertex in rest_get(port, f"/jobs/{jid}")["vertices"]:
        base = f"/jobs/{jid}/vertices/{vertex['id']}"
        names = [metric["id"] for metric in rest_get(port, base + "/metrics")]
        for start in range(0, len(names), 20):
            yield f"{base}/metrics", json.dumps(_metric_values(port, base, names[start:start + 20]), ensure_ascii=False)
        yield f"{base}/watermarks", json.dumps(rest_get(port, base + "/watermarks"), ensure_ascii=False)


def _metric_values(port: int, base: str, names: list[str]) -> list[Any]:
    """Values of the named metrics; one by one when the batch is refused (a metric can vanish between the
    listing and the query, e.g. a Python operator's gauges after a bundle), skipping the vanished ones."""
    try:
        return list(rest_get(port, f"{base}/metrics?get=" + urllib.parse.quote(",".join(names), safe=",")))
    except urllib.error.HTTPError:
        values = []
        for name in names:
            try:
                values += rest_get(port, f"{base}/metrics?get=" + urllib.parse.quote(name, safe=""))
            except urllib.error.HTTPError as error:
                if error.code != 404:
                    raise
        return values


def _files(directory: Path) -> Iterator[tuple[str, bytes]]:
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            yield str(path), path.read_bytes()


def test_no_identifier_or_secret_reaches_any_sink(local_stack, fresh_topics, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    raw_topic, dlq_topic, anomaly_topic, model_topic = fresh_topics(
        "ecg-raw", "ecg-dlq", "ecg-anomalies", "ecg-model-updates", partitions=4
    )
    db = "leak_" + uuid.uuid4().hex[:8]
    url = local_stack.influx_v1_url
    create_database_v1(url, db)
    token = uuid.uuid4().hex[:10]
    secrets = {
        "PSEUDONYM_SECRET": f"pseudonym-Secret-{token}-hmac",
        "INFLUX_TOKEN": f"influx-Token-{token}-v2",
        "INFLUX_PASSWORD": f"influx-Password-{token}-v1",
        "DLQ_RAW_KEY": random_secrets.token_hex(32),
    }
    username = f"ecg-writer-{token}"
    # Credentials as they travel: the basic-auth header value, and the token header.
    derived = [base64.b64encode(f"{username}:{secrets['INFLUX_PASSWORD']}".encode()).decode()]

    messages = [
        _distinctive(message, token)
        for message in generate_messages(SimConfig(patients=20, duration_s=45, start_ms=START_MS, sites=2,
                                                   bad_fraction=0.05, end_of_stream=True, partitions=4, seed=31,
                                                   episodes=(Episode("dev-0001", "tachycardia", 5, 25),)))
    ]
    frames = [message for message in messages if message.kind == KIND_FRAME]
    bad = [message for message in messages if message.kind == "bad"]
    assert len(bad) >= 20
    patient_ids = sorted({m.patient_id for m in frames if m.patient_id})
    patient_names = sorted({m.patient_name for m in frames if m.patient_name})
    assert len(patient_ids) == len(patient_names) == 20
    # The corpus' own raw identifiers, inside the injected bad messages.
    corpus_ids = [valid_frame()["patient_id"], valid_frame()["patient_name"], "Jürgen"]
    assert all(any(i.encode() in m.value for m in bad) for i in corpus_ids[:2])
    expected = expected_output(messages, k=K, secret=secrets["PSEUDONYM_SECRET"])
    assert expected.points > 100_000

    report = produce(messages, local_stack.kafka_bootstrap, raw_topic)
    assert report.errors == 0, report.error_samples

    csv_dir = tmp_path / "csv"
    env = {**os.environ, **secrets, "INFLUX_USERNAME": username, "DLQ_RAW": "encrypted", "DLQ_RAW_KEY_ID": "leak-test"}
    port = free_port()
    job = JobProcess(
        job_args(local_stack, tmp_path / "checkpoints", "--influx-db", db, "--kafka-input-topic", raw_topic,
                 "--kafka-dlq-topic", dlq_topic, "--kafka-anomaly-topic", anomaly_topic,
                 "--kafka-model-topic", model_topic, "--kafka-model-starting-offsets", "earliest",
                 "--model-update-seconds", "10", "--k-anonymity", str(K), "--csv-output-dir", str(csv_dir),
                 "--web-ui-port", str(port)),
        tmp_path / "job.log",
        env=env,
    )
    try:
        # Positive control: the job really runs with these secrets in its environment.
        environ = Path(f"/proc/{job.process.pid}/environ").read_bytes()
        assert all(f"{name}={value}".encode() in environ for name, value in secrets.items())
        jid = wait_until(lambda: running_job_id(port), 120, "the job RUNNING in REST", job=job)
        wait_until(lambda: count_points_v1(url, db, "ecg_anonymized") >= expected.points, 180,
                   f"{expected.points} points in InfluxDB", job=job)
        wait_until(lambda: len(read_topics(local_stack.kafka_bootstrap, [dlq_topic], 2.0)[dlq_topic]) >= len(bad),
                   60, "dead letters", job=job)
        wait_until(lambda: all(read_topics(local_stack.kafka_bootstrap, [anomaly_topic, model_topic], 2.0).values()),
                   60, "anomalies and model updates", job=job)
        time.sleep(3)  # a checkpoint interval more: late writes would show up in the scan
        # The web UI / REST API shows configuration, environment, plan and exceptions to its users.
        web_ui = list(_rest_dump(port, jid))
    finally:
        job.stop()
    assert count_points_v1(url, db, "ecg_anonymized") == expected.points

    run_unique = [*patient_ids, *patient_names, *secrets.values(), *derived]
    everything = [*run_unique, *corpus_ids]
    leaks: list[str] = []

    # InfluxDB: every point, tag and series of the job's database.
    influx = list(_influx_dump(url, db))
    all_rows = json.loads(dict(influx)["SELECT * FROM /.*/"])
    rows = [row for row in all_rows if row["_measurement"] == "ecg_anonymized"]
    assert len(rows) == expected.points, "the dump must hold every point"
    assert {row["pid"] for row in rows} == expected.pids  # control: the pseudonyms (made with our secret)
    # The branch's statistics (one point per anomaly and per model update) are in the dump too.
    stats = Counter(row["_measurement"] for row in all_rows if row["_measurement"] != "ecg_anonymized")
    assert stats["ecg_anomaly_stats"] >= 1 and stats["ecg_model_stats"] >= 1, stats
    assert find_needles(influx, sorted(expected.pids)[:3]) != []
    leaks += find_needles((("influxdb " + s, text) for s, text in influx), everything)

    # Kafka: every topic of the stack but the input and the DLQ. Topics of other tests hold other
    # runs' input (and the corpus' fixed ids), so they are scanned for this run's unique values only.
    topics = [t for t in list_topics(local_stack.kafka_bootstrap) if t not in (raw_topic, dlq_topic)]
    assert {anomaly_topic, model_topic} <= set(topics)
    records = read_topics(local_stack.kafka_bootstrap, [*topics, raw_topic, dlq_topic])
    own_topics = {anomaly_topic, model_topic}
    for topic in topics:
        haystacks = ((f"kafka {topic} {r.partition}@{r.offset}", (r.key or b"") + b"\0" + (r.value or b""))
                     for r in records[topic])
        leaks += find_needles(haystacks, everything if topic in own_topics else run_unique)
    # The branch's topics: messages exist (control) and hold only their contract fields; the only
    # patient reference is the pseudonym pid (no quasi-identifier, no site, no device id).
    assert records[anomaly_topic] and records[model_topic]
    anomaly_fields = {"event_id", "pid", "ts", "kind", "window_start", "window_end", "hr_bpm", "z_score",
                      "model_version", "prior_round"}
    model_fields = {"update_id", "kind", "pid", "round", "weights", "n_samples", "ts", "prior_round", "dp",
                    "clients", "carried_from"}
    for record in records[anomaly_topic]:
        message = json.loads(record.value)
        assert set(message) == anomaly_fields and message["pid"] in expected.pids, message
    for record in records[model_topic]:
        message = json.loads(record.value)
        assert set(message) <= model_fields and message["pid"] in expected.pids | {None}, message
    assert any(json.loads(r.value)["kind"] == "local" for r in records[model_topic])
    device_ids = sorted({json.loads(m.value)["device_id"] for m in frames})
    leaks += find_needles(((f"kafka {t}", r.value) for t in own_topics for r in records[t]), device_ids)
    # Control: the same scan finds every raw identifier in the input topic.
    input_text = [("input", b"\n".join(r.value for r in records[raw_topic]))]
    assert len(find_needles(input_text, [*patient_ids, *patient_names, *corpus_ids[:2]])) == 42

    # DLQ: reason and position, no identifier or secret; the sealed raw message is the input record at
    # that position (it opens with the DLQ key only).
    inputs = {(r.partition, r.offset): r.value for r in records[raw_topic]}
    dead_letters = [json.loads(r.value) for r in records[dlq_topic]]
    assert len(dead_letters) == len(bad)
    key = bytes.fromhex(secrets["DLQ_RAW_KEY"])
    for entry in dead_letters:
        assert entry["reason"] and entry["topic"] == raw_topic
        assert open_raw(entry, {"leak-test": key}) == inputs[(entry["partition"], entry["offset"])]
    assert sum(entry["pid"] is not None for entry in dead_letters) > 0, "control: letters name pseudonyms"
    leaks += find_needles(((f"dlq {e['partition']}@{e['offset']}", json.dumps(e, ensure_ascii=False))
                           for e in dead_letters), everything)

    # CSV: every file the job wrote.
    csv_files = list(_files(csv_dir))
    assert csv_files and all(name.endswith(".csv") for name, _ in csv_files), [name for name, _ in csv_files]
    assert sum(content.count(b"\n") - 1 for _, content in csv_files) == expected.points
    assert find_needles(csv_files, sorted(expected.pids)[:1]) != []
    leaks += find_needles(csv_files, everything)

    # Logs: the job's stdout/stderr and every file Flink and the Python workers wrote.
    log_files = [(str(job.log_path), job.log_path.read_bytes()), *_files(job.flink_log_dir)]
    flink_text = b"".join(content for _, content in log_files[1:])
    assert b"Loading configuration property: " in flink_text, "Flink's configuration dump is scanned"
    assert re.search(rb"window \S+ \[\d+, \d+\) #\d+ ", flink_text), "the Python workers' log is scanned"
    job_log = job.log_text()
    assert find_needles(log_files[:1], [username]) != [], "control: the log scan finds what the job logs"
    for name in ("pseudonym_secret", "influx_token", "influx_password", "dlq_raw_key"):
        assert f"'{name}': '***'" in job_log, f"{name} was not set, or not masked"
    leaks += find_needles(log_files, everything)

    # Flink's web UI (REST): configuration, environment, job plan, exceptions.
    assert '"pipeline.name"' in dict(web_ui)["/jobmanager/config"], "control: the job's Flink configuration is scanned"
    metrics_text = "".join(text for path, text in web_ui if path.endswith("/metrics"))
    assert "ecg.records_in" in metrics_text, "control: operator metrics are scanned"
    leaks += find_needles((("flink rest " + path, text) for path, text in web_ui), everything)

    # Checkpoints: keyed state and source offsets hold pseudonyms only.
    leaks += find_needles(_files(tmp_path / "checkpoints"), everything)

    assert leaks == [], "identifiers or secrets leaked:\n" + "\n".join(leaks)


# --- InfluxDB writer error messages (no stack needed) -----------------------------------------

PASSWORD = "v1-Password-never-in-errors-7f3a"
TOKEN = "v2-Token-never-in-errors-9c1e"
USERNAME = "ecg-writer"
CREDENTIALS = (PASSWORD, TOKEN, base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode())


class _Reject(http.server.BaseHTTPRequestHandler):
    """Answers every request with `status` and a body like InfluxDB's; records the auth headers."""

    status = 401
    echo_headers = False  # like a misconfigured proxy that echoes the request headers in its reply
    seen_auth: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _Reject.seen_auth.append(self.headers.get("Authorization") or "")
        status = _Reject.status
        body = json.dumps({"code": "unauthorized" if status == 401 else "error",
                           "message": "authorization failed" if status == 401 else "write failed",
                           "error": "authorization failed",
                           **({"request_headers": dict(self.headers)} if _Reject.echo_headers else {})}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def rejecting_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Reject)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(influxdb, "_retrying", functools.partial(influxdb._retrying, attempts=2, first_delay=0.0))


def _error_text(writer: influxdb.LineWriter, caplog: pytest.LogCaptureFixture) -> str:
    """Everything a failed write shows: the exception chain as Flink would log it, and our log lines."""
    with caplog.at_level(logging.DEBUG), pytest.raises(Exception) as raised:
        writer.write_lines(["ecg_anonymized,pid=abc ecg_mv=0.1 1763812800000000000"])
    writer.close()
    return "".join(traceback.format_exception(raised.value)) + str(raised.value.args) + caplog.text


def _writers(base_url: str) -> dict[str, influxdb.LineWriter]:
    return {
        "v1": influxdb.InfluxV1Writer(base_url, "ecg", username=USERNAME, password=PASSWORD),
        "v2": influxdb.InfluxV2Writer(base_url, TOKEN, "ecg", "ecg"),
    }


@pytest.mark.parametrize("transport", ["v1", "v2"])
def test_write_error_to_closed_port_does_not_show_credentials(
    transport: str, fast_retries: None, caplog: pytest.LogCaptureFixture
) -> None:
    text = _error_text(_writers(f"http://127.0.0.1:{free_port()}")[transport], caplog)
    assert re.search(r"refused|Connection|Max retries", text), text[-2000:]
    assert [c for c in CREDENTIALS if c in text] == [], text[-3000:]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 500, 503])
@pytest.mark.parametrize("transport", ["v1", "v2"])
def test_write_rejected_by_server_does_not_show_credentials(
    transport: str, status: int, rejecting_server: str, fast_retries: None, caplog: pytest.LogCaptureFixture
) -> None:
    _Reject.status = status
    _Reject.seen_auth.clear()
    text = _error_text(_writers(rejecting_server)[transport], caplog)
    # Control: the credentials were really sent, and the error is the server's.
    assert _Reject.seen_auth and all(CREDENTIALS[2 if transport == "v1" else 1] in a for a in _Reject.seen_auth)
    assert str(status) in text, text[-2000:]
    if 400 <= status < 500:
        assert "authorization failed" in text or "write failed" in text, text[-2000:]
    assert [c for c in CREDENTIALS if c in text] == [], text[-3000:]


@pytest.mark.parametrize("status", [400, 502])
@pytest.mark.parametrize("transport", ["v1", "v2"])
def test_server_echoing_credentials_does_not_leak_them(
    transport: str, status: int, rejecting_server: str, fast_retries: None, caplog: pytest.LogCaptureFixture
) -> None:
    _Reject.status, _Reject.echo_headers = status, True
    try:
        text = _error_text(_writers(rejecting_server)[transport], caplog)
    finally:
        _Reject.echo_headers = False
    assert "request_headers" in text, text[-2000:]  # control: the echo reached the error text
    assert [c for c in CREDENTIALS if c in text] == [], text[-3000:]
