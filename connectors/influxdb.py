"""InfluxDB output: deterministic line protocol for published frames, two write transports.

- v2: influxdb-client `write_api` (InfluxDB 2.x/3.x, 1.8+ compatibility API, VictoriaMetrics).
- v1: the same line protocol POSTed to `/write?db=&rp=&precision=ns` (InfluxDB 1.x).

Points are a pure function of the published frame (timestamp `ts + i/fs` in ns, sorted tags), so a
replayed window rewrites identical points: InfluxDB keeps one point per series and timestamp.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import hashlib
import logging
import math
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np

from connectors.config import Settings, options_from_settings

log = logging.getLogger(__name__)

_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\r": r"\r", "\t": r"\t"})
_ESCAPE_TAG = str.maketrans(
    {",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\r": r"\r", "\t": r"\t", "\\": "\\\\"}
)


def _escape_tag(value: str) -> str:
    escaped = str(value).translate(_ESCAPE_TAG)
    # A trailing backslash would escape the separator that follows (same rule as influxdb-client).
    return escaped + " " if escaped.endswith("\\") else escaped


def _float_text(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def point_line(measurement: str, tags: dict[str, str], fields: dict[str, float | int | bool], ts_ns: int) -> str:
    """One line of line protocol (tags sorted; ints as ``5i``; non-finite floats left out)."""
    tag_text = "".join(f",{_escape_tag(k)}={_escape_tag(v)}" for k, v in sorted(tags.items()) if v != "")
    parts = []
    for key, value in sorted(fields.items()):
        if isinstance(value, bool):
            parts.append(f"{_escape_tag(key)}={'true' if value else 'false'}")
        elif isinstance(value, int):
            parts.append(f"{_escape_tag(key)}={value}i")
        elif np.isfinite(value):
            parts.append(f"{_escape_tag(key)}={_float_text(value)}")
    return f"{_escape_tag(measurement)}{tag_text} {','.join(parts)} {int(ts_ns)}"


def sample_timestamps_ns(ts_ms: int, fs: float, count: int) -> np.ndarray:
    """Timestamp of sample i: ts + i / fs, in integer nanoseconds (exact for integer fs)."""
    offsets = np.rint(np.arange(count, dtype=np.float64) * (1e9 / float(fs))).astype(np.int64)
    return np.int64(ts_ms) * np.int64(1_000_000) + offsets


def frame_tags(frame: Any) -> dict[str, str]:
    """The published tag set of a frame: pid, lead, level and the generalized quasi-identifiers."""
    tags = {str(name): str(value) for name, value in frame.qi.items()}
    tags.update(pid=str(frame.pid), lead=str(frame.lead), level=str(int(frame.level)))
    return tags


class _FloatTexts(dict[int, str]):
    """``_float_text`` of a float64 keyed by its bit pattern (so 0.0 and -0.0 stay apart), filled on demand.

    Published samples are rounded to the level's precision, so a window has a few thousand distinct
    values: a dict hit is ~3x cheaper than ``repr`` + strip. Cleared when it grows past ``limit``
    (a hierarchy that keeps raw precision just gets fewer hits)."""

    limit = 200_000

    def __missing__(self, bits: int) -> str:
        text = _float_text(struct.unpack("<d", struct.pack("<q", bits))[0])
        if len(self) >= self.limit:
            self.clear()
        self[bits] = text
        return text


_FLOAT_TEXTS = _FloatTexts()


@lru_cache(maxsize=4096)
def _stamp_runs(phase_ns: int, fs: float, count: int) -> tuple[tuple[int, int, int, tuple[str, ...]], ...]:
    """Timestamps ``phase_ns + sample offset`` split into whole seconds and 9-digit nanosecond texts:
    runs of (seconds carried, first, end, nanosecond texts), so a frame's stamps are text joins."""
    offsets = sample_timestamps_ns(0, fs, count) + np.int64(phase_ns)
    carries = (offsets // 1_000_000_000).tolist()
    texts = [f"{low:09d}" for low in (offsets % 1_000_000_000).tolist()]
    runs = []
    first = 0
    for index in range(1, count + 1):
        if index == count or carries[index] != carries[first]:
            runs.append((int(carries[first]), first, index, tuple(texts[first:index])))
            first = index
    return tuple(runs)


def frame_lines(frame: Any, measurement: str) -> list[str]:
    """Line protocol, one line per sample, identical to influxdb_client.Point's encoding."""
    tags = frame_tags(frame)
    prefix = measurement.translate(_ESCAPE_MEASUREMENT) + "".join(
        f",{_escape_tag(key)}={_escape_tag(tags[key])}" for key in sorted(tags) if tags[key] != ""
    )
    hr_bpm = float(frame.hr_bpm)
    hr_part = f",hr_bpm={_float_text(hr_bpm)}" if math.isfinite(hr_bpm) else ""
    tail = f"{hr_part},imputed={'true' if frame.imputed else 'false'} "
    values = np.ascontiguousarray(frame.ecg_mv, dtype=np.float64)
    ts_ms = int(frame.ts_ms)
    if ts_ms < 1000 or values.ndim != 1:  # no whole seconds to prefix: the plain (slower) encoding
        stamps = sample_timestamps_ns(ts_ms, frame.fs, len(values)).tolist()
        return [
            f"{prefix} ecg_mv={_float_text(value)}{tail}{stamp}"
            for value, stamp in zip(values.tolist(), stamps, strict=True)
            if math.isfinite(value)
        ]
    # Same text, built from cached pieces: value texts by bit pattern, stamps as seconds + 9 digits.
    head = f"{prefix} ecg_mv="
    texts = _FLOAT_TEXTS
    bits = values.view(np.int64).tolist()
    seconds, phase_ms = divmod(ts_ms, 1000)
    lines: list[str] = []
    for carry, first, end, nanos in _stamp_runs(phase_ms * 1_000_000, float(frame.fs), len(bits)):
        middle = f"{tail}{seconds + carry}"
        lines += [f"{head}{texts[b]}{middle}{n}" for b, n in zip(bits[first:end], nanos, strict=True)]
    finite = np.isfinite(values)
    if not finite.all():
        lines = [line for line, ok in zip(lines, finite.tolist(), strict=True) if ok]
    return lines


def window_lines(frames: Iterable[Any], measurement: str) -> list[str]:
    lines: list[str] = []
    for frame in frames:
        lines.extend(frame_lines(frame, measurement))
    return lines


def stats_line(measurement: str, tags: dict[str, str], fields: dict[str, float | int], time_ms: int) -> str:
    """One point of the job's own statistics (integers as InfluxDB integers, floats as floats)."""
    prefix = measurement.translate(_ESCAPE_MEASUREMENT) + "".join(
        f",{_escape_tag(key)}={_escape_tag(tags[key])}" for key in sorted(tags) if tags[key] != ""
    )
    values = ",".join(
        f"{name}={value}i" if isinstance(value, int) else f"{name}={_float_text(value)}"
        for name, value in sorted(fields.items())
        if isinstance(value, int) or math.isfinite(value)
    )
    return f"{prefix} {values} {int(time_ms) * 1_000_000}"


def group_digest(group: str) -> str:
    """The group key (e.g. a ward) as published in statistics and CSV file names: a digest, not the name."""
    return hashlib.sha256(group.encode("utf-8")).hexdigest()[:12]


def window_stats_line(measurement: str, group: str, window_start_ms: int, metrics: Any) -> str:
    """`ecg_window_stats`: what one anonymized (group, window) published (for dashboards)."""
    by_level = {int(level): int(count) for level, count in metrics.patients_by_level.items()}
    patients = sum(by_level.values())
    fields: dict[str, float | int] = {
        "patients": int(metrics.distinct_patients),
        "patients_suppressed": int(metrics.patients_suppressed),
        "suppression_rate": float(metrics.suppression_rate),
        "ncp": float(metrics.ncp),
        "mean_level": sum(level * count for level, count in by_level.items()) / patients if patients else math.nan,
        "frames": int(metrics.frames_in),
        "frames_suppressed": int(metrics.frames_suppressed),
        "samples_published": int(metrics.samples_published),
        "samples_imputed": int(metrics.samples_suppressed),
    }
    return stats_line(measurement, {"group": group_digest(group)}, fields, window_start_ms)


def class_key(frame: Any) -> tuple[int, tuple[tuple[str, str], ...]]:
    """A published frame's equivalence class: its level and generalized labels."""
    return int(frame.level), tuple(sorted((str(name), str(value)) for name, value in frame.qi.items()))


def class_requests(frames: Iterable[Any], measurement: str, max_points: int, k: int) -> Iterator[list[str]]:
    """A window's points as line-protocol write requests that never split an equivalence class
    (``class_batches`` of the frames' lines)."""
    return class_batches(frames, lambda patient: window_lines(patient, measurement), max_points, k)


PointT = TypeVar("PointT")


def class_batches(
    frames: Iterable[Any], render: Callable[[list[Any]], list[PointT]], max_points: int, k: int
) -> Iterator[list[PointT]]:
    """A window's points as requests that never split an equivalence class; ``render`` turns one patient's
    frames of a class (sorted by time, lead) into its points (a line each for InfluxDB, a JSON object for HTTP).

    Classes are packed whole into requests of up to ``max_points`` points, in a deterministic order.
    A class larger than that gets requests of its own, cut only between patients and into parts of at
    least ``k`` patients each: whatever prefix of the requests a reader sees, each class it shows holds
    >= k distinct pseudonyms (a request is the unit InfluxDB applies, or fails, as a whole).
    """
    by_class: dict[tuple[int, tuple[tuple[str, str], ...]], dict[str, list[Any]]] = {}
    for frame in frames:
        by_class.setdefault(class_key(frame), {}).setdefault(str(frame.pid), []).append(frame)
    batch: list[PointT] = []
    for key in sorted(by_class):
        patients = [
            render(sorted(by_class[key][pid], key=lambda f: (int(f.ts_ms), str(f.lead))))
            for pid in sorted(by_class[key])
        ]
        size = sum(len(points) for points in patients)
        if size <= max_points:
            if batch and len(batch) + size > max_points:
                yield batch
                batch = []
            for points in patients:
                batch.extend(points)
            continue
        if batch:
            yield batch
            batch = []
        yield from _split_between_patients(patients, max_points, k)
    if batch:
        yield batch


def _split_between_patients(patients: list[list[PointT]], max_points: int, k: int) -> Iterator[list[PointT]]:
    part: list[PointT] = []
    members = 0
    for index, lines in enumerate(patients):
        left = len(patients) - index
        # Close the part when it is full and holds >= k patients, unless fewer than k would remain.
        if members >= k and len(part) + len(lines) > max_points and left >= k:
            yield part
            part, members = [], 0
        part.extend(lines)
        members += 1
    if part:
        yield part


class InfluxWriteError(RuntimeError):
    """A write the server rejected for good (4xx): retrying the same points cannot succeed."""


class InfluxTransportError(RuntimeError):
    """A write that failed after retries (5xx, connection); the message is credential-free."""


def _redact(text: str, secrets: Sequence[str]) -> str:
    """Server replies may echo request headers (proxies do): never let credentials into an error."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class LineWriter(Protocol):
    def write_lines(self, lines: Sequence[str]) -> None: ...

    def close(self) -> None: ...


def _retrying(action: Any, what: str, attempts: int = 6, first_delay: float = 0.5) -> None:
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            action()
            return
        except InfluxWriteError:
            raise
        except Exception as error:
            if attempt == attempts:
                raise
            log.warning("%s failed (attempt %d/%d): %s; retrying", what, attempt, attempts, type(error).__name__)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


class InfluxV1Writer:
    """POST line protocol to InfluxDB 1.x `/write` (precision ns), synchronously."""

    def __init__(self, url: str, db: str, rp: str = "", username: str = "", password: str = "") -> None:
        query = {"db": db, "precision": "ns"}
        if rp:
            query["rp"] = rp
        self._endpoint = url.rstrip("/") + "/write?" + urllib.parse.urlencode(query)
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        self._secrets: tuple[str, ...] = ()
        if username:
            token = base64.b64encode(f"{username}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
            self._secrets = (token, password)

    def _post(self, body: bytes) -> None:
        request = urllib.request.Request(self._endpoint, data=body, headers=self._headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()
        except urllib.error.HTTPError as error:
            detail = _redact(error.read().decode("utf-8", "replace")[:500], self._secrets)
            if 400 <= error.code < 500:
                raise InfluxWriteError(f"InfluxDB v1 write rejected ({error.code}): {detail}") from None
            raise InfluxTransportError(f"InfluxDB v1 write failed ({error.code}): {detail}") from None

    def write_lines(self, lines: Sequence[str]) -> None:
        if lines:
            body = "\n".join(lines).encode("utf-8")
            _retrying(lambda: self._post(body), "InfluxDB v1 write")

    def close(self) -> None:
        pass


class InfluxV2Writer:
    """influxdb-client synchronous write_api (v2 `/api/v2/write`, precision ns)."""

    def __init__(self, url: str, token: str, org: str, bucket: str) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self._client = InfluxDBClient(url=url, token=token or "unused", org=org, timeout=30_000)
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._bucket, self._org = bucket, org
        self._secrets = (token,)

    def _write(self, lines: Sequence[str]) -> None:
        from influxdb_client.rest import ApiException

        try:
            # influxdb-client's default write precision is ns, the precision of our lines.
            self._write_api.write(self._bucket, self._org, record=list(lines))
        except ApiException as error:
            body = _redact(str(error.body)[:500], self._secrets)
            if error.status is not None and 400 <= int(error.status) < 500:
                raise InfluxWriteError(f"InfluxDB v2 write rejected ({error.status}): {body}") from None
            # ApiException's text carries the reply headers; keep only status and (redacted) body.
            raise InfluxTransportError(f"InfluxDB v2 write failed ({error.status}): {body}") from None

    def write_lines(self, lines: Sequence[str]) -> None:
        if lines:
            _retrying(lambda: self._write(lines), "InfluxDB v2 write")

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class InfluxOptions:
    """Where and how the operators write to InfluxDB: the INFLUX_* settings (field ``url`` = ``INFLUX_URL``).
    Picklable, so it travels into the Python operators; the secrets stay out of its repr."""

    SETTINGS_PREFIX: ClassVar[str] = "influx_"

    transport: str
    url: str
    token: str = field(repr=False)
    org: str
    bucket: str
    db: str
    branch_bucket: str
    rp: str
    username: str
    password: str = field(repr=False)
    measurement: str
    batch_points: int
    write_queue: int
    writers: int

    @classmethod
    def from_settings(cls, settings: Settings) -> InfluxOptions:
        return options_from_settings(cls, settings)

    def for_branch(self) -> InfluxOptions:
        """Where the cardio branch writes its per-patient statistics: INFLUX_BRANCH_BUCKET (the v2 bucket, or the
        v1 database), or the main bucket / database when it is empty. In the compose stack a bucket of its own,
        which Grafana's read token cannot read."""
        if not self.branch_bucket:
            return self
        return dataclasses.replace(self, bucket=self.branch_bucket, db=self.branch_bucket)


def make_writer(options: InfluxOptions) -> LineWriter:
    if options.transport == "v1":
        return InfluxV1Writer(options.url, options.db, options.rp, options.username, options.password)
    return InfluxV2Writer(options.url, options.token, options.org, options.bucket)


CSV_FIELDS = ("ecg_mv", "hr_bpm", "imputed")


def write_window_csv(directory: Path, file_stem: str, frames: Iterable[Any]) -> Path:
    """One CSV per window (columns: time_ns, the point's tags, its fields), written to a temp name and
    renamed: a replay rewrites the same file."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{file_stem}.csv"
    temporary = target.with_suffix(".csv.tmp")
    frames = list(frames)
    tag_names = sorted({name for frame in frames for name in frame_tags(frame)})
    with temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("time_ns", *tag_names, *CSV_FIELDS))
        for frame in frames:
            tags = frame_tags(frame)
            tag_values = [tags.get(name, "") for name in tag_names]
            values = np.asarray(frame.ecg_mv, dtype=np.float64)
            stamps = sample_timestamps_ns(frame.ts_ms, frame.fs, len(values)).tolist()
            hr_bpm = _float_text(frame.hr_bpm) if math.isfinite(float(frame.hr_bpm)) else ""
            imputed = "true" if frame.imputed else "false"
            for value, stamp in zip(values.tolist(), stamps, strict=True):
                if math.isfinite(value):
                    writer.writerow((stamp, *tag_values, _float_text(value), hr_bpm, imputed))
    temporary.replace(target)
    return target
