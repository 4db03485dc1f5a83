"""Pure parts of the replay CLI: which letters are selected, which windows a rebuild may replace."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from connectors.config import ConfigError, load_settings
from replay.cli import Summary, build_parser, job_command, merge_range, select
from replay.kafka_io import CopyReport

START = 1_763_812_800_000


def settings():  # type: ignore[no-untyped-def]
    return load_settings(["--env-file", "/dev/null"], environ={"PSEUDONYM_SECRET": "s" * 32})


def args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_known_args(list(argv))[0]


LETTERS = {
    (0, 1): {"reason": "missing_field", "device_id": "dev-1", "timestamp": START},
    (0, 2): {"reason": "invalid_json", "device_id": None, "timestamp": START + 5_000},
    (1, 7): {"reason": "missing_field", "device_id": "dev-2", "timestamp": START + 10_000},
    (2, 3): {"reason": "late", "timestamp": None, "pid": "abc"},
}


def test_selection_by_reason_device_and_time() -> None:
    assert select(LETTERS, args()) == sorted(LETTERS)
    assert select(LETTERS, args("--reason", "missing_field")) == [(0, 1), (1, 7)]
    assert select(LETTERS, args("--reason", "missing_field", "--reason", "late")) == [(0, 1), (1, 7), (2, 3)]
    assert select(LETTERS, args("--device", "dev-2")) == [(1, 7)]
    assert select(LETTERS, args("--since", str(START + 5_000))) == [(0, 2), (1, 7)]
    assert select(LETTERS, args("--until", "2025-11-22T12:00:05Z")) == [(0, 1)]


def copy(begin: dict[int, int], first: dict[int, int], last: dict[int, int]) -> CopyReport:
    return CopyReport(begin=begin, end={p: 100 for p in begin}, first_ts=first, last_ts=last)


def test_merge_range() -> None:
    whole = copy({0: 0, 1: 0}, {0: START + 300, 1: START + 1_000}, {0: START + 29_000, 1: START + 21_500})
    summary = Summary("t")
    assert merge_range(settings(), whole, "end", summary) == (START, START + 35_000)
    # auto: windows every partition is past by MAX_OUT_OF_ORDERNESS_SECONDS (2 s): partition 1 is at 21.5 s
    assert merge_range(settings(), whole, "auto", summary) == (START, START + 15_000)
    assert merge_range(settings(), whole, str(START + 12_000), summary) == (START, START + 10_000)
    assert summary.warnings == []
    truncated = copy({0: 5, 1: 0}, {0: START + 7_000, 1: START}, {0: START + 29_000, 1: START + 29_000})
    assert merge_range(settings(), truncated, "end", summary)[0] == START + 10_000
    assert "truncated" in summary.warnings[0]
    with pytest.raises(ConfigError):
        merge_range(settings(), whole, "soon", summary)


def test_the_rebuild_job_gets_its_own_everything() -> None:
    command = job_command(["--k-anonymity", "7", "--kafka-input-topic", "ecg-raw"], settings(), "r1", "staging",
                          "ecg_replay_r1", Path("/tmp/w"))
    parsed = load_settings(command[3:], environ={"PSEUDONYM_SECRET": "s" * 32})
    assert (parsed.k_anonymity, parsed.kafka_input_topic, parsed.influx_db) == (7, "staging", "ecg_replay_r1")
    assert (parsed.kafka_stop_at, parsed.cardio_branch, parsed.from_checkpoint, parsed.csv_output_dir) == (
        "latest", False, "", "")
    assert parsed.kafka_dlq_topic == "staging.dlq" and parsed.kafka_group_id.endswith("-replay-r1")
    assert parsed.kafka_delivery == "at-least-once" and parsed.job_name.endswith("-replay")


def test_an_original_gone_from_the_input_comes_from_its_sealed_copy_with_the_key_only() -> None:
    import json

    from contract.frames import Rejection
    from privacy.dead_letters import DeadLetterOptions, Position, dead_letter
    from replay.cli import original_of

    key = bytes(range(32))
    raw = b'{"device_id": "dev-1", "patient_id": "MRN-SECRET-77", "ecg": [0.1]}'
    letter = json.loads(dead_letter(
        raw, Rejection("missing_field", "samples"), Position("ecg-raw", 3, 0, START),
        DeadLetterOptions(secret=b"s" * 32, raw_mode="encrypted", raw_key=key, raw_key_id="k1")))
    assert "MRN-SECRET-77" not in str(letter)
    environ = {"PSEUDONYM_SECRET": "s" * 32, "DLQ_RAW_KEY": key.hex(), "DLQ_RAW_KEY_ID": "k1"}
    with_key = load_settings(["--env-file", "/dev/null"], environ=environ)
    assert original_of(letter, "deleted (the partition now starts at offset 1)", with_key) == (raw, "")
    message, why = original_of(letter, "deleted (the partition now starts at offset 1)", settings())
    assert message is None and "raw copy does not open" in why and "MRN" not in why
    plain = {**letter, "raw": None}
    assert original_of(plain, "deleted (x)", with_key) == (None, "original deleted (x); the letter holds no raw copy "
                                                                 "(DLQ_RAW=none)")
