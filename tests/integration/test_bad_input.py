"""Bad-input corpus through the real job: every hostile message is dead-lettered, nothing restarts.

All 101 entries of `devstack.bad_input_corpus` (a ~10 MB message, 10 000-deep nesting, non-UTF-8,
NaN/Infinity, duplicate keys, 5000-sample arrays, absurd timestamps, ...) and a Kafka tombstone are
produced to the input topic interleaved with valid simulator frames, spread over all four partitions, followed by
end-of-stream controls. The job must

- dead-letter each bad message exactly once, with its specific reason, matched by (partition,
  offset) to what the producer got back, with its size and record timestamp but no raw input and no
  identifier (privacy/dead_letters.py: DLQ_RAW=none by default);
- never fail or restart (REST `numRestarts` = 0, job RUNNING, no restart in Flink's log);
- publish all the valid frames around them: InfluxDB holds exactly the reference model's points.

The routing itself (reasons, positions, letter contents, the valid frames around them) is also checked on the
job's operators in a mini cluster, in seconds: tests/flink_jobs/test_pipeline_on_collections.py::
test_bad_input_corpus_is_dead_lettered_with_its_reasons. This test stays in the default run for what needs the
services: the 10 MB record and a tombstone through Kafka, positions from the broker, no restart in REST and
Flink's log.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from contract.frames import MAX_MESSAGE_BYTES, REASON_INVALID_JSON, REASON_OVERSIZED
from devstack.bad_input_corpus import BadInput, bad_inputs, valid_frame
from devstack.influx_queries import count_points_v1, create_database_v1
from devstack.processes import free_port
from devstack.simulator import SimConfig, SimMessage, end_of_stream_messages, generate_messages
from privacy.pseudonym import pseudonymize
from testkit.flink_rest import job_restart_lines, job_restarts, rest_get, running_job_id
from testkit.jobs import TEST_SECRET, JobProcess, job_args, wait_until
from testkit.kafka_topics import make_large_producer, read_topics
from testkit.reference import expected_output

START_MS = 1_763_812_800_000  # window-aligned, fixed so the run is reproducible
K = 5
PARTITIONS = 4
TOMBSTONE = "kafka_tombstone"


def _interleave(valid: list[SimMessage], corpus: list[BadInput]) -> list[tuple[SimMessage | None, BadInput | None,
                                                                                int | None]]:
    """(valid, None, None) and (None, bad, partition) items: bad ones spread evenly between valid
    frames. Bad record timestamps are the surrounding frame's (inside the data's time range, so they
    do not move the watermark), or the entry's own where it needs one (ts_mismatch)."""
    order = list(corpus)
    random.Random(42).shuffle(order)
    # The oversized entries early: many valid frames follow them on their partitions.
    order.sort(key=lambda entry: entry.expected_reason != REASON_OVERSIZED)
    items: list[tuple[SimMessage | None, BadInput | None, int | None]] = []
    step = len(valid) / (len(order) + 1)
    next_bad = 0
    for index, message in enumerate(valid):
        items.append((message, None, None))
        while next_bad < len(order) and (next_bad + 1) * step <= index + 1:
            items.append((None, order[next_bad], next_bad % PARTITIONS))
            next_bad += 1
    items.extend((None, entry, i % PARTITIONS) for i, entry in enumerate(order[next_bad:], start=next_bad))
    return items


IDENTIFIERS = (valid_frame()["patient_id"], valid_frame()["patient_name"], "Jürgen")


def _check_letter(entry: dict[str, Any], value: bytes, timestamp_ms: int, where: str) -> None:
    """Position, size and record timestamp; no raw copy and no identifier (the corpus' own are in it)."""
    assert entry["raw"] is None and entry["raw_bytes"] == len(value), where
    assert entry["timestamp"] == timestamp_ms, where
    text = json.dumps(entry, ensure_ascii=False)
    assert not [needle for needle in IDENTIFIERS if needle in text], (where, text[:400])


