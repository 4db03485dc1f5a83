"""Synchronous InfluxDB (and optional CSV) writes, one window at a time.

Points of a window are written before this function returns, and Flink takes the checkpoint barrier
only after the element is processed: a completed checkpoint never has unwritten points. Replays
rewrite identical points (idempotent), which makes InfluxDB output effectively exactly-once.

Requests never split an equivalence class (connectors.influxdb.class_requests): if the sink fails in
the middle of a window (InfluxDB down longer than the retries, a crash), readers see some classes of
that window whole and the others not at all, never a class with fewer than k pseudonyms.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, ProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor

from connectors.influxdb import (
    LineWriter,
    class_requests,
    group_digest,
    make_writer,
    stats_line,
    window_stats_line,
    write_window_csv,
)
from operators.records import WindowOutput

log = logging.getLogger("ecg.sink")

WINDOW_STATS_MEASUREMENT = "ecg_window_stats"
DEAD_LETTERS_MEASUREMENT = "ecg_dead_letters"

# Accounting of the windows written, as Flink counters: metric name -> WindowMetrics attribute.
WINDOW_COUNTERS = {
    "windows": None,
    "frames_anonymized": "frames_in",
    "frames_published": "frames_published",
    "frames_suppressed": "frames_suppressed",
    "samples_published": "samples_published",
    "samples_imputed": "samples_suppressed",
}


class WriteWindows(ProcessFunction):
    def __init__(self, influx_options: dict[str, Any], k: int, csv_dir: str = "") -> None:
        self._options = influx_options
        self._k = k
        self._csv_dir = csv_dir
        self._writer: LineWriter | None = None

    def open(self, runtime_context: RuntimeContext) -> None:
        from types import SimpleNamespace

        self._writer = make_writer(SimpleNamespace(**self._options))
        metrics = runtime_context.get_metrics_group().add_group("ecg")
        self._points_written = metrics.counter("influx_points_written")
        self._accounting = {name: metrics.counter(name) for name in WINDOW_COUNTERS}
        self._accounting_violations = metrics.counter("accounting_violations")
        self._frames_by_level = {level: metrics.counter(f"frames_level_{level}") for level in range(1, 10)}

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def process_element(self, value: WindowOutput, ctx: ProcessFunction.Context):  # type: ignore[no-untyped-def]
        assert self._writer is not None
        written = 0
        for request in class_requests(value.published, self._options["influx_measurement"],
                                      int(self._options["influx_batch_points"]), self._k):
            self._writer.write_lines(request)
            written += len(request)
        self._points_written.inc(written)
        # Last, so a reader who sees a window's statistics sees all of its classes.
        self._writer.write_lines([window_stats_line(WINDOW_STATS_MEASUREMENT, value.group, value.window_start_ms,
                                                    value.metrics)])
        self._record(value.metrics)
        if self._csv_dir:
            # The group value is not a published field: name the file by a digest of it.
            write_window_csv(Path(self._csv_dir), f"window-{value.window_start_ms}-{group_digest(value.group)}",
                             value.published)
        yield value

    def _record(self, metrics: Any) -> None:
        for name, attribute in WINDOW_COUNTERS.items():
            self._accounting[name].inc(1 if attribute is None else int(getattr(metrics, attribute)))
        for level, count in metrics.frames_by_level.items():
            self._frames_by_level[int(level)].inc(int(count))
        # inc(0) on success too, so the counter is reported (and shows 0) from the first window on.
        self._accounting_violations.inc(0 if metrics.accounting_ok() else 1)


class CountDeadLetters(KeyedProcessFunction):
    """Dead letters per reason (the key) and tumbling event-time window (the record's Kafka timestamp),
    written to InfluxDB (`ecg_dead_letters`) when event time passes the window; counts live in keyed
    state. A dead letter whose window has already closed (a late frame, by definition) counts in the
    window event time is in when it arrives."""

    def __init__(self, influx_options: dict[str, Any], window_seconds: int) -> None:
        self._options = influx_options
        self._window_ms = window_seconds * 1000
        self._writer: LineWriter | None = None

    def open(self, runtime_context: RuntimeContext) -> None:
        from types import SimpleNamespace

        self._counts = runtime_context.get_map_state(MapStateDescriptor("dead-letters", Types.LONG(), Types.LONG()))
        self._writer = make_writer(SimpleNamespace(**self._options))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def process_element(self, value: str, ctx: KeyedProcessFunction.Context):  # type: ignore[no-untyped-def]
        timestamp = ctx.timestamp()
        watermark = ctx.timer_service().current_watermark()
        if watermark is not None and timestamp - timestamp % self._window_ms + self._window_ms - 1 <= watermark:
            timestamp = watermark + 1
        start = timestamp - timestamp % self._window_ms
        count = self._counts.get(start)
        if count is None:
            ctx.timer_service().register_event_time_timer(start + self._window_ms - 1)
        self._counts.put(start, (count or 0) + 1)
        return iter(())

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):  # type: ignore[no-untyped-def]
        assert self._writer is not None
        start = timestamp - self._window_ms + 1
        count = self._counts.get(start)
        if count:
            self._writer.write_lines(
                [stats_line(DEAD_LETTERS_MEASUREMENT, {"reason": ctx.get_current_key()}, {"count": int(count)}, start)]
            )
            self._counts.remove(start)
        return iter(())


def dead_letter_reason(message: str) -> str:
    """The `reason` of a dead-letter JSON message (keys CountDeadLetters)."""
    try:
        return str(json.loads(message).get("reason", "unknown"))
    except (ValueError, AttributeError):
        return "unknown"
