"""Fix-ups for the replay tests (``python -m replay --fix tests.integration.replay_fixes:rename_ecg_to_samples``)."""

from __future__ import annotations

from typing import Any

from replay.fixup import Skip

NOT_CALLABLE = 1


def rename_ecg_to_samples(frame: dict[str, Any]) -> dict[str, Any] | None:
    """A device firmware that sent its samples as "ecg": renamed back to the contract's "samples"."""
    if "samples" in frame or "ecg" not in frame:
        return None
    frame["samples"] = frame.pop("ecg")
    return frame


def strip_bytes(message: bytes) -> bytes:
    return message.strip()


def skip_quoting_the_patient(frame: dict[str, Any]) -> dict[str, Any]:
    raise Skip(f"not repairable for {frame['patient_id']}")


def fail_quoting_the_patient(frame: dict[str, Any]) -> dict[str, Any]:
    raise KeyError(frame["patient_id"])
