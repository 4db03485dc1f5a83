"""Dead-letter replay on the real local stack (python -m replay, README "Replaying dead letters").

Three devices of one ward send their samples as "ecg" instead of "samples" for 10 s (a firmware bug): the job
dead-letters those frames (missing_field) and publishes the windows without them. A replay with a fix-up
(tests/integration/replay_fixes.py) must leave InfluxDB with exactly the points of the unbroken stream (the
reference model over the original frames: every series, timestamp and field), with no class below k; letters
it cannot fix are reported as skipped, a letter whose original was deleted from the input (delete-records, as
retention does) as gone. A second replay of the same letters changes nothing: no write, no delete.

Leak scan of what replay leaves for operators (issue 22 item 4): its stdout/stderr, its JSON reports, the rebuild's
logs, the dead letters it wrote (the staging DLQ), the staging InfluxDB database it merged from, the live database
after the merge and the live DLQ hold no raw patient id or name. The corrections topic and the staging topic hold
raw (repaired) input by design, like `ecg-raw` (the positive control of this scan): the Kafka ACLs grant them to no
principal but the admin (tests/connectors/test_kafka_acls.py, tests/integration/test_kafka_security.py).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

from connectors.influxdb import frame_tags, sample_timestamps_ns
from devstack.influx_queries import query_v1
from devstack.simulator import SimConfig, SimMessage, generate_messages
from replay.kafka_io import delete_topics
from replay.merge import InfluxQL
from testkit.jobs import TEST_SECRET, JobProcess
from testkit.kafka_topics import list_topics, make_large_producer, read_topics
from testkit.reference import anonymized_windows
from tests.integration.support import IsolatedRun, find_needles, visible_classes_below_k

START_MS = 1_763_812_800_000  # window-aligned
K = 5
BROKEN_FROM, BROKEN_UNTIL = START_MS + 10_000, START_MS + 20_000
FIX = "tests.integration.replay_fixes:rename_ecg_to_samples"
FINISH_SECONDS = 300


def _broken(message: SimMessage) -> bytes:
    frame = json.loads(message.value)
    frame["ecg"] = frame.pop("samples")
    return json.dumps(frame).encode()


def reference_points(messages: list[SimMessage]) -> dict[tuple[Any, int], tuple[Any, ...]]:
    """(series, timestamp ns) -> (ecg_mv, hr_bpm, imputed) of everything the job publishes for these frames."""
    points: dict[tuple[Any, int], tuple[Any, ...]] = {}
    for _, _, result in anonymized_windows(messages, k=K):
        for frame in result.published:
            series = tuple(sorted((key, value) for key, value in frame_tags(frame).items() if value != ""))
            hr = float(frame.hr_bpm)
            values = [float(v) for v in frame.ecg_mv]
            for value, stamp in zip(values, sample_timestamps_ns(frame.ts_ms, frame.fs, len(values)).tolist(),
                                    strict=True):
                if math.isfinite(value):
                    points[(series, int(stamp))] = (value, hr if math.isfinite(hr) else None, bool(frame.imputed))
    return points


def stored_points(run: IsolatedRun) -> dict[tuple[Any, int], tuple[Any, ...]]:
    db = InfluxQL(run.stack.influx_v1_url, run.db)
    types = db.field_types("ecg_anonymized")
    assert sorted(types) == ["ecg_mv", "hr_bpm", "imputed"]
    return {(series, stamp): values
            for series, by_time in db.points("ecg_anonymized", 0, 2**62, types).items()
            for stamp, values in by_time.items()}


def _replay(run: IsolatedRun, tmp_path: Path, name: str, *extra: str, merge_until: str | None = "end"
            ) -> tuple[dict[str, Any], str]:
    report = tmp_path / f"{name}.json"
    args = [*extra, "--fix", FIX, *(["--merge-until", merge_until] if merge_until else []),
            "--report", str(report), "--work-dir", str(tmp_path / name),
            "--kafka-bootstrap", run.stack.kafka_bootstrap, "--kafka-input-topic", run.raw_topic,
            "--kafka-dlq-topic", run.dlq_topic, "--influx-transport", "v1", "--influx-url", run.stack.influx_v1_url,
            "--influx-db", run.db, "--k-anonymity", str(K), "--checkpoint-interval-seconds", "2"]
    done = subprocess.run([sys.executable, "-m", "replay", *args], capture_output=True, text=True,
                          timeout=FINISH_SECONDS, env={**_environment(), "PSEUDONYM_SECRET": TEST_SECRET})
    output = done.stdout + done.stderr
    job_log = tmp_path / name / "job.log"
    assert done.returncode == 0, output[-3000:] + (job_log.read_text()[-3000:] if job_log.exists() else "")
    logs = [path.read_text(errors="replace") for path in [job_log, *sorted((tmp_path / name).glob("flink-logs/*"))]
            if path.exists()]
    assert len(logs) >= 2 or "--dry-run" in extra, "control: the rebuild's logs are scanned"
    return json.loads(report.read_text()), output + report.read_text() + "".join(logs)


def _environment() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_replay_through_a_fix_gives_the_unbroken_stream_and_a_second_replay_changes_nothing(
        isolated_run: IsolatedRun, tmp_path: Path) -> None:
    from kafka import TopicPartition

    from devstack.kafka_admin import admin_client

    run, stack = isolated_run, isolated_run.stack
    messages = list(generate_messages(SimConfig(patients=20, duration_s=30, start_ms=START_MS, sites=2, seed=5)))
    frames = {json.loads(m.value)["device_id"]: json.loads(m.value) for m in messages}
    ward = sorted(frame["site"] for frame in frames.values())[0]
    devices = sorted(device for device, frame in frames.items() if frame["site"] == ward)[:3]
    broken = [m for m in messages if json.loads(m.value)["device_id"] in devices
              and BROKEN_FROM <= m.timestamp_ms < BROKEN_UNTIL]
    assert len(broken) >= 15
    unfixable = [b"{not json " + bytes([65 + i]) for i in range(3)]

    producer = make_large_producer(stack.kafka_bootstrap)
    try:
        # Offset 0 of partition 3: a broken frame from an hour before, deleted from the input after the job ran.
        early = json.loads(broken[0].value)
        early["ts"] = START_MS - 3_600_000
        early["ecg"] = early.pop("samples")
        producer.send(run.raw_topic, value=json.dumps(early).encode(), key=broken[0].key, partition=3,
                      timestamp_ms=START_MS - 3_600_000).get(timeout=30)
        broken_ids = {id(message) for message in broken}
        for index, message in enumerate(messages):
            value = _broken(message) if id(message) in broken_ids else message.value
            producer.send(run.raw_topic, value=value, key=message.key, timestamp_ms=message.timestamp_ms)
            if index % 200 == 100 and len(unfixable) > index // 200:
                producer.send(run.raw_topic, value=unfixable[index // 200], partition=index % 4,
                              timestamp_ms=message.timestamp_ms)
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)

    # The job, as a backfill that ends by itself (the input is complete).
    job = JobProcess(run.job_args("--k-anonymity", str(K), "--kafka-stop-at", "latest", "--cardio-branch", "false"),
                     tmp_path / "job.log")
    try:
        assert job.process.wait(timeout=FINISH_SECONDS) == 0, job.log_text()[-3000:]
    finally:
        job.stop()
    letters = [json.loads(record.value) for record in run.dead_letters()]
    assert sorted(letter["reason"] for letter in letters) == sorted(
        ["missing_field"] * (len(broken) + 1) + ["invalid_json"] * len(unfixable))
    reference = reference_points(messages)
    before = stored_points(run)
    assert before != reference and len(before) < len(reference), "control: the broken frames are missing"

    admin = admin_client(stack.kafka_bootstrap)
    try:
        admin.delete_records({TopicPartition(run.raw_topic, 3): 1})
    finally:
        admin.close()

    dry, dry_output = _replay(run, tmp_path, "dry", "--dry-run")
    assert dry["outcomes"] == {"replayed": 0, "would_replay": len(broken), "already_replayed": 0, "not_merged": 0,
                               "gone": 1, "skipped": len(unfixable), "fix_failed": 0, "still_invalid": 0}, dry_output
    assert not dry["merge"] and stored_points(run) == before
    assert f"{run.raw_topic}.replay-corrections" not in list_topics(stack.kafka_bootstrap)

    first, output = _replay(run, tmp_path, "first", "--keep-staging")  # staging kept for the leak scan below
    assert first["outcomes"] == {"replayed": len(broken), "would_replay": 0, "already_replayed": 0, "not_merged": 0,
                                 "gone": 1, "skipped": len(unfixable), "fix_failed": 0, "still_invalid": 0}, (
        output[-3000:])
    gone = [letter for letter in first["letters"] if letter["outcome"] == "gone"]
    assert (gone[0]["partition"], gone[0]["offset"]) == (3, 0) and "deleted" in gone[0]["note"]
    print("first replay:", first["rebuild"], first["merge"])
    assert first["merge"]["windows_changed"] >= 2 and first["merge"]["points_written"] > 0
    # Partition 3 lost its head: the window of its first retained record may be incomplete and is not merged
    # (it has no broken frame; the reference holds it as the live job wrote it).
    assert first["rebuild"]["merge_from_ms"] == START_MS + 5_000 and "truncated" in " ".join(first["warnings"])
    after = stored_points(run)
    assert after == reference
    staged = _staging_dump(run, first["run_id"])
    assert visible_classes_below_k(stack.influx_v1_url, run.db, K) == []

    second, second_output = _replay(run, tmp_path, "second")
    assert second["outcomes"]["already_replayed"] == len(broken) and second["outcomes"]["replayed"] == 0
    assert second["corrections_written"] == 0 and second["corrections_total"] == len(broken)
    assert second["merge"]["windows_changed"] == 0 and second["merge"]["write_requests"] == 0
    assert second["merge"]["statements"] == 0 and second["merge"]["windows_compared"] == 5
    assert stored_points(run) == reference

    # Nothing the tool printed or its rebuild logged holds a raw identifier (the input's are in every frame).
    identifiers = {value for m in messages for value in (m.patient_id, m.patient_name) if value}
    assert "patient_id" in messages[0].value.decode(), "control: the input holds identifiers"
    assert find_needles([("dry", dry_output), ("first", output), ("second", second_output)], identifiers) == []
    assert TEST_SECRET not in dry_output + output + second_output
    # ... nor what it wrote where operators read: the staging DLQ and database (kept by --keep-staging), the live
    # database after the merge, the live DLQ. The corrections and staging topics are raw input (the control).
    corrections = f"{run.raw_topic}.replay-corrections"
    raw_copies = read_topics(stack.kafka_bootstrap, [corrections, staged["topic"]])
    assert len(raw_copies[corrections]) == len(broken) and raw_copies[staged["topic"]]
    control = find_needles([(topic, b"".join(r.value or b"" for r in records))
                            for topic, records in raw_copies.items()], identifiers)
    assert len(control) >= len(identifiers), "control: the scan finds the identifiers in the raw copies"
    live_dlq = b"".join(record.value or b"" for record in run.dead_letters())
    haystacks = [*staged["haystacks"], ("live DLQ", live_dlq),
                 *((f"live db: {statement}", text) for statement, text in _influx_dump(stack.influx_v1_url, run.db))]
    assert find_needles(haystacks, identifiers) == []
    assert TEST_SECRET not in "".join(str(content) for _, content in haystacks)
    delete_topics(stack.kafka_bootstrap, [staged["topic"], staged["topic"] + ".dlq"])


def _influx_dump(url: str, db: str) -> list[tuple[str, str]]:
    """Everything an InfluxDB 1.x database holds, as (statement, JSON text) pairs."""
    statements = ("SHOW MEASUREMENTS", "SHOW SERIES", "SHOW TAG KEYS", "SHOW FIELD KEYS",
                  "SHOW TAG VALUES WITH KEY =~ /.*/", "SELECT * FROM /.*/")
    return [(statement, json.dumps(query_v1(url, statement, db), ensure_ascii=False)) for statement in statements]


def _staging_dump(run: IsolatedRun, run_id: str) -> dict[str, Any]:
    """What the replay's rebuild left (--keep-staging): its dead letters and staging database as haystacks, then
    the database dropped; the staging topic's name (raw input, scanned only as the control, then deleted with its
    DLQ at the end of the test)."""
    topic, staging_db = f"{run.raw_topic}.replay-{run_id}", f"{run.db}_replay_{run_id}"
    assert {topic, topic + ".dlq"} <= set(list_topics(run.stack.kafka_bootstrap)), "control: staging kept"
    letters = read_topics(run.stack.kafka_bootstrap, [topic + ".dlq"])[topic + ".dlq"]
    dump = _influx_dump(run.stack.influx_v1_url, staging_db)
    assert "ecg_anonymized" in dump[0][1], "control: the staging database holds the rebuild's points"
    haystacks = [(f"staging DLQ {topic}.dlq", b"".join(record.value or b"" for record in letters)),
                 *((f"staging db: {statement}", text) for statement, text in dump)]
    query_v1(run.stack.influx_v1_url, f'DROP DATABASE "{staging_db}"')
    return {"topic": topic, "haystacks": haystacks}
