"""The anonymization job's operators (build_pipeline) on collections in a local PyFlink mini cluster, checked
against the reference model (testkit.reference): windows, levels, suppression, DLQ routing with reasons,
the accounting of every input record, and the privacy of the output. No Kafka, no InfluxDB: seconds to tens of
seconds each. What depends on the services (Kafka positions and partitions, restore, outages, exactly-once,
what InfluxDB readers see) stays in tests/integration/."""

from __future__ import annotations

import json
import os
import random
from collections import Counter, defaultdict
from typing import Any

import pytest

from contract.frames import REASON_INVALID_JSON
from devstack.bad_input_corpus import BadInput, bad_inputs, valid_frame
from devstack.simulator import SimConfig, SimMessage, generate_messages
from hierarchy.loader import load_hierarchy
from privacy.pseudonym import pseudonymize
from testkit.jobs import TEST_SECRET
from testkit.pipeline import TOPIC, InputRecord, PipelineOutput, records_of, run_pipeline
from testkit.privacy_audit import cross_window_attack_prefixes, true_quasi_identifiers
from testkit.reference import anonymized_windows, expected_output

# PyFlink's in-process (loopback) Python worker: Beam's gRPC reader thread raises CANCELLED when the finished job
# hangs up its channel. Noise of a job's normal end, not of the operators under test.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")

START_MS = 1_763_812_800_000  # window-aligned
K = 5
WINDOW_MS = 5000


def points_by_level(output: PipelineOutput) -> Counter[int]:
    counts: Counter[int] = Counter()
    for window in output.windows:
        for frame in window.frames:
            counts[frame.level] += frame.points
    return +counts


def test_windows_levels_and_dead_letters_are_the_reference_models() -> None:
    """The operator assertions of tests/integration/test_job_end_to_end.py (which stays in the default run: the
    Kafka -> job -> InfluxDB + DLQ path) and of test_accounting.py (Flink's metrics over REST), on a collection:
    exact points per level, imputed points, pseudonyms, each window's published frames, DLQ reasons, and every
    input record accounted for (control + dead-lettered + valid; valid = anonymized = published + suppressed)."""
    messages = list(generate_messages(SimConfig(patients=20, duration_s=30, start_ms=START_MS, sites=2,
                                                bad_fraction=0.05, end_of_stream=True, partitions=4, seed=7)))
    bad = [message for message in messages if message.kind == "bad"]
    frames = [message for message in messages if message.kind == "frame"]
    controls = [message for message in messages if message.kind == "control"]
    assert len(bad) + len(frames) + len(controls) == len(messages) and bad and controls
    expected = expected_output(messages, k=K)
    assert len(expected.points_by_level) >= 2

    output = run_pipeline(records_of(messages), ["--k-anonymity", str(K)])

    assert sum(frame.points for window in output.windows for frame in window.frames) == expected.points
    assert points_by_level(output) == expected.points_by_level
    assert sum(f.points for w in output.windows for f in w.frames if f.imputed) == expected.imputed_points
    assert {f.pid for w in output.windows for f in w.frames} == expected.pids
    # Window by window: the same frames at the same levels with the same labels.
    reference = {(group, start): result for group, start, result in anonymized_windows(messages, k=K)}
    assert [(w.group, w.window_start_ms) for w in output.windows] == sorted(reference)
    for window in output.windows:
        published = reference[(window.group, window.window_start_ms)].published
        assert sorted((f.pid, f.ts_ms, f.level, sorted(f.labels.items())) for f in window.frames) == sorted(
            (p.pid, p.ts_ms, int(p.level), sorted(p.qi.items())) for p in published)

    # Accounting: nothing lost, nothing counted twice, no late frame (the collection is in event-time order).
    assert all(window.accounting_ok for window in output.windows)
    assert sum(window.frames_in for window in output.windows) == len(frames)
    assert all(w.frames_in == w.frames_published + w.frames_suppressed for w in output.windows)
    assert len(output.dead_letters) == len(bad)
    assert Counter(entry["reason"] for entry in output.dead_letters) == Counter(m.expected_reason for m in bad)
    assert {entry["topic"] for entry in output.dead_letters} == {TOPIC}
    assert len({(entry["partition"], entry["offset"]) for entry in output.dead_letters}) == len(bad)


