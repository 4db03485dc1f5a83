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
from testkit.flink_rest import running_job_id
from testkit.jobs import JobProcess, job_args, wait_until
from testkit.kafka_topics import list_topics, read_topics
from testkit.leak_scan import files, flink_rest_dump, influx_dump
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


def _run_secrets(token: str) -> tuple[dict[str, str], str, list[str]]:
    """Distinctive secrets for the job's environment, the v1 user name, and the credentials as they travel
    (the basic-auth header value)."""
    secrets = {
        "PSEUDONYM_SECRET": f"pseudonym-Secret-{token}-hmac",
        "INFLUX_TOKEN": f"influx-Token-{token}-v2",
        "INFLUX_PASSWORD": f"influx-Password-{token}-v1",
        "DLQ_RAW_KEY": random_secrets.token_hex(32),
    }
    username = f"ecg-writer-{token}"
    return secrets, username, [base64.b64encode(f"{username}:{secrets['INFLUX_PASSWORD']}".encode()).decode()]


def test_no_identifier_or_secret_reaches_any_sink(local_stack, fresh_topics, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    raw_topic, dlq_topic, anomaly_topic, model_topic = fresh_topics(
        "ecg-raw", "ecg-dlq", "ecg-anomalies", "ecg-model-updates", partitions=4
    )
    db = "leak_" + uuid.uuid4().hex[:8]
    url = local_stack.influx_v1_url
    create_database_v1(url, db)
    token = uuid.uuid4().hex[:10]
    secrets, username, derived = _run_secrets(token)

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
    unavailable: list[str] = []
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
        web_ui = list(flink_rest_dump(port, jid, unavailable))
    finally:
        job.stop()
    assert count_points_v1(url, db, "ecg_anonymized") == expected.points

    run_unique = [*patient_ids, *patient_names, *secrets.values(), *derived]
    everything = [*run_unique, *corpus_ids]
    leaks: list[str] = []

    # InfluxDB: every point, tag and series of the job's database.
    influx = list(influx_dump(url, db))
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
    csv_files = list(files(csv_dir))
    assert csv_files and all(name.endswith(".csv") for name, _ in csv_files), [name for name, _ in csv_files]
    assert sum(content.count(b"\n") - 1 for _, content in csv_files) == expected.points
    assert find_needles(csv_files, sorted(expected.pids)[:1]) != []
    leaks += find_needles(csv_files, everything)

    # Logs: the job's stdout/stderr and every file Flink and the Python workers wrote.
    log_files = [(str(job.log_path), job.log_path.read_bytes()), *files(job.flink_log_dir)]
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
    leaks += find_needles(files(tmp_path / "checkpoints"), everything)

    assert leaks == [], "identifiers or secrets leaked:\n" + "\n".join(leaks)


# --- The hostile corpus, with identifiers in every field, through both jobs ------------------------------

# The corpus' fixed identifiers (devstack.bad_input_corpus.valid_frame, and the Latin-1 entry's name).
CORPUS_IDS = ("MRN-0001234", "Jane Doe", "Jürgen")


def _planted_ids(token: str) -> dict[str, str]:
    """This run's stand-ins for the corpus' identifiers, of the same length (so every entry keeps its size, its
    cut and its rejection reason), and a device-id-like string for wrong fields."""
    return {"MRN-0001234": f"MRN-{token[:7]}", "Jane Doe": f"N{token[:7]}", "Jürgen": f"Jü{token[:4]}"}


def _plant(value: bytes, swaps: dict[str, str]) -> bytes:
    """``value`` with each identifier swapped, in whichever encoding the entry uses (UTF-8, Latin-1, UTF-16)."""
    for old, new in swaps.items():
        for encoding in ("utf-8", "latin-1", "utf-16-le", "utf-16-be"):
            value = value.replace(old.encode(encoding), new.encode(encoding))
    return value


def _wrong_field_entries(ts_ms: int, pid: str, name: str, device_like: str) -> list[tuple[str, bytes, str | None]]:
    """(name, message, expected rejection reason or None for a valid frame): identifiers where they do not belong."""
    from contract import frames as r

    def frame(**changes: Any) -> bytes:
        return json.dumps({**valid_frame(ts_ms), "patient_id": pid, "patient_name": name, **changes},
                          ensure_ascii=False).encode()

    return [
        ("zip_holds_patient_id", frame(zip=pid), r.REASON_OUT_OF_RANGE),
        ("sex_holds_name", frame(sex=name), r.REASON_OUT_OF_RANGE),
        ("lead_holds_device_like_id", frame(lead=device_like), r.REASON_INVALID_FORMAT),
        ("lead_holds_name", frame(lead=name), r.REASON_INVALID_FORMAT),
        ("ts_holds_name", frame(ts=name), r.REASON_WRONG_TYPE),
        ("fs_holds_patient_id", frame(fs=pid), r.REASON_WRONG_TYPE),
        ("samples_hold_patient_id", frame(samples=[0.1, pid]), r.REASON_WRONG_TYPE),
        ("hr_bpm_holds_device_like_id", frame(hr_bpm=device_like), r.REASON_WRONG_TYPE),
        ("age_holds_name", frame(age=name), r.REASON_WRONG_TYPE),
        ("field_named_by_ids", frame(**{pid: name, device_like: pid}, age=-1), r.REASON_OUT_OF_RANGE),
        ("nested_ids", frame(meta={"owner": {"id": pid, "name": name}}, age=999), r.REASON_OUT_OF_RANGE),
        ("control_kind_is_patient_id", json.dumps({"control": pid, "ts": ts_ms}).encode(), r.REASON_OUT_OF_RANGE),
        ("truncated_after_ids", frame()[:60], r.REASON_INVALID_JSON),
        ("single_quoted_ids", frame().replace(b'"', b"'"), r.REASON_INVALID_JSON),
        ("ids_in_plain_text", f"{pid} {name} {device_like}".encode(), r.REASON_INVALID_JSON),
        # Valid frames: the identifiers in fields the job drops (unknown names and values) or digests (the ward).
        ("valid_ids_in_unknown_fields", frame(note=f"{pid} / {name}", **{device_like: name}, lead="V1"), None),
        ("valid_device_like_id_as_ward", frame(site=device_like, ts=ts_ms + 1000), None),
    ]


@pytest.mark.slow
def test_hostile_corpus_with_identifiers_in_every_field_leaves_none(  # type: ignore[no-untyped-def]
        local_stack, fresh_topics, tmp_path: Path) -> None:
    """Every corpus entry the local broker takes (devstack.bad_input_corpus, its identifiers swapped for this
    run's) and identifiers in wrong fields, each record with identifiers in its key and its header keys and
    values, ahead of a simulated stream, through the anonymization job and the cardio job (each with its web
    UI), the branch's statistics in a database of their own. Nothing anyone can read afterwards holds an
    identifier or a secret (given as *_FILE files); every letter names its reason and position."""
    from kafka import KafkaProducer

    from devstack.bad_input_corpus import bad_inputs

    raw_topic, dlq_topic, anomaly_topic, model_topic = fresh_topics(
        "ecg-raw", "ecg-dlq", "ecg-anomalies", "ecg-model-updates", partitions=2)
    db = "hostile_" + uuid.uuid4().hex[:8]
    branch_db = db + "_branch"
    url = local_stack.influx_v1_url
    create_database_v1(url, db)
    create_database_v1(url, branch_db)
    token = uuid.uuid4().hex[:10]
    secrets, username, derived = _run_secrets(token)
    swaps = _planted_ids(token)
    pid, name = swaps["MRN-0001234"], swaps["Jane Doe"]
    device_like = f"dev-{token[3:9]}"

    hostile = [(entry.name, _plant(entry.value, swaps), entry.expected_reason, entry.record_timestamp_ms)
               for entry in bad_inputs(START_MS, include_oversized=False)]
    hostile += [(label, value, reason, None) for label, value, reason in
                _wrong_field_entries(START_MS, pid, name, device_like)]
    # Control: the swap reached the entries that hold identifiers (all but a few, e.g. plain text).
    holding = [label for label, value, _, _ in hostile if find_needles([("", value)], [pid, name]) or
               pid.encode("utf-16-le") in value]
    assert len(holding) >= len(hostile) - 15, len(holding)
    assert not find_needles((("corpus", v) for _, v, _, _ in hostile), CORPUS_IDS[:2]), "every corpus id swapped"

    sim = [_distinctive(message, token) for message in generate_messages(SimConfig(
        patients=8, duration_s=45, start_ms=START_MS, sites=2, end_of_stream=True, partitions=2, seed=37,
        episodes=(Episode("dev-0001", "tachycardia", 5, 25),)))]
    sim_ids = sorted({m.patient_id for m in sim if m.patient_id} | {m.patient_name for m in sim if m.patient_name})
    valid_hostile = [SimMessage(key=None, value=value, timestamp_ms=json.loads(value)["ts"], partition=None,
                                valid=True, patient_id=pid, patient_name=name)
                     for _, value, reason, _ in hostile if reason is None]
    expected = expected_output([*valid_hostile, *sim], k=3, secret=secrets["PSEUDONYM_SECRET"])

    # The hostile records first, every one with identifiers in its key and headers; then the stream.
    producer = KafkaProducer(bootstrap_servers=local_stack.kafka_bootstrap, acks="all",
                             max_request_size=2 * 1024 * 1024)
    reasons_by_position: dict[tuple[int, int], str] = {}
    try:
        futures = []
        for number, (_, value, reason, record_ts) in enumerate(hostile):
            headers = [("patient_id", pid.encode()), (pid, name.encode()), (f"x-{device_like}", device_like.encode())]
            stamp = record_ts or (json.loads(value)["ts"] if reason is None else START_MS + number)
            futures.append((reason, producer.send(raw_topic, value=value, key=[pid, name, device_like][number % 3]
                                                  .encode(), headers=headers, partition=number % 2,
                                                  timestamp_ms=stamp)))
        for reason, future in futures:
            metadata = future.get(timeout=60)
            if reason is not None:
                reasons_by_position[(metadata.partition, metadata.offset)] = reason
    finally:
        producer.close(timeout=30)
    report = produce(sim, local_stack.kafka_bootstrap, raw_topic)
    assert report.errors == 0, report.error_samples

    # The secrets as Docker secrets give them: files named by *_FILE variables.
    secret_files = {}
    for variable, value in secrets.items():
        secret_files[f"{variable}_FILE"] = str(tmp_path / variable.lower())
        Path(secret_files[f"{variable}_FILE"]).write_text(value + "\n")
    env = {**{k: v for k, v in os.environ.items() if k not in secrets}, **secret_files, "INFLUX_USERNAME": username}
    port, cardio_port = free_port(), free_port()
    unavailable: list[str] = []
    job = JobProcess(
        job_args(local_stack, tmp_path / "checkpoints", "--influx-db", db, "--influx-branch-bucket", branch_db,
                 "--kafka-input-topic", raw_topic, "--kafka-dlq-topic", dlq_topic,
                 "--kafka-anomaly-topic", anomaly_topic, "--kafka-model-topic", model_topic,
                 "--kafka-model-starting-offsets", "earliest", "--model-update-seconds", "10",
                 "--k-anonymity", "3", "--csv-output-dir", str(tmp_path / "csv"),
                 "--web-ui-port", str(port), "--cardio-web-ui-port", str(cardio_port)),
        tmp_path / "job.log", env=env)
    try:
        jid = wait_until(lambda: running_job_id(port), 120, "the job RUNNING in REST", job=job)
        cardio_jid = wait_until(lambda: running_job_id(cardio_port), 120, "the cardio job RUNNING in REST", job=job)
        wait_until(lambda: count_points_v1(url, db, "ecg_anonymized") >= expected.points, 180,
                   f"{expected.points} points in InfluxDB", job=job)
        wait_until(lambda: len(read_topics(local_stack.kafka_bootstrap, [dlq_topic], 2.0)[dlq_topic])
                   >= len(reasons_by_position), 60, "dead letters", job=job)
        wait_until(lambda: all(read_topics(local_stack.kafka_bootstrap, [anomaly_topic, model_topic], 2.0).values()),
                   90, "anomalies and model updates", job=job)
        time.sleep(3)  # a checkpoint interval more: late writes would show up in the scan
        web_ui = [*flink_rest_dump(port, jid, unavailable), *flink_rest_dump(cardio_port, cardio_jid, unavailable)]
    finally:
        job.stop()
    assert count_points_v1(url, db, "ecg_anonymized") == expected.points
    print(f"{len(hostile)} hostile records ({len(reasons_by_position)} dead letters expected), "
          f"{len(web_ui)} REST documents; not served: {unavailable}")

    needles = [pid, name, swaps["Jürgen"], device_like, *sim_ids, *secrets.values(), *derived]
    records = read_topics(local_stack.kafka_bootstrap, [raw_topic, dlq_topic, anomaly_topic, model_topic])
    # Control: every needle planted in the input is found there (values, keys, header keys and values).
    raw_text = [("input", b"\n".join((r.key or b"") + b"\0" + (r.value or b"") + b"".join(
        k.encode() + b"=" + (v or b"") for k, v in r.headers) for r in records[raw_topic]))]
    assert len(find_needles(raw_text, [pid, name, device_like, *sim_ids])) == 3 + len(sim_ids)

    # Every letter: its reason and its position; exactly the rejected records.
    letters = {(e["partition"], e["offset"]): e for e in (json.loads(r.value) for r in records[dlq_topic])}
    assert {p: e["reason"] for p, e in letters.items()} == reasons_by_position
    assert all(e["topic"] == raw_topic and e["timestamp"] is not None for e in letters.values())

    leaks: list[str] = []
    for database in (db, branch_db):
        leaks += find_needles(((f"influxdb {database} {s}", text) for s, text in influx_dump(url, database)), needles)
    stats = {row["_measurement"] for row in query_v1(url, "SELECT * FROM /.*/", branch_db)}
    assert {"ecg_anomaly_stats", "ecg_model_stats"} <= stats, "control: the branch database is scanned"
    for topic in (dlq_topic, anomaly_topic, model_topic):
        assert records[topic], f"control: {topic} holds messages"
        leaks += find_needles(((f"kafka {topic} {r.partition}@{r.offset}", (r.key or b"") + b"\0" + r.value + b"".join(
            k.encode() + b"=" + (v or b"") for k, v in r.headers)) for r in records[topic]), needles)
    csv_files = list(files(tmp_path / "csv"))
    assert csv_files, "control: CSV written"
    leaks += find_needles(csv_files, needles)
    log_files = [(str(job.log_path), job.log_path.read_bytes()), *files(job.flink_log_dir)]
    assert any("cardio" in path for path, _ in log_files[1:]), "control: the cardio job's Flink log is scanned"
    assert b"window " in b"".join(content for _, content in log_files), "control: the window log is scanned"
    job_log = job.log_text()
    for variable in secrets:
        assert f"'{variable.lower()}': '***'" in job_log, f"control: {variable} was read from its file, and masked"
    leaks += find_needles(log_files, needles)
    paths = {path for path, _ in web_ui}
    assert {f"/jobs/{jid}/plan", f"/jobs/{cardio_jid}/plan", f"/jobs/{jid}/accumulators"} <= paths
    assert any("/checkpoints/details/" in path for path in paths), "control: checkpoint details are scanned"
    leaks += find_needles(((f"flink rest {path}", text) for path, text in web_ui), needles)
    # Checkpoints hold the ward as the key of the window state, so the ward planted in `site` is left out here
    # (README, "Who can read what": checkpoints are as sensitive as the input).
    leaks += find_needles(files(tmp_path / "checkpoints"), [n for n in needles if n != device_like])
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
