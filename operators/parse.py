"""Parse + validate raw Kafka records; invalid ones go to the dead-letter side output."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from pyflink.common import Types
from pyflink.datastream import OutputTag, ProcessFunction, RuntimeContext

from connectors.config import Settings, options_from_settings
from contract.frames import Control, Rejection, parse_frame
from operators.records import KeyedFrame, SourcePosition, device_frame_row
from privacy.dead_letters import DeadLetterOptions, Position, dead_letter, late_letter
from privacy.intake import IntakeOptions, to_core_frame
from privacy.model import Frame

log = logging.getLogger("ecg.parse")

DEAD_LETTER = OutputTag("dead-letter", Types.STRING())
# (pid, event time) of a device's first valid frame, for the cardio branch's prior requests (federated.priors).
FRAME_HEADS = OutputTag("frame-heads", Types.TUPLE([Types.STRING(), Types.LONG()]))
# Pids whose head a parse subtask remembers having sent (then it forgets them all and sends again).
FRAME_HEAD_MEMORY = 100_000


@dataclass(frozen=True)
class ParseOptions:
    """What parsing checks beyond the contract: settings GROUP_FIELD, TS_TOLERANCE_SECONDS."""

    SETTINGS_PREFIX: ClassVar[str] = ""

    group_field: str
    ts_tolerance_seconds: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ParseOptions:
        return options_from_settings(cls, settings)


class ParseFrames(ProcessFunction):
    """Raw record -> KeyedFrame (main output) or dead-letter JSON (side output).

    The raw patient_id is replaced by its HMAC pseudonym here, at the first operator, so that no
    later operator, state or checkpoint holds it; patient_name and PHI-looking extras are dropped.
    """

    def __init__(self, intake: IntakeOptions, options: ParseOptions, dead_letters: DeadLetterOptions,
                 frame_heads: bool = False) -> None:
        self._intake = intake
        self._dead_letters = dead_letters
        self._group_field = options.group_field
        self._ts_tolerance_ms = options.ts_tolerance_seconds * 1000
        self._frame_heads = frame_heads

    def open(self, runtime_context: RuntimeContext) -> None:
        metrics = runtime_context.get_metrics_group().add_group("ecg")
        self._records_in = metrics.counter("records_in")
        self._frames_valid = metrics.counter("frames_valid")
        self._dead_lettered = metrics.counter("dead_lettered")
        self._control_records = metrics.counter("control_records")
        self._phi_fields_dropped = metrics.counter("phi_fields_dropped")
        self._stall_hook = InjectedStall.from_environment()
        # RequestPriors keeps only the first head of a pid: one head per device instead of one per frame
        # spares the branch an element through the JVM and a Python call per frame (issue 24). Not
        # checkpointed: after a restore (or when full) heads go out again, and RequestPriors ignores them.
        self._heads_sent: set[str] = set()

    def _dead_letter(self, value: bytes, rejection: Rejection, position: SourcePosition, timestamp_ms: int) -> str:
        self._dead_lettered.inc()
        where = Position(position.topic, position.partition, position.offset, timestamp_ms)
        return dead_letter(value, rejection, where, self._dead_letters).decode("utf-8")

    def process_element(self, value: Any, ctx: ProcessFunction.Context):  # type: ignore[no-untyped-def]
        self._records_in.inc()
        if self._stall_hook is not None:
            self._stall_hook.maybe_stall()
        raw = bytes(value[4])
        position = SourcePosition(str(value[0]), int(value[1]), int(value[2]))
        timestamp_ms = int(value[3])
        try:
            parsed = parse_frame(
                raw, timestamp_ms, group_field=self._group_field, ts_tolerance_ms=self._ts_tolerance_ms
            )
            if isinstance(parsed, Control):
                self._control_records.inc()
                return
            if isinstance(parsed, Rejection):
                yield DEAD_LETTER, self._dead_letter(raw, parsed, position, timestamp_ms)
                return
            frame, phi_count = to_core_frame(parsed, self._intake)
            if phi_count:
                self._phi_fields_dropped.inc(phi_count)
            if isinstance(frame, Rejection):
                yield DEAD_LETTER, self._dead_letter(raw, frame, position, timestamp_ms)
                return
        except Exception as error:  # noqa: BLE001 -- the job must never stop on input
            # The type only: an exception's text or traceback may quote the message (patient data).
            log.error("unexpected error parsing %s: %s (dead-lettered as internal_error)", position,
                      type(error).__name__)
            yield DEAD_LETTER, self._dead_letter(raw, Rejection("internal_error", type(error).__name__), position,
                                                   timestamp_ms)
            return
        self._frames_valid.inc()
        if self._frame_heads and frame.pid not in self._heads_sent:
            if len(self._heads_sent) >= FRAME_HEAD_MEMORY:
                self._heads_sent.clear()
            self._heads_sent.add(frame.pid)
            yield FRAME_HEADS, (frame.pid, frame.ts_ms)
        yield self._main_output(parsed.group, frame, position)

    def _main_output(self, group: str, frame: Frame, position: SourcePosition) -> Any:
        return KeyedFrame(group, frame, position)


class ParseDeviceFrames(ParseFrames):
    """ParseFrames for the cardio branch's job: main output Row(pid, ts_ms, fs, samples) (output type
    operators.records.DEVICE_FRAME), the key in place and the fields readable by Java, so that keying it by device
    costs no Python step of its own and Java can put a device's frames into blocks (flink_jobs/cardio_branch.py),
    and the detector gets only what it needs (issue 24)."""

    def _main_output(self, group: str, frame: Frame, position: SourcePosition) -> Any:
        return device_frame_row(frame)


class InjectedStall:
    """Test hook of the liveness guard (tests/integration/test_liveness_guard.py): with
    ECG_TEST_STALL_AFTER_RECORDS=N and ECG_TEST_STALL_MARKER=<file>, the parse step stops for
    ECG_TEST_STALL_SECONDS once, at its N-th record, in the first run that creates the marker file (a run
    restored after the stall does not stall again). Unset in every real deployment."""

    def __init__(self, after_records: int, marker: str, seconds: float) -> None:
        self._after_records = after_records
        self._marker = marker
        self._seconds = seconds
        self._seen = 0

    @classmethod
    def from_environment(cls) -> InjectedStall | None:
        after = os.environ.get("ECG_TEST_STALL_AFTER_RECORDS", "")
        marker = os.environ.get("ECG_TEST_STALL_MARKER", "")
        if not after or not marker:
            return None
        return cls(int(after), marker, float(os.environ.get("ECG_TEST_STALL_SECONDS", "30")))

    def maybe_stall(self) -> None:
        self._seen += 1
        if self._seen != self._after_records:
            return
        try:
            with open(self._marker, "x"):
                pass
        except FileExistsError:
            return
        log.warning("injected stall: parse stops for %.0f s", self._seconds)
        time.sleep(self._seconds)


def late_record_message(record: KeyedFrame, window_seconds: int) -> str:
    """Dead-letter JSON for a valid frame that arrived after its window closed: its pseudonym and
    position (the raw message, with its identifiers, is not kept past the parser)."""
    where = Position(record.position.topic, record.position.partition, record.position.offset)
    return late_letter(record.frame.pid, record.frame.ts_ms, where, window_seconds)
