"""Synchronous InfluxDB (and optional CSV) writes, one window at a time.

Points of a window are written before this function returns, and Flink takes the checkpoint barrier
only after the element is processed: a completed checkpoint never has unwritten points. Replays
rewrite identical points (idempotent), which makes InfluxDB output effectively exactly-once.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from pyflink.datastream import ProcessFunction, RuntimeContext

from connectors.influxdb import LineWriter, batched, make_writer, window_lines, write_window_csv
from operators.records import WindowOutput

log = logging.getLogger("ecg.sink")

# Accounting of the windows written, as Flink counters: metric name -> WindowMetrics attribute.
WINDOW_COUNTERS = {
    "windows": None,
    "frames_anonymized": "frames_in",
    "frames_carried_in": "frames_carried_in",
    "frames_published": "frames_published",
    "frames_suppressed": "frames_suppressed",
    "frames_carried_out": "frames_carried_out",
    "samples_published": "samples_published",
    "samples_imputed": "samples_suppressed",
}


class WriteWindows(ProcessFunction):
    def __init__(self, influx_options: dict[str, Any], csv_dir: str = "") -> None:
        self._options = influx_options
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
        lines = window_lines(value.published, self._options["influx_measurement"])
        for batch in batched(lines, int(self._options["influx_batch_points"])):
            self._writer.write_lines(batch)
        self._points_written.inc(len(lines))
        self._record(value.metrics)
        if self._csv_dir:
            # The group value is not a published field: name the file by a digest of it.
            group_digest = hashlib.sha256(value.group.encode("utf-8")).hexdigest()[:12]
            write_window_csv(Path(self._csv_dir), f"window-{value.window_start_ms}-{group_digest}", value.published)
        yield value

    def _record(self, metrics: Any) -> None:
        for name, attribute in WINDOW_COUNTERS.items():
            self._accounting[name].inc(1 if attribute is None else int(getattr(metrics, attribute)))
        for level, count in metrics.frames_by_level.items():
            self._frames_by_level[int(level)].inc(int(count))
        # inc(0) on success too, so the counter is reported (and shows 0) from the first window on.
        self._accounting_violations.inc(0 if metrics.accounting_ok() else 1)
