"""Tumbling event-time windows per group key with the k-anonymity core: a thin KeyedProcessFunction.

Own windows instead of Flink's window operator, because the anonymization needs keyed state that
outlives a window (running means, counters, the privacy core's per-key memory), and because every
window must be anonymized exactly once (allowed lateness delays the firing; it never re-fires a
published window).

Per key: frames wait in list state tagged with their window start. When a window closes is decided by
the Java operator chained right before this function (operators/window_closes.py, connectors/java
WindowCloser): it registers a Java event-time timer per key and window and sends, as a record, the
window's close time (an int) when the watermark passes it; this function then anonymizes every frame of
this key's windows up to it with ``privacy.kanonymity.anonymize_window``. A frame whose window had
already closed when it came is late: WindowCloser sends it wrapped in a 1-tuple, and it goes to the
dead-letter side output with its source position, and is counted.

Why not a timer registered here (as before issue 19 item 5): PyFlink hands a timer that Python code
registers to the JVM after the bundle that registered it, so the checkpoint that ends that bundle can
miss it, and a ward's last window could stay unfired after a restore.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from typing import Any, ClassVar

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext
from pyflink.datastream.state import ListStateDescriptor, ValueStateDescriptor

from connectors.config import Settings, options_from_settings
from connectors.influxdb import group_digest
from hierarchy.loader import Hierarchy
from operators.parse import late_record_message
from operators.records import KeyedFrame, WindowOutput
from privacy.kanonymity import AnonymizationConfig, anonymize_window

log = logging.getLogger("ecg.anonymization")

LATE_FRAMES = OutputTag("late-frames", Types.STRING())


@dataclass(frozen=True)
class WindowOptions:
    """The anonymization windows: settings WINDOW_SECONDS, ALLOWED_LATENESS_SECONDS, K_ANONYMITY, L_DIVERSITY,
    WINDOW_CLOSE_PACE_MS."""

    SETTINGS_PREFIX: ClassVar[str] = ""

    window_seconds: int
    allowed_lateness_seconds: int
    k_anonymity: int
    l_diversity: int
    window_close_pace_ms: int

    @classmethod
    def from_settings(cls, settings: Settings) -> WindowOptions:
        return options_from_settings(cls, settings)


def window_start_of(timestamp_ms: int, window_ms: int) -> int:
    return timestamp_ms - timestamp_ms % window_ms


class KAnonymityWindows(KeyedProcessFunction):
    """Keyed by the group field (e.g. site); emits one ``WindowOutput`` per (key, window)."""

    def __init__(self, config: AnonymizationConfig, windows: WindowOptions) -> None:
        self._config = config
        self._window_ms = windows.window_seconds * 1000
        self._lateness_ms = windows.allowed_lateness_seconds * 1000
        self._last: dict[str, int] = {}

    @classmethod
    def create(cls, hierarchy: Hierarchy, windows: WindowOptions, token_key: bytes) -> KAnonymityWindows:
        config = AnonymizationConfig(hierarchy=hierarchy, k=windows.k_anonymity, l_diversity=windows.l_diversity,
                                     token_key=token_key)
        return cls(config, windows)

    def open(self, runtime_context: RuntimeContext) -> None:
        self._frames = runtime_context.get_list_state(ListStateDescriptor("window-frames", Types.PICKLED_BYTE_ARRAY()))
        self._key_state = runtime_context.get_state(
            ValueStateDescriptor("k-anonymity-key-state", Types.PICKLED_BYTE_ARRAY())
        )
        metrics = runtime_context.get_metrics_group().add_group("ecg")
        self._late = metrics.counter("late_records")
        self._windowed = metrics.counter("frames_windowed")
        self._fired = metrics.counter("frames_window_fired")
        self._fired_local = 0
        self._windowed_local = 0
        for name in ("suppression_rate_permille", "ncp_permille", "patients"):
            metrics.gauge(name, lambda name=name: self._last.get(name, 0))
        # Frames waiting in open windows of this subtask (since it started; 0 once all windows fired).
        metrics.gauge("frames_pending", lambda: max(0, self._windowed_local - self._fired_local))

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context):  # type: ignore[no-untyped-def]
        if isinstance(value, int):  # WindowCloser: this key's windows up to this close time close
            yield from self._close(ctx.get_current_key(), value)
            return
        if isinstance(value, tuple):  # WindowCloser: a frame whose window had closed when it came
            self._late.inc()
            yield LATE_FRAMES, late_record_message(pickle.loads(value[0]), self._window_ms // 1000)
            return
        frame: KeyedFrame = value
        self._frames.add((window_start_of(ctx.timestamp(), self._window_ms), frame.frame))
        self._windowed.inc()
        self._windowed_local += 1

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):  # type: ignore[no-untyped-def]
        # Only timers restored from a checkpoint of a version before WindowCloser: this function registers none.
        yield from self._close(ctx.get_current_key(), timestamp)

    def _close(self, key: str, close_time: int):  # type: ignore[no-untyped-def]
        """Anonymizes this key's frames of every window whose close time is at or before `close_time`."""
        due_until = close_time - self._lateness_ms - self._window_ms + 1
        due: dict[int, list[Any]] = {}
        waiting: list[tuple[int, Any]] = []
        for start, frame in self._frames.get() or ():
            if start <= due_until:
                due.setdefault(start, []).append(frame)
            else:
                waiting.append((start, frame))
        if not due:
            return
        if waiting:
            self._frames.update(waiting)
        else:
            self._frames.clear()
        state = self._key_state.value()
        for start in sorted(due):
            frames = due[start]
            result = anonymize_window(frames, state, self._config, start)
            state = result.state
            self._fired.inc(len(frames))
            self._fired_local += len(frames)
            yield self._output(key, start, result)
        self._key_state.update(state)

    def _output(self, key: str, start: int, result: Any) -> WindowOutput:
        metrics = result.metrics
        self._last = {
            "suppression_rate_permille": round(1000 * metrics.suppression_rate),
            "ncp_permille": round(1000 * metrics.ncp),
            "patients": metrics.distinct_patients,
        }
        end = start + self._window_ms
        # The group (a ward) as the outputs name it, a digest: GROUP_FIELD is input, and could hold anything.
        group = group_digest(key)
        if not metrics.accounting_ok():
            # Never expected: loud, and counted by the sink; the window is still published as computed.
            log.error("accounting violated in window %s [%d, %d): %s", group, start, end, metrics.as_dict())
        # `#n` counts this key's windows across restarts (it lives in keyed state).
        log.info("window %s [%d, %d) #%d %s", group, start, end, result.state.windows, metrics.log_line())
        return WindowOutput(group=key, window_start_ms=start, window_end_ms=end, published=result.published,
                            metrics=metrics)
