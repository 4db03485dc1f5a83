"""The CSV side output never holds back or fails the InfluxDB path: it sheds when its disk is slow and
counts windows it could not write, on a real filesystem."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from connectors.csv_output import CsvSideOutput
from connectors.influxdb import write_window_csv
from privacy.model import PublishedFrame


def _frames(pid: str = "a1b2c3d4e5f60718") -> list[PublishedFrame]:
    return [PublishedFrame(pid=pid, lead="II", ts_ms=1_763_812_800_000, fs=360.0, level=2,
                           qi={"age": "50-59", "sex": "F", "zip": "101**"}, ecg_mv=np.linspace(-0.5, 1.25, 4),
                           hr_bpm=71.5, imputed=False)]


def _settled(output: CsvSideOutput, total: int, timeout: float = 10.0) -> tuple[int, int, int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = output.counts()
        if sum(counts) >= total:
            return counts
        time.sleep(0.02)
    return output.counts()


def test_writes_the_same_files_as_the_inline_writer(tmp_path: Path) -> None:
    output = CsvSideOutput(tmp_path / "csv")
    for window in range(3):
        output.submit(f"window-{window}", _frames())
    output.close()
    assert output.counts() == (3, 0, 0)
    reference = write_window_csv(tmp_path / "reference", "window-0", _frames()).read_bytes()
    assert sorted(p.name for p in (tmp_path / "csv").iterdir()) == ["window-0.csv", "window-1.csv", "window-2.csv"]
    assert (tmp_path / "csv" / "window-0.csv").read_bytes() == reference


def test_a_failing_disk_is_counted_and_never_raised(tmp_path: Path, caplog: Any) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the CSV folder should be")
    output = CsvSideOutput(blocked / "csv")
    for window in range(5):
        output.submit(f"window-{window}", _frames(pid="Jane Doe"))  # never in a log line
    assert _settled(output, 5) == (0, 5, 0)
    output.close()
    assert "CSV output failed for 1 windows" in caplog.text
    assert "Jane" not in caplog.text and "window-" not in caplog.text


def test_a_stuck_disk_sheds_without_blocking_the_caller(tmp_path: Path) -> None:
    release = threading.Event()

    def stuck_then_real(directory: Path, file_stem: str, frames: Iterable[Any]) -> Path:
        release.wait(30)  # a disk that does not answer
        return write_window_csv(directory, file_stem, frames)

    output = CsvSideOutput(tmp_path, max_pending=4, write=stuck_then_real)
    output.submit("window-0", _frames())
    while output._queue.qsize():  # the writer thread holds window 0 (and hangs on the disk)
        time.sleep(0.01)
    started = time.monotonic()
    for window in range(1, 20):
        output.submit(f"window-{window}", _frames())
    assert time.monotonic() - started < 1.0, "the caller (the InfluxDB sink) must never wait on the CSV disk"
    release.set()
    written, failed, shed = _settled(output, 20)
    output.close()
    # One window in the writer's hands, four queued: the other fifteen are shed, counted, not silently lost.
    assert (written, failed, shed) == (5, 0, 15)
    assert len(list(tmp_path.glob("window-*.csv"))) == 5
