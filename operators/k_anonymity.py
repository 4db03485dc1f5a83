"""Tumbling event-time windows per group key with the k-anonymity core: a thin KeyedProcessFunction.

Own windows instead of Flink's window operator, because the anonymization needs keyed state that
outlives a window (running means, counters, the privacy core's per-key memory) and event-time timers
of its own, and because every window must be anonymized exactly once (allowed lateness delays the
firing; it never re-fires a published window).

Per key: frames wait in list state tagged with their window start; an event-time timer at the
window's last millisecond (+ allowed lateness) makes that window due, and due windows are anonymized
in window order with ``privacy.kanonymity.anonymize_window``. A frame whose window is due is late: it
goes to the dead-letter side output with its source position, and is counted.

With MAX_WINDOWS_PER_FIRING = n > 0, a firing anonymizes (and, through the chained sink, writes) at
most n due windows per key; the rest stay in checkpointed state and the next n go at a processing-time
timer. Why: PyFlink fires every event-time timer a watermark passes, and finishes the bundle holding
their work, synchronously in the task thread (``AbstractPythonFunctionOperator.advanceWatermark``), and
a checkpoint barrier waits for that. During a catch-up one watermark closes many windows, so barriers
waited 14-25 s (docs/benchmarks.md, "Checkpoint spacing"). A processing-time timer is a mailbox action
of its own, so a barrier passes between two firings. The final watermark (end of a bounded input)
fires everything at once: processing-time timers do not fire after the input ends.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, OutputTag, RuntimeContext, TimeDomain
from pyflink.datastream.state import ListStateDescriptor, ValueStateDescriptor

from connectors.config import Settings, options_from_settings
from connectors.influxdb import group_digest
from hierarchy.loader import Hierarchy
from operators.parse import late_record_message
from operators.records import KeyedFrame, WindowOutput
from privacy.kanonymity import AnonymizationConfig, anonymize_window

log = logging.getLogger("ecg.anonymization")

LATE_FRAMES = OutputTag("late-frames", Types.STRING())
# The watermark at the end of a bounded input (Java Long.MAX_VALUE).
FINAL_WATERMARK = 2**63 - 1


@dataclass(frozen=True)
class WindowOptions:
    """The anonymization windows: settings WINDOW_SECONDS, ALLOWED_LATENESS_SECONDS, K_ANONYMITY, L_DIVERSITY,
    MAX_WINDOWS_PER_FIRING."""

    SETTINGS_PREFIX: ClassVar[str] = ""

    window_seconds: int
    allowed_lateness_seconds: int
    k_anonymity: int
    l_diversity: int
    max_windows_per_firing: int

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
        self._max_windows_per_firing = windows.max_windows_per_firing
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
        # The last window start whose timer fired: windows up to it are due (anonymized now or, past
        # MAX_WINDOWS_PER_FIRING, at the next processing-time firing). New state: None in older checkpoints.
        self._due_through = runtime_context.get_state(ValueStateDescriptor("windows-due-through", Types.LONG()))
        # The last window start published while its frames are still in `window-frames` (None: none there).
        self._fired_through = runtime_context.get_state(ValueStateDescriptor("windows-fired-through", Types.LONG()))
        # The pending processing-time timer of this key (one at most), with MAX_WINDOWS_PER_FIRING > 0.
        self._drain_timer = runtime_context.get_state(ValueStateDescriptor("windows-drain-timer", Types.LONG()))
        # Timers registered by this worker since it started; Flink de-duplicates timers anyway, this
        # only saves a call per frame (after a restore the set is empty and timers are re-registered).
        self._timers: set[tuple[str, int]] = set()
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

    def _timer_of(self, window_start: int) -> int:
        return window_start + self._window_ms - 1 + self._lateness_ms

    def process_element(self, value: KeyedFrame, ctx: KeyedProcessFunction.Context):  # type: ignore[no-untyped-def]
        timestamp = ctx.timestamp()
        start = window_start_of(timestamp, self._window_ms)
        timer = self._timer_of(start)
        watermark = ctx.timer_service().current_watermark()
        if watermark is not None and timer <= watermark:
            self._late.inc()
            yield LATE_FRAMES, late_record_message(value, self._window_ms // 1000)
            return
        self._frames.add((start, value.frame))
        self._windowed.inc()
        self._windowed_local += 1
        if (value.group, timer) not in self._timers:
            ctx.timer_service().register_event_time_timer(timer)
            self._timers.add((value.group, timer))

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):  # type: ignore[no-untyped-def]
        key = ctx.get_current_key()
        due_through = self._due_through.value()
        if ctx.time_domain() == TimeDomain.EVENT_TIME:
            self._timers.discard((key, timestamp))
            fired_start = timestamp - self._lateness_ms - self._window_ms + 1
            if timestamp != FINAL_WATERMARK and (due_through is None or fired_start > due_through):
                due_through = fired_start
                self._due_through.update(due_through)
            if self._max_windows_per_firing > 0 and ctx.timer_service().current_watermark() != FINAL_WATERMARK:
                # All firings go through the processing-time timer, one pending per key: an event-time
                # timer fired synchronously would add its window to the watermark's work again.
                if self._drain_timer.value() is None:
                    self._schedule_drain(ctx)
                return
            limit = 0
        else:
            self._drain_timer.clear()
            limit = self._max_windows_per_firing
        if due_through is not None:
            yield from self._fire_due(key, due_through, limit, ctx)

    def _schedule_drain(self, ctx: KeyedProcessFunction.Context) -> None:
        # A timer at the current time fires at once, but as a mailbox action of its own.
        now = ctx.timer_service().current_processing_time()
        ctx.timer_service().register_processing_time_timer(now)
        self._drain_timer.update(now)
        # Processing-time timers do not fire once a bounded input has ended: the final watermark fires this
        # one, which anonymizes every window still due.
        ctx.timer_service().register_event_time_timer(FINAL_WATERMARK)

    def _fire_due(self, key: str, due_through: int, limit: int,
                  ctx: KeyedProcessFunction.OnTimerContext):  # type: ignore[no-untyped-def]
        """Anonymizes the due windows of `key` in window order, at most `limit` of them (0: all); if some stay
        due, a processing-time timer fires the next ones."""
        # Frames of windows published by an earlier firing stay in the list (up to `fired_through`) until they
        # are as many as the rest: rewriting the whole list at every firing of a long drain costs its square.
        fired_through = self._fired_through.value()
        due: dict[int, list[Any]] = {}
        rest: list[tuple[int, Any]] = []
        published = 0
        for start, frame in self._frames.get() or ():
            if fired_through is not None and start <= fired_through:
                published += 1
            elif start <= due_through:
                due.setdefault(start, []).append(frame)
            else:
                rest.append((start, frame))
        if not due:
            return
        starts = sorted(due)
        firing = starts[:limit] if limit else starts
        for start in starts[len(firing):]:
            rest.extend((start, frame) for frame in due[start])
        if len(firing) < len(starts):
            self._schedule_drain(ctx)
        published += sum(len(due[start]) for start in firing)
        if len(firing) == len(starts) or published >= len(rest):
            if rest:
                self._frames.update(rest)
            else:
                self._frames.clear()
            self._fired_through.clear()
        else:
            self._fired_through.update(firing[-1])
        state = self._key_state.value()
        for start in firing:
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
