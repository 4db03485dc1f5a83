"""Line protocol encoding and both write transports against real servers."""

from __future__ import annotations

import math
import uuid

import numpy as np
import pytest
from influxdb_client import Point, WritePrecision

from connectors.influxdb import (
    InfluxV1Writer,
    InfluxV2Writer,
    InfluxWriteError,
    frame_lines,
    sample_timestamps_ns,
    write_window_csv,
)
from devstack.influx_queries import count_points_v1, count_points_vm, create_database_v1, query_v1
from privacy.model import PublishedFrame


def _frame(pid: str = "a1b2c3d4e5f60718", n: int = 5, imputed: bool = False, hr: float = 71.5) -> PublishedFrame:
    return PublishedFrame(
        pid=pid,
        lead="II",
        ts_ms=1_763_812_800_000,
        fs=360.0,
        level=9 if imputed else 2,
        qi={"age": "*" if imputed else "50-59", "sex": "*" if imputed else "F", "zip": "*" if imputed else "101**"},
        ecg_mv=np.linspace(-0.5, 1.25, n),
        hr_bpm=hr,
        imputed=imputed,
    )


def test_lines_equal_influxdb_client_point_encoding() -> None:
    frame = _frame()
    lines = frame_lines(frame, "ecg_anonymized")
    stamps = sample_timestamps_ns(frame.ts_ms, frame.fs, 5)
    for i, line in enumerate(lines):
        point = Point("ecg_anonymized").time(int(stamps[i]), WritePrecision.NS)
        for key, value in {"pid": frame.pid, "lead": "II", "level": "2", **frame.qi}.items():
            point = point.tag(key, value)
        point = point.field("ecg_mv", float(frame.ecg_mv[i])).field("hr_bpm", 71.5).field("imputed", False)
        assert line == point.to_line_protocol()


def test_timestamps_are_ts_plus_i_over_fs_in_ns() -> None:
    stamps = sample_timestamps_ns(1_000, 250.0, 3)
    assert stamps.tolist() == [1_000_000_000, 1_004_000_000, 1_008_000_000]
    stamps_360 = sample_timestamps_ns(0, 360.0, 361)
    assert stamps_360[-1] == 1_000_000_000 and len(set(stamps_360.tolist())) == 361


def test_unknown_hr_is_omitted_not_nan() -> None:
    lines = frame_lines(_frame(hr=math.nan), "m")
    assert all("hr_bpm" not in line and "nan" not in line.lower() for line in lines)


def test_tag_values_are_escaped() -> None:
    frame = _frame()
    object.__setattr__(frame, "qi", {"age": "a b,c=d", "sex": "F", "zip": "1\\"})
    line = frame_lines(frame, "m m")[0]
    assert line.startswith("m\\ m,age=a\\ b\\,c\\=d,")


@pytest.mark.usefixtures("local_stack")
def test_v1_transport_writes_and_replay_is_idempotent(local_stack) -> None:  # type: ignore[no-untyped-def]
    db = "t" + uuid.uuid4().hex[:8]
    create_database_v1(local_stack.influx_v1_url, db)
    writer = InfluxV1Writer(local_stack.influx_v1_url, db)
    suppressed = _frame("ffff0000ffff0000", 360, imputed=True)
    lines = frame_lines(_frame(n=360), "ecg_anonymized") + frame_lines(suppressed, "ecg_anonymized")
    writer.write_lines(lines)
    writer.write_lines(lines)  # a replayed window
    assert count_points_v1(local_stack.influx_v1_url, db, "ecg_anonymized") == 720
    assert count_points_v1(local_stack.influx_v1_url, db, "ecg_anonymized", where='"imputed" = true') == 360
    levels = query_v1(local_stack.influx_v1_url, 'SHOW TAG VALUES FROM "ecg_anonymized" WITH KEY = "level"', db)
    assert sorted(row["value"] for row in levels) == ["2", "9"]
    with pytest.raises(InfluxWriteError, match="400"):
        writer.write_lines([lines[0].split(" ")[0] + ' ecg_mv="text" ' + lines[0].split(" ")[-1]])  # type conflict


@pytest.mark.usefixtures("local_stack")
def test_v2_transport_writes_to_victoria_metrics(local_stack) -> None:  # type: ignore[no-untyped-def]
    measurement = "m" + uuid.uuid4().hex[:8]
    writer = InfluxV2Writer(local_stack.influx_v2_url, token="unused", org="ecg", bucket="ecg")
    lines = frame_lines(_frame(n=100), measurement)
    writer.write_lines(lines)
    writer.write_lines(lines)
    writer.close()
    assert count_points_vm(local_stack.influx_v2_url, measurement) == 100


def test_csv_window_file_is_rewritten_identically(tmp_path) -> None:  # type: ignore[no-untyped-def]
    frames = [_frame(), _frame("ffff0000ffff0000", imputed=True)]
    first = write_window_csv(tmp_path, "window-1", frames).read_bytes()
    second = write_window_csv(tmp_path, "window-1", frames).read_bytes()
    assert first == second and first.count(b"\n") == 11
    header = first.split(b"\n", 1)[0].decode().strip()
    assert header == "time_ns,age,lead,level,pid,sex,zip,ecg_mv,hr_bpm,imputed"  # the point's tags and fields


def test_fast_encoding_equals_point_line_for_awkward_values_and_timestamps() -> None:
    """frame_lines builds lines from cached pieces (value texts by bit pattern, stamps as seconds + 9 digits):
    the bytes must equal the plain per-point encoding, for -0.0, tiny/huge values, non-finite samples
    (left out), timestamps before 1 s, just before a second boundary, and rates whose offsets round."""
    from connectors.influxdb import point_line

    values = np.array([0.0, -0.0, 1e-7, -2.5e-5, 1e16, 123456789.125, np.nan, np.inf, -np.inf, 0.015, 5e-324, -1.0])
    for ts_ms in (0, 999, 1_000, 1_763_812_800_999, 1_763_812_801_000):
        for fs in (250.0, 360.0, 97.3):
            frame = _frame(n=len(values))
            object.__setattr__(frame, "ecg_mv", values)
            object.__setattr__(frame, "ts_ms", ts_ms)
            object.__setattr__(frame, "fs", fs)
            stamps = sample_timestamps_ns(ts_ms, fs, len(values)).tolist()
            tags = {"pid": frame.pid, "lead": frame.lead, "level": "2", **frame.qi}
            expected = [point_line("m", tags, {"ecg_mv": value, "hr_bpm": 71.5, "imputed": False}, stamp)
                        for value, stamp in zip(values.tolist(), stamps, strict=True) if math.isfinite(value)]
            assert frame_lines(frame, "m") == expected
            assert frame_lines(frame, "m") == expected  # cached pieces on the second call