def _interleaved(valid: list[SimMessage], corpus: list[BadInput]) -> tuple[list[InputRecord], dict[tuple[int, int],
                                                                                                     BadInput]]:
    """Valid frames with the corpus spread evenly between them (record timestamp: the previous frame's, or the
    entry's own), on 4 partitions; and the corpus entry at each (partition, offset)."""
    order = list(corpus)
    random.Random(42).shuffle(order)
    records: list[InputRecord] = []
    bad_at: dict[tuple[int, int], BadInput] = {}
    offsets = [0, 0, 0, 0]
    step = max(1, len(valid) // (len(order) + 1))
    last_ts = START_MS

    def append(value: bytes, timestamp_ms: int) -> tuple[int, int]:
        partition = len(records) % 4
        records.append(InputRecord(partition, offsets[partition], timestamp_ms, value))
        offsets[partition] += 1
        return partition, offsets[partition] - 1

    for index, message in enumerate(valid):
        append(message.value, message.timestamp_ms)
        last_ts = message.timestamp_ms
        if index % step == step - 1 and order:
            entry = order.pop()
            ts = entry.record_timestamp_ms if entry.record_timestamp_ms is not None else last_ts
            bad_at[append(entry.value, ts)] = entry
    for entry in order:
        bad_at[append(entry.value, entry.record_timestamp_ms or last_ts)] = entry
    return records, bad_at


def test_bad_input_corpus_is_dead_lettered_with_its_reasons() -> None:
    """The DLQ routing of tests/integration/test_bad_input.py on a collection: every corpus entry (the 10 MB one
    included) and a tombstone's empty value dead-lettered exactly once at its position with its specific reason,
    its size and record timestamp, no raw copy, no identifier, the pseudonym where readable; the valid frames
    around them published exactly. The integration test keeps what needs Kafka and the cluster (the 10 MB
    record and the tombstone through the broker, no restart in REST and Flink's log)."""
    valid = list(generate_messages(SimConfig(patients=10, duration_s=20, start_ms=START_MS, sites=2, seed=23)))
    corpus = [*bad_inputs(START_MS, include_oversized=True), BadInput("kafka_tombstone", b"", REASON_INVALID_JSON)]
    records, bad_at = _interleaved(valid, corpus)
    assert len(bad_at) == len(corpus)
    expected = expected_output(valid, k=K)

    environment = dict(os.environ)
    output = run_pipeline(records, ["--k-anonymity", str(K)])
    # PyFlink's loopback workers set PYFLINK_GATEWAY_DISABLED here: left behind, every job the integration tests
    # start afterwards from this process died at its first PyFlink call.
    assert dict(os.environ) == environment

    assert sum(frame.points for window in output.windows for frame in window.frames) == expected.points
    assert points_by_level(output) == expected.points_by_level
    positions = Counter((entry["partition"], entry["offset"]) for entry in output.dead_letters)
    assert set(positions) == set(bad_at) and set(positions.values()) == {1}
    by_position = {(record.partition, record.offset): record for record in records}
    identifiers = (valid_frame()["patient_id"], valid_frame()["patient_name"], "Jürgen")
    wrong = []
    for entry in output.dead_letters:
        where = (entry["partition"], entry["offset"])
        bad, record = bad_at[where], by_position[where]
        if entry["reason"] != bad.expected_reason:
            wrong.append(f"{bad.name}: {entry['reason']} ({entry['detail']}), expected {bad.expected_reason}")
        assert entry["topic"] == TOPIC and entry["timestamp"] == record.timestamp_ms, bad.name
        assert entry["raw"] is None and entry["raw_bytes"] == len(bad.value), bad.name
        text = json.dumps(entry, ensure_ascii=False)
        assert not [needle for needle in identifiers if needle in text], (bad.name, text[:400])
    assert not wrong, "wrong reasons:\n" + "\n".join(wrong)
    corpus_pid = pseudonymize(valid_frame()["patient_id"], TEST_SECRET.encode(), 32, scope=valid_frame()["site"])
    with_pid = [entry for entry in output.dead_letters if entry["pid"] is not None]
    assert len(with_pid) >= 60 and all(entry["pid"] == corpus_pid for entry in with_pid)
    assert all(entry["structure"] is not None for entry in with_pid)


def test_auditor_and_cross_window_attacker_on_the_output() -> None:
    """Was tests/integration/test_privacy_of_the_output.py (now `slow`), same workload and assertions on the
    published frames instead of InfluxDB's points: three churning wards of 20, k = 5; every (window, class) of
    published frames holds >= k pseudonyms, the cross-window attacker finds >= k candidates after every window,
    and the output is the reference model's. InfluxDB's tags of the same frames: test_job_end_to_end.py;
    what readers see during InfluxDB faults: test_readers_never_see_below_k.py."""
    messages = list(generate_messages(SimConfig(patients=60, duration_s=120, start_ms=START_MS, sites=3, churn=True,
                                                end_of_stream=True, partitions=4, seed=41)))
    expected = expected_output(messages, k=K)
    true_qi = true_quasi_identifiers(messages, TEST_SECRET)
    assert len(true_qi) == 60

    output = run_pipeline(records_of(messages), ["--k-anonymity", str(K)])

    assert sum(frame.points for window in output.windows for frame in window.frames) == expected.points
    assert points_by_level(output) == expected.points_by_level
    # The auditor: published frames grouped by the window of their timestamps and by class.
    classes: dict[tuple[Any, ...], set[str]] = defaultdict(set)
    points: list[tuple[str, int, int, dict[str, str]]] = []
    for window in output.windows:
        for frame in window.frames:
            if frame.level < 9 and frame.points:
                start = frame.ts_ms - frame.ts_ms % WINDOW_MS
                classes[(start, frame.level, *sorted(frame.labels.items()))].add(frame.pid)
                points.append((frame.pid, frame.ts_ms, frame.level, frame.labels))
    assert [key for key, pids in classes.items() if len(pids) < K] == []
    assert {pid for pid, *_ in points} == set(true_qi), "every patient published with a label"
    worst, below = cross_window_attack_prefixes(load_hierarchy(), points, true_qi, K, WINDOW_MS)
    assert below == [] and worst >= K
