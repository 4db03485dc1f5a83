"""Fix-up functions of a replay: ``--fix module:function``.

The function gets the original message and returns the repaired one, or None to leave the letter out
(reported as ``skipped``); it may also raise ``Skip("why")`` to give the reason. Its first parameter's
annotation chooses what it gets: ``bytes`` -> the raw message (returns bytes); anything else -> the message
as a JSON object (``dict``, returns a dict; a message that is not a JSON object is skipped). Example::

    def rename_samples(frame: dict) -> dict | None:   # a firmware that sent "ecg" instead of "samples"
        if "samples" in frame or "ecg" not in frame:
            return None
        frame["samples"] = frame.pop("ecg")
        return frame

Nothing of the message is ever printed: a skip reason is masked like a dead letter's detail (any string of
the message in it becomes ***), an exception is reported by its type only.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from privacy.dead_letters import mask_detail


class Skip(Exception):
    """Raised by a fix-up to leave a letter out, with a reason (which must not quote the message)."""


class FixError(ValueError):
    """``--fix`` does not name a callable."""


@dataclass(frozen=True)
class Fix:
    name: str
    function: Callable[[Any], Any]
    takes_bytes: bool


def load_fix(spec: str) -> Fix:
    """``module:function`` -> the function, and whether it takes bytes (its first parameter is annotated so)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise FixError(f"--fix {spec!r}: expected module:function")
    try:
        function = importlib.import_module(module_name)
        for part in attribute.split("."):
            function = getattr(function, part)
    except (ImportError, AttributeError) as error:
        raise FixError(f"--fix {spec!r}: {type(error).__name__}: {error}") from None
    if not callable(function):
        raise FixError(f"--fix {spec!r} is not callable")
    parameters = list(inspect.signature(function).parameters.values())
    annotation = parameters[0].annotation if parameters else inspect.Parameter.empty
    return Fix(spec, function, annotation in (bytes, "bytes"))


def identity() -> Fix:
    return Fix("none", lambda message: message, True)


@dataclass(frozen=True)
class FixResult:
    message: bytes | None
    outcome: str = ""  # "" when fixed; else "skipped" or "fix_failed"
    note: str = ""


def apply_fix(fix: Fix, original: bytes) -> FixResult:
    obj: Any = None
    try:
        obj = json.loads(original.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        obj = None
    visible = obj if isinstance(obj, dict) else None
    if not fix.takes_bytes and visible is None:
        return FixResult(None, "skipped", "not a JSON object (the fix takes a dict)")
    try:
        result = fix.function(bytes(original) if fix.takes_bytes else visible)
    except Skip as skip:
        return FixResult(None, "skipped", mask_detail(str(skip), visible) or "Skip")
    except Exception as error:  # noqa: BLE001 -- reported per letter, never with its text (it may quote the message)
        return FixResult(None, "fix_failed", type(error).__name__)
    if result is None:
        return FixResult(None, "skipped", "the fix returned None")
    if isinstance(result, dict):
        return FixResult(json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if isinstance(result, (bytes, bytearray)):
        return FixResult(bytes(result))
    return FixResult(None, "fix_failed", f"the fix returned {type(result).__name__}, not bytes or dict")
