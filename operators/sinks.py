"""InfluxDB (and optional CSV) writes of anonymized windows, exactly-once through idempotent replays.

A completed checkpoint never has unwritten points. With ``INFLUX_WRITE_QUEUE`` = 0 every request is
written before ``process_element`` returns, and Flink takes the checkpoint barrier only after the
element is processed (the default). With ``INFLUX_WRITE_QUEUE`` = N > 0 one background thread writes
the requests, in order, while the function anonymizes the next windows (at most N requests waiting);
every Python bundle drains it before the bundle finishes (``_BundleHook``), and PyFlink finishes the
bundle before a checkpoint barrier passes (Java ``prepareSnapshotPreBarrier`` -> ``invokeFinishBundle``),
so the guarantee is the same. A failed write fails the next element or the bundle (the job restarts
from the last checkpoint and replays); the requests queued after it are not written. Replays rewrite
identical points (idempotent), which makes InfluxDB output effectively exactly-once.

Requests never split an equivalence class (connectors.influxdb.class_requests; a class too large for
one request is cut between patients into parts of at least k) and the window's statistics line comes
last: if the sink fails in the middle of a window (InfluxDB down longer than the retries, a crash),
readers see some classes of that window whole and the others not at all, never a class with fewer than
k pseudonyms. That holds for any subset of a window's requests, so with ``INFLUX_WRITERS`` = N > 1
they are written over N connections at once (``ConcurrentRequests``), and the statistics line after
all of them.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, ClassVar

from pyflink.common import Types
from pyflink.datastream import KeyedProcessFunction, ProcessFunction, RuntimeContext
from pyflink.datastream.state import MapStateDescriptor

from connectors.csv_output import CsvSideOutput
from connectors.influxdb import (
    InfluxOptions,
    LineWriter,
    class_requests,
    group_digest,
    make_writer,
    stats_line,
    window_stats_line,
)
from operators.k_anonymity import WindowOptions
from operators.records import WindowOutput
from operators.window_closes import text_close_time

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


class _BundleHook:
    """Callbacks run when PyFlink finishes a Python bundle, before the bundle's results (and the
    checkpoint barrier that may follow) pass on; an exception there fails the bundle.

    PyFlink has no user-function callback at bundle finish; its operation classes (process mode,
    ``pyflink.fn_execution.datastream.process.operations.Operation.finish``: gauges, state commit)
    get one wrapper that runs the callbacks first. Callers must not rely on the wrapper before they
    have seen it run (``seen``): thread mode and other runtimes do not call it.
    """

    callbacks: ClassVar[list[Callable[[], None]]] = []
    seen = False
    _lock = threading.Lock()

    @classmethod
    def install(cls) -> bool:
        try:
            from pyflink.fn_execution.datastream.process import operations
        except ImportError:  # pragma: no cover - not a PyFlink process-mode worker
            return False
        with cls._lock:
            original = operations.Operation.finish
            if getattr(original, "_ecg_bundle_hook", False):
                return True

            def finish(operation: Any) -> None:
                cls.seen = True
                for callback in list(cls.callbacks):
                    callback()
                original(operation)

            finish._ecg_bundle_hook = True  # type: ignore[attr-defined]
            operations.Operation.finish = finish  # type: ignore[method-assign]
        return True


class BackgroundWriter:
    """One thread that writes requests in submission order; at most ``max_pending`` wait.

    The first error stops it: later requests are not written (never out of order, never a window's
    statistics without its classes) and the error is raised by the next ``submit`` or ``drain``."""

    def __init__(self, writer: LineWriter, max_pending: int) -> None:
        self._writer = writer
        self._queue: queue.Queue[Sequence[str] | None] = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="influx-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            lines = self._queue.get()
            try:
                if lines is None:
                    return
                if self._error is None:
                    self._writer.write_lines(lines)
            except BaseException as error:  # noqa: BLE001 - handed to the Flink thread, never dropped
                self._error = error
            finally:
                self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, lines: Sequence[str]) -> None:
        self._raise()
        self._queue.put(lines)

    def drain(self) -> None:
        """Return when every submitted request is written; raise the first write error."""
        self._queue.join()
        self._raise()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


class ConcurrentRequests:
    """Writes the requests of one window over ``writers`` connections at once; returns when all are done.

    The first error is raised once the requests in flight have finished; requests not yet handed out are
    not written. Each request holds whole classes or parts of at least k patients, so whatever subset got
    written shows no class below k; the caller writes the window's statistics line only after this returns."""

    def __init__(self, writer: LineWriter, writers: int) -> None:
        self._writer = writer
        self._max_in_flight = 2 * writers  # enough to keep every connection busy, without formatting ahead
        self._pool = ThreadPoolExecutor(writers, thread_name_prefix="influx-writer")

    def write_all(self, requests: Iterable[Sequence[str]]) -> int:
        """Write every request; returns the number of lines written."""
        written = 0
        in_flight: set[Future[None]] = set()
        try:
            for request in requests:
                if len(in_flight) >= self._max_in_flight:
                    done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in done:
                        future.result()
                in_flight.add(self._pool.submit(self._writer.write_lines, request))
                written += len(request)
        finally:
            done, _ = wait(in_flight)
        for future in done:
            future.result()
        return written

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class WriteWindows(ProcessFunction):
    """Writes each anonymized window to InfluxDB (its classes, then its statistics line) and, with ``csv_dir``,
    to a CSV file, on a thread of its own that never holds back or fails the InfluxDB writes."""

    def __init__(self, influx: InfluxOptions, windows: WindowOptions, csv_dir: str = "") -> None:
        self._options = influx
        self._k = windows.k_anonymity
        self._csv_dir = csv_dir
        self._writer: LineWriter | None = None
        self._background: BackgroundWriter | None = None
        self._concurrent: ConcurrentRequests | None = None
        self._csv: CsvSideOutput | None = None
        self._csv_reported = (0, 0, 0)

    def open(self, runtime_context: RuntimeContext) -> None:
        self._writer = make_writer(self._options)
        if self._csv_dir:
            self._csv = CsvSideOutput(Path(self._csv_dir))
        if self._options.write_queue > 0 and _BundleHook.install():
            self._background = BackgroundWriter(self._writer, self._options.write_queue)
            _BundleHook.callbacks.append(self._background.drain)
        if self._options.writers > 1:
            self._concurrent = ConcurrentRequests(self._writer, self._options.writers)
        metrics = runtime_context.get_metrics_group().add_group("ecg")
        self._points_written = metrics.counter("influx_points_written")
        self._accounting = {name: metrics.counter(name) for name in WINDOW_COUNTERS}
        self._accounting_violations = metrics.counter("accounting_violations")
        self._frames_by_level = {level: metrics.counter(f"frames_level_{level}") for level in range(1, 10)}
        self._csv_counters = [metrics.counter(name) for name in ("csv_windows_written", "csv_windows_failed",
                                                                  "csv_windows_shed")]

    def close(self) -> None:
        try:
            if self._csv is not None:
                self._csv.close()
            if self._background is not None:
                _BundleHook.callbacks.remove(self._background.drain)
                try:
                    self._background.drain()
                finally:
                    self._background.close()
            if self._concurrent is not None:
                self._concurrent.close()
        finally:
            if self._writer is not None:
                self._writer.close()

    def _write(self, lines: Sequence[str]) -> None:
        assert self._writer is not None
        # In the background only once a bundle finish has been seen to drain it (see _BundleHook).
        if self._background is not None and _BundleHook.seen:
            self._background.submit(lines)
        else:
            if self._background is not None:
                self._background.drain()
            self._writer.write_lines(lines)

    def process_element(self, value: WindowOutput, ctx: ProcessFunction.Context):  # type: ignore[no-untyped-def]
        requests = class_requests(value.published, self._options.measurement, self._options.batch_points, self._k)
        if self._concurrent is not None:
            written = self._concurrent.write_all(requests)
        else:
            written = 0
            for request in requests:
                self._write(request)
                written += len(request)
        self._points_written.inc(written)
        # Last, so a reader who sees a window's statistics sees all of its classes.
        self._write([window_stats_line(WINDOW_STATS_MEASUREMENT, value.group, value.window_start_ms, value.metrics)])
        self._record(value.metrics)
        if self._csv is not None:
            # The group value is not a published field: name the file by a digest of it.
            self._csv.submit(f"window-{value.window_start_ms}-{group_digest(value.group)}", value.published)
            self._report_csv()
        # No output: nothing consumes it, and PyFlink would pickle the whole window back to Java.
        return iter(())

    def _report_csv(self) -> None:
        """The CSV thread's counts into Flink counters (incremented on this thread only)."""
        assert self._csv is not None
        counts = self._csv.counts()
        for counter, now, before in zip(self._csv_counters, counts, self._csv_reported, strict=True):
            counter.inc(now - before)
        self._csv_reported = counts

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
    state. The windows close by the text records of the WindowCloser chained before it
    (operators/window_closes.py), which also moves a dead letter whose window has already closed (a late
    frame, by definition) into the window event time is in when it arrives."""

    def __init__(self, influx: InfluxOptions, windows: WindowOptions) -> None:
        self._options = influx
        self._window_ms = windows.window_seconds * 1000
        self._writer: LineWriter | None = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self._counts = runtime_context.get_map_state(MapStateDescriptor("dead-letters", Types.LONG(), Types.LONG()))
        self._writer = make_writer(self._options)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def process_element(self, value: str, ctx: KeyedProcessFunction.Context):  # type: ignore[no-untyped-def]
        close_time = text_close_time(value)
        if close_time is not None:
            self._write_closed(ctx.get_current_key(), close_time)
            return iter(())
        timestamp = ctx.timestamp()
        start = timestamp - timestamp % self._window_ms
        self._counts.put(start, (self._counts.get(start) or 0) + 1)
        return iter(())

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext):  # type: ignore[no-untyped-def]
        # Only timers restored from a checkpoint of a version before WindowCloser: this function registers none.
        self._write_closed(ctx.get_current_key(), timestamp)
        return iter(())

    def _write_closed(self, reason: str, close_time: int) -> None:
        assert self._writer is not None
        closed = sorted(start for start in self._counts.keys() if start + self._window_ms - 1 <= close_time)
        if not closed:
            return
        self._writer.write_lines([
            stats_line(DEAD_LETTERS_MEASUREMENT, {"reason": reason}, {"count": int(self._counts.get(start))}, start)
            for start in closed
        ])
        for start in closed:
            self._counts.remove(start)


def dead_letter_reason(message: str) -> str:
    """The `reason` of a dead-letter JSON message (keys CountDeadLetters)."""
    try:
        return str(json.loads(message).get("reason", "unknown"))
    except (ValueError, AttributeError):
        return "unknown"
