"""The optional CSV copy of the anonymized windows (``CSV_OUTPUT_DIR``), kept off the InfluxDB path.

The main output never waits on a side output: the files are written by a thread of their own behind a
bounded queue. A disk that is slow sheds windows when the queue is full; a disk that fails (full,
read-only, missing folder) fails those windows. Both are counted and logged, never raised into the task:
the InfluxDB points keep flowing at their own rate, and a restart (which replays windows from the last
checkpoint) rewrites a shed or failed window's file if the disk is back by then."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from connectors.influxdb import write_window_csv

LOG = logging.getLogger("ecg.csv")

WindowFileWriter = Callable[[Path, str, Iterable[Any]], Path]


class CsvSideOutput:
    """Writes one CSV per window on a background thread; at most ``max_pending`` windows wait."""

    def __init__(self, directory: Path, max_pending: int = 64, write: WindowFileWriter = write_window_csv) -> None:
        self._directory = directory
        self._write = write
        self._queue: queue.Queue[tuple[str, list[Any]] | None] = queue.Queue(maxsize=max_pending)
        self._lock = threading.Lock()
        self._written = 0
        self._failed = 0
        self._shed = 0
        self._thread = threading.Thread(target=self._run, name="csv-writer", daemon=True)
        self._thread.start()

    def submit(self, file_stem: str, frames: Iterable[Any]) -> None:
        """Queue one window's file; never blocks, never raises."""
        try:
            self._queue.put_nowait((file_stem, list(frames)))
        except queue.Full:
            with self._lock:
                self._shed += 1
                shed = self._shed
            if shed == 1 or shed % 100 == 0:
                LOG.warning("CSV output cannot keep up: %d windows not written to CSV so far (InfluxDB unaffected)",
                            shed)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                file_stem, frames = item
                try:
                    self._write(self._directory, file_stem, frames)
                except Exception as error:  # noqa: BLE001 - a side output's failure must not reach the task
                    with self._lock:
                        self._failed += 1
                        failed = self._failed
                    if failed == 1 or failed % 100 == 0:
                        # The error's type and errno only: no file content, nothing from a frame.
                        LOG.error("CSV output failed for %d windows so far (InfluxDB unaffected): %s errno=%s",
                                  failed, type(error).__name__, getattr(error, "errno", None))
                else:
                    with self._lock:
                        self._written += 1
            finally:
                self._queue.task_done()

    def counts(self) -> tuple[int, int, int]:
        """(written, failed, shed) so far."""
        with self._lock:
            return self._written, self._failed, self._shed

    def close(self, timeout_seconds: float = 10.0) -> None:
        """Write what is queued (for at most ``timeout_seconds``), then stop the thread."""
        try:
            self._queue.put(None, timeout=timeout_seconds)
        except queue.Full:
            return
        self._thread.join(timeout_seconds)
