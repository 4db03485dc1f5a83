"""Fix-ups of a replay (replay/fixup.py): loading, dict and bytes functions, skips, failures; no message
content in any note."""

from __future__ import annotations

import json

import pytest

from replay.fixup import FixError, apply_fix, identity, load_fix

FRAME = {"device_id": "dev-1", "patient_id": "MRN-SECRET-77", "patient_name": "Erika Mustermann", "ecg": [0.1]}
RAW = json.dumps(FRAME).encode()


def test_dict_fix_renames_a_field() -> None:
    fix = load_fix("tests.integration.replay_fixes:rename_ecg_to_samples")
    assert not fix.takes_bytes
    result = apply_fix(fix, RAW)
    assert result.outcome == "" and json.loads(result.message or b"") == {**{k: v for k, v in FRAME.items()
                                                                            if k != "ecg"}, "samples": [0.1]}


def test_bytes_fix_and_identity() -> None:
    fix = load_fix("tests.integration.replay_fixes:strip_bytes")
    assert fix.takes_bytes
    assert apply_fix(fix, b"  " + RAW + b"\n").message == RAW
    assert apply_fix(identity(), b"\xff not json").message == b"\xff not json"


def test_skips_and_failures_are_reported_without_the_message() -> None:
    fix = load_fix("tests.integration.replay_fixes:rename_ecg_to_samples")
    assert apply_fix(fix, b"{not json").outcome == "skipped"
    assert apply_fix(fix, b"[1, 2]").note == "not a JSON object (the fix takes a dict)"
    already = json.dumps({"samples": [1], "patient_id": "MRN-SECRET-77"}).encode()
    assert (apply_fix(fix, already).outcome, apply_fix(fix, already).note) == ("skipped", "the fix returned None")
    quoting = load_fix("tests.integration.replay_fixes:skip_quoting_the_patient")
    result = apply_fix(quoting, RAW)
    assert result.outcome == "skipped" and "MRN-SECRET-77" not in result.note and "***" in result.note
    failing = load_fix("tests.integration.replay_fixes:fail_quoting_the_patient")
    result = apply_fix(failing, RAW)
    assert (result.outcome, result.note) == ("fix_failed", "KeyError")


@pytest.mark.parametrize("spec", ["nomodule", "tests.integration.replay_fixes:missing", "no.such.module:f",
                                  "tests.integration.replay_fixes:NOT_CALLABLE"])
def test_bad_fix_specs_are_refused(spec: str) -> None:
    with pytest.raises(FixError):
        load_fix(spec)