def test_bad_input_corpus_is_dead_lettered_without_restarts(local_stack, fresh_topics, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (raw_topic,) = fresh_topics("ecg-raw", partitions=PARTITIONS)
    (dlq_topic,) = fresh_topics("ecg-dlq", partitions=1)
    db = "bad_" + uuid.uuid4().hex[:8]
    url = local_stack.influx_v1_url
    create_database_v1(url, db)

    valid = list(generate_messages(SimConfig(patients=20, duration_s=30, start_ms=START_MS, sites=2, seed=23)))
    assert all(message.valid for message in valid)
    expected = expected_output(valid, k=K)
    assert expected.points > 100_000 and len(expected.points_by_level) >= 2
    # The corpus' own `ts` is the stream start, so every record timestamp below is within the
    # 60 s ts tolerance of it: each entry is rejected for its own defect, never for ts_mismatch.
    corpus = bad_inputs(START_MS, include_oversized=True)
    assert len(corpus) >= 50 and len({entry.value for entry in corpus}) == len(corpus)
    assert max(len(entry.value) for entry in corpus) > 10_000_000
    # Beyond the corpus: a Kafka tombstone (null value), which the deserializer turns into b"".
    corpus.append(BadInput(TOMBSTONE, b"", REASON_INVALID_JSON))

    # Produce: one ordered producer; the position of every bad message comes from the broker.
    producer = make_large_producer(local_stack.kafka_bootstrap)
    sent_bad: list[tuple[BadInput, int, Any]] = []
    try:
        last_ts = START_MS
        for message, entry, partition in _interleave(valid, corpus):
            if message is not None:
                last_ts = message.timestamp_ms
                producer.send(raw_topic, value=message.value, key=message.key, timestamp_ms=message.timestamp_ms)
            else:
                assert entry is not None
                ts = entry.record_timestamp_ms if entry.record_timestamp_ms is not None else last_ts
                assert START_MS <= ts <= last_ts
                value, key = (None, b"dev-0042") if entry.name == TOMBSTONE else (entry.value, None)
                future = producer.send(raw_topic, value=value, key=key, partition=partition, timestamp_ms=ts)
                sent_bad.append((entry, ts, future))
        for control in end_of_stream_messages(PARTITIONS):
            producer.send(raw_topic, value=control.value, partition=control.partition,
                          timestamp_ms=control.timestamp_ms)
        producer.flush(timeout=120)
        bad_at: dict[tuple[int, int], BadInput] = {}
        sent_ts: dict[tuple[int, int], int] = {}
        for entry, ts, future in sent_bad:
            metadata = future.get(timeout=60)
            bad_at[(metadata.partition, metadata.offset)] = entry
            sent_ts[(metadata.partition, metadata.offset)] = ts
    finally:
        producer.close(timeout=10)
    assert len(bad_at) == len(corpus)
    assert {partition for partition, _ in bad_at} == set(range(PARTITIONS))

    port = free_port()
    job = JobProcess(
        job_args(local_stack, tmp_path / "checkpoints", "--influx-db", db, "--kafka-input-topic", raw_topic,
                 "--kafka-dlq-topic", dlq_topic, "--k-anonymity", str(K), "--web-ui-port", str(port)),
        tmp_path / "job.log",
    )
    try:
        jid = wait_until(lambda: running_job_id(port), 120, "the job RUNNING in REST /jobs/overview", job=job)
        wait_until(lambda: count_points_v1(url, db, "ecg_anonymized") >= expected.points, 180,
                   f"{expected.points} points in InfluxDB", job=job)
        wait_until(lambda: len(read_topics(local_stack.kafka_bootstrap, [dlq_topic], 2.0)[dlq_topic]) >= len(corpus),
                   60, f"{len(corpus)} dead letters", job=job)
        time.sleep(5)  # more checkpoint intervals: nothing more may arrive

        # All valid frames around the bad ones are published, exactly.
        assert count_points_v1(url, db, "ecg_anonymized") == expected.points

        # Every bad message dead-lettered exactly once, at its position, with its specific reason.
        records = read_topics(local_stack.kafka_bootstrap, [dlq_topic])[dlq_topic]
        entries = [json.loads(record.value) for record in records]
        positions = Counter((entry["partition"], entry["offset"]) for entry in entries)
        duplicated = {position: n for position, n in positions.items() if n > 1}
        assert not duplicated, f"dead-lettered more than once: {duplicated}"
        unexpected = set(positions) - set(bad_at)
        assert not unexpected, f"dead letters for messages that were not bad: {sorted(unexpected)}"
        missing = sorted(bad_at[position].name for position in set(bad_at) - set(positions))
        assert not missing, f"bad messages not dead-lettered: {missing}"
        wrong = []
        for entry in entries:
            bad = bad_at[(entry["partition"], entry["offset"])]
            assert entry["topic"] == raw_topic
            if entry["reason"] != bad.expected_reason:
                wrong.append(f"{bad.name}: {entry['reason']} ({entry['detail']}), expected {bad.expected_reason}")
            _check_letter(entry, bad.value, sent_ts[(entry["partition"], entry["offset"])], bad.name)
        assert not wrong, "wrong reasons:\n" + "\n".join(wrong)
        oversized = [e for e in entries if bad_at[(e["partition"], e["offset"])].name == "oversized_10mb"]
        assert len(oversized) == 1 and oversized[0]["raw_bytes"] > 10_000_000 > MAX_MESSAGE_BYTES
        # Letters of readable messages show their structure and the patient's pseudonym, never the id.
        corpus_pid = pseudonymize(valid_frame()["patient_id"], TEST_SECRET.encode(), 32, scope=valid_frame()["site"])
        with_pid = [e for e in entries if e["pid"] is not None]
        assert len(with_pid) >= 60 and all(e["pid"] == corpus_pid for e in with_pid), with_pid[:3]
        assert all(e["structure"] is not None for e in with_pid)

        # No restart because of input: REST says RUNNING with 0 restarts, Flink's log agrees.
        assert job.alive()
        details = rest_get(port, f"/jobs/{jid}")
        assert details["state"] == "RUNNING", details["state"]
        assert all(vertex["status"] == "RUNNING" for vertex in details["vertices"]), details["vertices"]
        assert details["timestamps"]["RESTARTING"] == 0 and details["timestamps"]["FAILING"] == 0, details
        restarts = wait_until(lambda: job_restarts(port, jid) is not None and [job_restarts(port, jid)], 30,
                              "the numRestarts metric in REST", job=job)
        assert restarts == [0]
        exceptions = rest_get(port, f"/jobs/{jid}/exceptions")
        assert not exceptions.get("exceptionHistory", {}).get("entries"), exceptions
        flink_log = job.flink_log_text()
        assert f"({jid}) switched from state CREATED to RUNNING" in flink_log, "restart check would be vacuous"
        assert job_restart_lines(flink_log) == []
        assert "unexpected error parsing" not in flink_log + job.log_text()
    finally:
        job.stop()
