"""One-time backfill from raw ECG frames stored in InfluxDB (`python -m backfill`) on the real local stack: the
frames of a time range, read in slices from an input database in the documented schema, give exactly the points
streaming mode publishes for them (the reference model), contract-violating frames become dead letters with their
reason, and a second run of the same backfill leaves the output database unchanged. The dead letters of a backfill
stay actionable after its staging topic is gone: `python -m replay --influx-backfill-*` stages the range again from
the input database and replays them through a fix-up into exactly the points of the unbroken frames."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from backfill.cli import staging_topic_name
from backfill.influx_input import RawRecord, raw_point_line
from connectors.config import PROJECT_ROOT, load_settings
from devstack.influx_queries import create_database_v1, query_v1, write_v1
from devstack.kafka_admin import create_topics
from devstack.simulator import SimConfig, SimMessage, generate_messages
from testkit.jobs import TEST_SECRET
from testkit.kafka_topics import list_topics, read_topic
from testkit.reference import expected_output
from tests.integration.support import IsolatedRun, find_needles, visible_classes_below_k
from tests.integration.test_replay import _broken, _replay, reference_points, stored_points

START_MS = 1_763_812_800_000  # window-aligned
STOP_MS = START_MS + 15_000  # the backfilled range [START_MS, STOP_MS): 3 windows; the stored frames run to 20 s
K = 5
FINISH_SECONDS = 300


def _messages() -> list[SimMessage]:
    config = SimConfig(patients=20, duration_s=20, start_ms=START_MS, sites=2, seed=5)
    messages = list(generate_messages(config))
    # A name with quotes, a backslash and a non-ASCII letter (JSON escapes): must survive line protocol and
    # InfluxDB unchanged, or the frame would come back as invalid JSON (a dead letter).
    first = json.loads(messages[0].value)
    first["patient_name"] = 'Zoë "Q" O\\Brien'
    messages[0] = dataclasses.replace(messages[0], value=json.dumps(first).encode("utf-8"))
    return messages


def _bad_records(valid: SimMessage) -> dict[str, RawRecord]:
    """Contract-violating messages (own device ids, so they never overwrite a valid frame's point)."""
    frame = json.loads(valid.value)
    at = valid.timestamp_ms + 500

    def record(device: str, value: bytes, timestamp_ms: int = at) -> RawRecord:
        return RawRecord(device.encode(), value, timestamp_ms)

    too_old = {**frame, "device_id": "dev-bad-1", "ts": at, "age": 200}
    no_samples = {key: value for key, value in frame.items() if key != "samples"} | {"device_id": "dev-bad-2",
                                                                                    "ts": at}
    stale = {**frame, "device_id": "dev-bad-4", "ts": at - 120_000}  # 2 min off its record timestamp
    return {
        "out_of_range": record("dev-bad-1", json.dumps(too_old).encode()),
        "missing_field": record("dev-bad-2", json.dumps(no_samples).encode()),
        "invalid_json": record("dev-bad-3", b'{"device_id": "dev-bad-3", "ts": '),
        "ts_mismatch": record("dev-bad-4", json.dumps(stale).encode()),
    }


def _fingerprint(url: str, db: str) -> dict[str, tuple[int, str]]:
    """Per measurement of the output database: its rows and a digest of all of them (every tag, field, time)."""
    measurements = [row["name"] for row in query_v1(url, "SHOW MEASUREMENTS", db)]
    found = {}
    for measurement in measurements:
        rows = query_v1(url, f'SELECT * FROM "{measurement}"', db)
        text = "\n".join(sorted(json.dumps(row, sort_keys=True) for row in rows))
        found[measurement] = (len(rows), hashlib.sha256(text.encode()).hexdigest())
    return found


def _backfill(run: IsolatedRun, input_db: str, work_dir: Path) -> tuple[int, str, float]:
    command = [sys.executable, "-m", "backfill", *run.job_args("--k-anonymity", str(K), "--cardio-branch", "false"),
               "--influx-input-db", input_db, "--influx-input-slice-seconds", "4",
               "--from", "2025-11-22T12:00:00Z", "--to", str(STOP_MS), "--work-dir", str(work_dir)]
    environment = dict(os.environ, PSEUDONYM_SECRET=TEST_SECRET)
    started = time.monotonic()
    done = subprocess.run(command, cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True,
                          timeout=FINISH_SECONDS, check=False)
    job_log = (work_dir / "job.log").read_text(errors="replace") if (work_dir / "job.log").exists() else ""
    output = done.stdout + done.stderr + job_log[-3000:]
    assert TEST_SECRET not in done.stdout + done.stderr + job_log
    return done.returncode, output, time.monotonic() - started


def _letters(run: IsolatedRun) -> list[tuple[str, int, int, str, Any]]:
    letters = [json.loads(record.value) for record in run.dead_letters()]
    return [(letter["topic"], letter["partition"], letter["offset"], letter["reason"], letter["device_id"])
            for letter in letters]


def test_backfill_from_influxdb_gives_the_streaming_points(isolated_run: IsolatedRun, tmp_path: Path) -> None:
    run, stack = isolated_run, isolated_run.stack
    messages = _messages()
    bad = _bad_records(messages[0])
    input_db = "raw_" + uuid.uuid4().hex[:10]
    create_database_v1(stack.influx_v1_url, input_db)
    stored = [RawRecord(m.key, m.value, m.timestamp_ms) for m in messages] + list(bad.values())
    write_v1(stack.influx_v1_url, input_db, [raw_point_line("ecg_raw", record) for record in stored])
    in_range = [m for m in messages if START_MS <= m.timestamp_ms < STOP_MS]
    expected = expected_output(in_range, k=K)
    assert expected.windows == 2 * 3 and 0 < expected.points < expected_output(messages, k=K).points  # control

    returncode, output, first_seconds = _backfill(run, input_db, tmp_path / "first")
    assert returncode == 0, output
    assert f"staged {len(in_range) + len(bad)} records" in output and "(4 partitions)" in output, output
    assert run.points() == expected.points
    assert run.points_by_level() == expected.points_by_level
    assert run.points(where='"imputed" = true') == expected.imputed_points
    letters = _letters(run)
    assert Counter(reason for _, _, _, reason, _ in letters) == Counter(bad.keys()), letters
    assert {device for *_, device in letters} == {"dev-bad-1", "dev-bad-2", "dev-bad-4", None}  # 3: no valid id
    staging = {topic for topic, *_ in letters}
    assert len(staging) == 1 and staging.pop().startswith(run.raw_topic + ".influx-backfill-")
    assert not [topic for topic in list_topics(stack.kafka_bootstrap)
                if topic.startswith(run.raw_topic + ".influx-backfill-")], "the staging topic (raw input) is deleted"
    before = _fingerprint(stack.influx_v1_url, run.db)
    assert before["ecg_anonymized"][0] == expected.points

    returncode, output, second_seconds = _backfill(run, input_db, tmp_path / "second")
    assert returncode == 0, output
    assert _fingerprint(stack.influx_v1_url, run.db) == before
    # The re-run's dead letters are exact duplicates by source position (the DLQ's dedup key).
    again = _letters(run)
    assert len(again) == 2 * len(letters) and sorted(again[len(letters):]) == sorted(letters)
    print(f"backfill runs: {first_seconds:.0f} s, {second_seconds:.0f} s")


@pytest.mark.slow  # a backfill and two replays, each a job run: about 6 minutes on 2 shared cores
def test_dead_letters_of_a_backfill_replay_from_the_input_database(isolated_run: IsolatedRun,
                                                                   tmp_path: Path) -> None:
    """Three devices of one ward stored 5 s of frames with "ecg" instead of "samples" (a firmware bug): the backfill
    dead-letters them (missing_field) into positions of its staging topic, then deletes that topic and says how to
    replay them. The replay stages the range again from the input database (same topic, same positions), fixes the
    originals and merges: the output is then exactly the reference model over the unbroken frames; a second replay
    changes nothing. No letter and nothing either tool prints holds a raw identifier."""
    run, stack = isolated_run, isolated_run.stack
    messages = list(generate_messages(SimConfig(patients=20, duration_s=15, start_ms=START_MS, sites=2, seed=5)))
    assert all(START_MS <= m.timestamp_ms < STOP_MS for m in messages)
    frames = {json.loads(m.value)["device_id"]: json.loads(m.value) for m in messages}
    ward = sorted(frame["site"] for frame in frames.values())[0]
    devices = sorted(device for device, frame in frames.items() if frame["site"] == ward)[:3]
    broken = {id(m) for m in messages if json.loads(m.value)["device_id"] in devices
              and START_MS + 5_000 <= m.timestamp_ms < START_MS + 10_000}
    assert len(broken) >= 10
    input_db = "raw_" + uuid.uuid4().hex[:10]
    create_database_v1(stack.influx_v1_url, input_db)
    write_v1(stack.influx_v1_url, input_db, [
        raw_point_line("ecg_raw", RawRecord(m.key, _broken(m) if id(m) in broken else m.value, m.timestamp_ms))
        for m in messages])

    returncode, backfill_output, _ = _backfill(run, input_db, tmp_path / "backfill")
    assert returncode == 0, backfill_output
    hint = f"python -m replay --influx-backfill-from {START_MS} --influx-backfill-to {STOP_MS} " \
           "--influx-backfill-partitions 4"
    assert f"WARNING: {len(broken)} dead letters of this backfill" in backfill_output and hint in backfill_output
    letters = _letters(run)
    assert [reason for _, _, _, reason, _ in letters] == ["missing_field"] * len(broken), letters
    assert {topic for topic, *_ in letters} == {staging_topic_name(
        load_settings(run.job_args("--pseudonym-secret", TEST_SECRET), environ={}), f"v1:{input_db}/ecg_raw",
        START_MS, STOP_MS)}
    reference = reference_points(messages)
    before = stored_points(run)
    assert before != reference and len(before) < len(reference), "control: the broken frames are missing"

    def staging_topics() -> list[str]:
        return [t for t in list_topics(stack.kafka_bootstrap)
                if t.startswith(run.raw_topic + ".influx-backfill-") and not t.endswith(".replay-corrections")]

    assert staging_topics() == []
    replay_args = ("--influx-backfill-from", str(START_MS), "--influx-backfill-to", str(STOP_MS),
                   "--influx-input-db", input_db)
    first, first_output = _replay(run, tmp_path, "first", *replay_args, merge_until=None)
    assert first["outcomes"] == {"replayed": len(broken), "would_replay": 0, "already_replayed": 0, "not_merged": 0,
                                 "gone": 0, "skipped": 0, "fix_failed": 0, "still_invalid": 0}, first_output[-3000:]
    assert first["rebuild"]["merge_until_ms"] == STOP_MS and first["merge"]["windows_changed"] >= 1
    assert stored_points(run) == reference
    assert visible_classes_below_k(stack.influx_v1_url, run.db, K) == []
    assert staging_topics() == [], "the input staged again for the replay is deleted"

    second, second_output = _replay(run, tmp_path, "second", *replay_args, merge_until=None)
    assert second["outcomes"]["already_replayed"] == len(broken) and second["corrections_written"] == 0
    assert second["merge"]["windows_changed"] == 0 and second["merge"]["write_requests"] == 0
    assert second["merge"]["statements"] == 0
    assert stored_points(run) == reference and staging_topics() == []

    identifiers = {value for m in messages for value in (m.patient_id, m.patient_name) if value}
    dead_letters = b"".join(record.value or b"" for record in run.dead_letters())
    corrections = b"".join(r.value or b"" for r in read_topic(stack.kafka_bootstrap,
                                                                f"{run.raw_topic}.replay-corrections"))
    assert find_needles([("corrections", corrections)], identifiers), "control: the scan finds raw identifiers"
    assert find_needles([("letters", dead_letters), ("backfill", backfill_output), ("first replay", first_output),
                         ("second replay", second_output)], identifiers) == []


def test_refusals_and_an_empty_range(isolated_run: IsolatedRun, tmp_path: Path) -> None:
    """Exit 2 before anything is staged for a bad range, a missing input database and a staging topic that
    exists already (left in place); exit 0 without a job for a range without frames."""
    run, stack = isolated_run, isolated_run.stack

    def backfill(*extra: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "backfill", *run.job_args("--cardio-branch", "false"), *extra]
        return subprocess.run(command, cwd=PROJECT_ROOT, env=dict(os.environ, PSEUDONYM_SECRET=TEST_SECRET),
                              capture_output=True, text=True, timeout=120, check=False)

    def staging_topics() -> list[str]:
        return [t for t in list_topics(stack.kafka_bootstrap) if t.startswith(run.raw_topic + ".influx-backfill-")]

    done = backfill("--influx-input-db", "x", "--from", "2025-11-22T12:00:10Z", "--to", "2025-11-22T12:00:00Z")
    assert done.returncode == 2 and "--to must be after --from" in done.stderr, done.stderr
    assert staging_topics() == []

    done = backfill("--influx-input-db", "raw_missing_" + uuid.uuid4().hex[:6], "--from", "0", "--to", "1000")
    assert done.returncode == 2 and "input error" in done.stderr and "database not found" in done.stderr, done.stderr
    assert staging_topics() == []  # deleted after the failed read

    input_db = "raw_" + uuid.uuid4().hex[:10]
    create_database_v1(stack.influx_v1_url, input_db)
    done = backfill("--influx-input-db", input_db, "--from", str(START_MS), "--to", str(STOP_MS))
    assert done.returncode == 0 and "staged 0 records" in done.stdout, done.stdout + done.stderr
    assert staging_topics() == [] and run.points() == 0 and run.dead_letters() == []

    # A job that does not end in time: exit 1, its process group killed, the staging topic deleted.
    write_v1(stack.influx_v1_url, input_db, [raw_point_line("ecg_raw", RawRecord(m.key, m.value, m.timestamp_ms))
                                             for m in _messages()[:40]])
    done = backfill("--influx-input-db", input_db, "--from", str(START_MS), "--to", str(STOP_MS),
                    "--job-timeout-seconds", "2", "--work-dir", str(tmp_path / "timeout"))
    assert done.returncode == 1 and "backfill job failed (exit -1)" in done.stderr, done.stdout + done.stderr
    assert staging_topics() == []
    assert not [pid for pid in _pids() if str(tmp_path / "timeout") in _cmdline(pid)], "the job was killed"

    settings = load_settings(run.job_args("--pseudonym-secret", TEST_SECRET), environ={})
    taken = staging_topic_name(settings, f"v1:{input_db}/ecg_raw", START_MS, STOP_MS)
    create_topics(stack.kafka_bootstrap, {taken: 1})
    done = backfill("--influx-input-db", input_db, "--from", str(START_MS), "--to", str(STOP_MS))
    assert done.returncode == 2 and f"staging topic {taken} exists" in done.stderr, done.stderr
    assert staging_topics() == [taken], "a staging topic the run did not create is left alone"


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
