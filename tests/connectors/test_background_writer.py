"""The sink's background writer: same requests in the same order as synchronous writes, drained at every
bundle finish, and a failed write fails the job instead of being dropped (operators/sinks.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any
from unittest import mock

import numpy as np
import pytest

from connectors.config import load_settings
from connectors.influxdb import InfluxOptions, InfluxTransportError
from operators import sinks
from operators.k_anonymity import WindowOptions
from operators.records import WindowOutput
from privacy.metrics import WindowMetrics
from privacy.model import PublishedFrame

START_MS = 1_763_812_800_000


class FakeWriter:
    def __init__(self, delay: float = 0.0, fail_at: int | None = None) -> None:
        self.requests: list[list[str]] = []
        self.delay = delay
        self.fail_at = fail_at
        self.calls = 0
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def write_lines(self, lines: Sequence[str]) -> None:
        with self._lock:  # concurrent writers call this from several threads
            self.calls += 1
            call = self.calls
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        if self.fail_at is not None and call == self.fail_at:
            raise InfluxTransportError("InfluxDB v1 write failed (503): down")
        self.requests.append(list(lines))

    def close(self) -> None:
        pass


def window(start_s: int, patients: int = 12) -> WindowOutput:
    frames = [PublishedFrame(pid=f"p{i:02d}", lead="II", ts_ms=START_MS + 1000 * (start_s + s), fs=250.0,
                             level=3, qi={"age": "50-59" if i % 2 else "60-69", "sex": "*", "zip": "1****"},
                             ecg_mv=np.full(250, 0.01 * i), hr_bpm=70.0, imputed=False)
              for i in range(patients) for s in range(5)]
    metrics = mock.MagicMock(spec=WindowMetrics)
    metrics.configure_mock(patients_by_level={3: patients}, distinct_patients=patients, patients_suppressed=0,
                           suppression_rate=0.0, ncp=0.5, frames_in=len(frames), frames_suppressed=0,
                           samples_published=250 * len(frames), samples_suppressed=0, frames_by_level={3: len(frames)},
                           frames_published=len(frames))
    metrics.accounting_ok.return_value = True
    return WindowOutput(group="ward-1", window_start_ms=START_MS + 1000 * start_s,
                        window_end_ms=START_MS + 1000 * (start_s + 5), published=frames, metrics=metrics)


def run_sink(writer: FakeWriter, queue: int, windows: list[WindowOutput], hook_seen: bool,
             writers: int = 1) -> sinks.WriteWindows:
    settings = load_settings(["--influx-batch-points", "1000", "--influx-write-queue", str(queue),
                              "--influx-writers", str(writers), "--k-anonymity", "5"],
                             environ={"PSEUDONYM_SECRET": "background-writer-test-secret"})
    sink = sinks.WriteWindows(InfluxOptions.from_settings(settings), WindowOptions.from_settings(settings))
    with mock.patch.object(sinks, "make_writer", return_value=writer):
        sink.open(mock.MagicMock())
    sinks._BundleHook.seen = hook_seen
    for value in windows:
        assert list(sink.process_element(value, mock.MagicMock())) == []
    return sink


@pytest.fixture(autouse=True)
def _reset_hook() -> Any:
    seen = sinks._BundleHook.seen
    yield
    sinks._BundleHook.seen = seen


def test_background_writes_equal_synchronous_writes_in_the_same_order() -> None:
    windows = [window(5 * n) for n in range(4)]
    synchronous, background = FakeWriter(), FakeWriter(delay=0.01)
    run_sink(synchronous, 0, windows, hook_seen=True).close()
    sink = run_sink(background, 3, windows, hook_seen=True)
    assert len(background.requests) < len(synchronous.requests)  # still writing while the next window runs
    bundle_finish()
    assert background.requests == synchronous.requests
    assert background.threads == {"influx-writer"}
    assert synchronous.threads == {threading.current_thread().name}
    assert background.requests[-1][0].startswith("ecg_window_stats,")  # the statistics line last
    sink.close()


def bundle_finish() -> None:
    """What PyFlink runs when it finishes a bundle (before a checkpoint barrier passes)."""
    from pyflink.fn_execution.datastream.process import operations

    assert sinks._BundleHook.install()
    operation = object.__new__(operations.StatelessOperation)  # the sink's operation class (process mode)
    operation.base_metric_group = None
    operation.operator_state_backend = None
    operation.finish()


def test_bundle_finish_drains_and_is_seen() -> None:
    writer = FakeWriter(delay=0.02)
    sink = run_sink(writer, 50, [window(0), window(5)], hook_seen=True)
    sinks._BundleHook.seen = False
    bundle_finish()
    assert sinks._BundleHook.seen
    assert len(writer.requests) == writer.calls and writer.requests[-1][0].startswith("ecg_window_stats,")
    sink.close()


def test_writes_stay_synchronous_until_a_bundle_finish_was_seen() -> None:
    writer = FakeWriter()
    sink = run_sink(writer, 8, [window(0)], hook_seen=False)
    assert writer.threads == {threading.current_thread().name}
    sink.close()


@pytest.mark.parametrize("where", ["next element", "bundle finish", "close"])
def test_a_failed_write_fails_the_job_and_nothing_after_it_is_written(where: str) -> None:
    writer = FakeWriter(fail_at=2)
    sink = run_sink(writer, 64, [window(0)], hook_seen=True)
    time.sleep(0.2)
    with pytest.raises(InfluxTransportError):
        if where == "next element":
            list(sink.process_element(window(5), mock.MagicMock()))
        elif where == "bundle finish":
            bundle_finish()
        else:
            sink.close()
    assert len(writer.requests) == 1  # the first request; none after the failed one (no stats line)
    assert not any(line.startswith("ecg_window_stats,") for request in writer.requests for line in request)
    if where != "close":
        with pytest.raises(InfluxTransportError):
            sink.close()


def test_concurrent_writers_write_the_same_requests_and_each_window_statistics_after_its_classes() -> None:
    windows = [window(5 * n, patients=40) for n in range(3)]
    synchronous, concurrent = FakeWriter(), FakeWriter(delay=0.01)
    run_sink(synchronous, 0, windows, hook_seen=True).close()
    run_sink(concurrent, 0, windows, hook_seen=True, writers=3).close()
    assert len(synchronous.requests) >= 3 * 4  # several class requests per window, or nothing runs at once
    assert sorted(concurrent.requests) == sorted(synchronous.requests)
    assert len({name for name in concurrent.threads if name.startswith("influx-writer")}) > 1
    # Completion order: each window's statistics line is preceded by as many written requests as in a
    # synchronous run, so only after every class request of its window (and of the windows before).
    stats_at = [i for i, request in enumerate(concurrent.requests) if request[0].startswith("ecg_window_stats,")]
    synchronous_stats = [i for i, request in enumerate(synchronous.requests)
                         if request[0].startswith("ecg_window_stats,")]
    assert len(stats_at) == 3 and stats_at == synchronous_stats


def test_a_failed_concurrent_write_fails_the_window_without_its_statistics_line() -> None:
    writer = FakeWriter(delay=0.01, fail_at=3)
    with pytest.raises(InfluxTransportError):
        run_sink(writer, 0, [window(0, patients=40)], hook_seen=True, writers=2)
    assert not any(line.startswith("ecg_window_stats,") for request in writer.requests for line in request)
    # Every request written holds whole classes (the same ones a synchronous run writes), never a part below k.
    synchronous = FakeWriter()
    run_sink(synchronous, 0, [window(0, patients=40)], hook_seen=True).close()
    assert all(request in synchronous.requests for request in writer.requests)
