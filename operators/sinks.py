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
        self._windows_written = metrics.counter("influx_windows_written")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def process_element(self, value: WindowOutput, ctx: ProcessFunction.Context):  # type: ignore[no-untyped-def]
        assert self._writer is not None
        lines = window_lines(value.published, self._options["influx_measurement"])
        for batch in batched(lines, int(self._options["influx_batch_points"])):
            self._writer.write_lines(batch)
        self._points_written.inc(len(lines))
        self._windows_written.inc()
        if self._csv_dir:
            # The group value is not a published field: name the file by a digest of it.
            group_digest = hashlib.sha256(value.group.encode("utf-8")).hexdigest()[:12]
            write_window_csv(Path(self._csv_dir), f"window-{value.window_start_ms}-{group_digest}", value.published)
        yield value
