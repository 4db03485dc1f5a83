"""Merging a rebuilt (staging) copy of windows into the live InfluxDB database, one window at a time.

A window of the live database is replaced by its rebuilt version in two steps:

1. **write** every class of the rebuilt window that differs from the live one, whole (requests cut by
   ``connectors.influxdb.class_batches``: whole classes, a large class in parts of at least k pseudonyms).
   A point with the same series and timestamp overwrites the live one, so unchanged points stay as they are.
2. **delete** what the rebuilt window no longer has: a live series of a class that the rebuilt window still
   has is deleted series by series (the class keeps at least the k pseudonyms written in step 1 at every
   moment); a class that the rebuilt window no longer has at all is deleted in one statement (whole, like a
   write request); points of a series that stays are deleted by timestamp (the series, so the class, stays).

So at every moment each class a reader can see holds the k pseudonyms of its live or of its rebuilt version
(with InfluxDB's own per-request limits, docs/privacy.md section 6). A window whose rebuilt version equals the
live one gets no request at all: merging the same rebuild twice changes nothing.

A "window" here is the reader's: the points whose timestamps fall into [start, start + WINDOW_SECONDS).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from connectors.influxdb import InfluxV1Writer, class_batches, point_line

# series (its tags, sorted, empty ones left out) -> timestamp ns -> field values (sorted by field name)
Series = tuple[tuple[str, str], ...]
Points = dict[Series, dict[int, tuple[Any, ...]]]
NOT_CLASS_TAGS = frozenset({"pid", "lead"})
SUPPRESSED_LEVEL = "9"


class InfluxQueryError(RuntimeError):
    """An InfluxQL statement failed (the message holds the status and the server's reply, no credentials)."""


def _quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _quote_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class InfluxQL:
    """InfluxDB 1.x ``/query`` (InfluxQL) and ``/write`` for one database."""

    def __init__(self, url: str, db: str, username: str = "", password: str = "", rp: str = "") -> None:
        self.url, self.db = url.rstrip("/"), db
        self._headers = {"Content-Type": "application/x-www-form-urlencoded"}
        self._secrets: tuple[str, ...] = ()
        if username:
            token = base64.b64encode(f"{username}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
            self._secrets = (token, password)
        self.writer = InfluxV1Writer(url, db, rp, username, password)

    def query(self, statement: str, *, db: bool = True) -> list[dict[str, Any]]:
        """Rows of every series: {"_name", **tags, **columns}; times in ns."""
        params = {"q": statement, "epoch": "ns"}
        if db:
            params["db"] = self.db
        request = urllib.request.Request(self.url + "/query", data=urllib.parse.urlencode(params).encode(),
                                         headers=self._headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                document = json.loads(response.read())
        except urllib.error.HTTPError as error:
            reply = error.read().decode("utf-8", "replace")[:300]
            for secret in self._secrets:
                reply = reply.replace(secret, "***") if secret else reply
            raise InfluxQueryError(f"InfluxDB /query: HTTP {error.code}: {reply}") from None
        rows: list[dict[str, Any]] = []
        for result in document.get("results", []):
            if "error" in result:
                raise InfluxQueryError(f"InfluxDB /query: {result['error']}")
            for series in result.get("series", []) or []:
                base = {"_name": series.get("name"), **(series.get("tags") or {})}
                columns = series.get("columns", [])
                rows.extend({**base, **dict(zip(columns, values, strict=False))} for values in series.get("values", []))
        return rows

    def field_types(self, measurement: str) -> dict[str, str]:
        rows = self.query(f"SHOW FIELD KEYS FROM {_quote_ident(measurement)}")
        return {row["fieldKey"]: row["fieldType"] for row in rows}

    def busy_windows(self, measurement: str, start_ns: int, end_ns: int, window_ns: int) -> set[int]:
        """Start (ns) of every window in [start, end) that holds a point of ``measurement``."""
        rows = self.query(f"SELECT count(*) FROM {_quote_ident(measurement)} WHERE time >= {start_ns} AND "
                          f"time < {end_ns} GROUP BY time({window_ns // 1_000_000}ms) fill(none)")
        return {int(row["time"]) for row in rows}

    def points(self, measurement: str, start_ns: int, end_ns: int, types: Mapping[str, str]) -> Points:
        """Every point of ``measurement`` in [start, end), by series."""
        names = sorted(types)
        rows = self.query(f"SELECT {', '.join(_quote_ident(name) for name in names)} FROM {_quote_ident(measurement)} "
                          f"WHERE time >= {start_ns} AND time < {end_ns} GROUP BY *")
        points: Points = {}
        for row in rows:
            series = tuple(sorted((key, str(value)) for key, value in row.items()
                                  if key not in ("_name", "time", *names) and value not in (None, "")))
            values = tuple(_typed(row.get(name), types[name]) for name in names)
            points.setdefault(series, {})[int(row["time"])] = values
        return points

    def execute(self, statement: str) -> None:
        self.query(statement)


def _typed(value: Any, field_type: str) -> Any:
    """A field value from InfluxDB's JSON as the type it is stored with (JSON writes 1.0 as 1)."""
    if value is None:
        return None
    if field_type == "float":
        return float(value)
    if field_type == "integer":
        return int(value)
    if field_type == "boolean":
        return bool(value)
    return str(value)


def class_of(series: Series) -> tuple[tuple[str, str], ...] | None:
    """The equivalence class of a series (level and generalized labels); None for suppressed (level 9) points,
    whose pid is a per-window token and which belong to no class."""
    tags = dict(series)
    if tags.get("level") == SUPPRESSED_LEVEL:
        return None
    return tuple((key, value) for key, value in series if key not in NOT_CLASS_TAGS)


def _where(tags: Iterable[tuple[str, str]], start_ns: int, end_ns: int) -> str:
    conditions = [f"{_quote_ident(key)} = {_quote_string(value)}" for key, value in tags]
    return " AND ".join([*conditions, f"time >= {start_ns}", f"time < {end_ns}"])


@dataclass(frozen=True)
class Delete:
    """Every point of the series that have all of ``tags``, in [start, end)."""

    tags: tuple[tuple[str, str], ...]
    start_ns: int
    end_ns: int

    def statement(self, measurement: str) -> str:
        return f"DELETE FROM {_quote_ident(measurement)} WHERE {_where(self.tags, self.start_ns, self.end_ns)}"


@dataclass
class WindowPlan:
    """What replaces one live window by its rebuilt version: write requests first, then deletes."""

    writes: list[list[str]] = field(default_factory=list)
    deletes: list[Delete] = field(default_factory=list)
    classes_written: int = 0
    series_deleted: int = 0
    classes_deleted: int = 0

    @property
    def empty(self) -> bool:
        return not self.writes and not self.deletes


def plan_window(measurement: str, start_ns: int, end_ns: int, live: Points, rebuilt: Points,
                field_names: list[str], *, k: int, max_points: int) -> WindowPlan:
    """The requests that turn ``live`` (one window of the live database) into ``rebuilt`` (see module docstring)."""
    plan = WindowPlan()
    rebuilt_classes = {class_of(series) for series in rebuilt}
    changed = {class_of(series) if class_of(series) is not None else series
               for series, points in rebuilt.items() if live.get(series) != points}
    # 1. Write: every changed class whole (a suppressed series on its own).
    members = [series for series in sorted(rebuilt)
               if (class_of(series) if class_of(series) is not None else series) in changed]
    if members:
        def render(frames: list[Any]) -> list[str]:
            return [line for frame in frames for line in frame.lines]

        frames = []
        for series in members:
            tags = dict(series)
            lines = [point_line(measurement, tags, _fields(field_names, values), stamp)
                     for stamp, values in sorted(rebuilt[series].items())]
            level = int(tags.get("level", "0"))
            qi = {key: value for key, value in series if key not in NOT_CLASS_TAGS and key != "level"}
            if level == int(SUPPRESSED_LEVEL):
                qi["_series"] = repr(series)  # a suppressed series is a request of its own kind: never grouped
            frames.append(SimpleNamespace(level=level, qi=qi, pid=tags.get("pid", ""), lead=tags.get("lead", ""),
                                          ts_ms=0, lines=lines))
        plan.writes = list(class_batches(frames, render, max_points, k))
        plan.classes_written = len(changed)
    # 2. Delete what the rebuilt window no longer has.
    vanished: set[tuple[tuple[str, str], ...]] = set()
    for series in sorted(live):
        stale = sorted(set(live[series]) - set(rebuilt.get(series, {})))
        if not stale:
            continue
        klass = class_of(series)
        if series in rebuilt:  # the series stays: only its extra points go
            plan.deletes += [Delete(series, stamp, stamp + 1) for stamp in stale]
        elif klass is not None and klass not in rebuilt_classes:
            vanished.add(klass)
        else:
            plan.deletes.append(Delete(series, start_ns, end_ns))
            plan.series_deleted += 1
    for klass in sorted(vanished):  # a whole class in one statement: never a part of it below k
        plan.deletes.append(Delete(klass, start_ns, end_ns))
        plan.classes_deleted += 1
    return plan


@dataclass
class MergeReport:
    windows_compared: int = 0
    windows_changed: int = 0
    write_requests: int = 0
    points_written: int = 0
    classes_written: int = 0
    series_deleted: int = 0
    classes_deleted: int = 0
    statements: int = 0


def merge(live: InfluxQL, staging: InfluxQL, measurement: str, stats_measurement: str, start_ns: int, end_ns: int,
          window_ns: int, *, k: int, max_points: int) -> MergeReport:
    """Replace every window in [start, end) of ``live`` whose rebuilt version (in ``staging``) differs."""
    report = MergeReport()
    types = staging.field_types(measurement) or live.field_types(measurement)
    names = sorted(types)
    windows = sorted(live.busy_windows(measurement, start_ns, end_ns, window_ns)
                     | staging.busy_windows(measurement, start_ns, end_ns, window_ns))
    for window in windows:
        report.windows_compared += 1
        plan = plan_window(measurement, window, window + window_ns,
                           live.points(measurement, window, window + window_ns, types),
                           staging.points(measurement, window, window + window_ns, types),
                           names, k=k, max_points=max_points)
        if plan.empty:
            continue
        report.windows_changed += 1
        for request in plan.writes:
            live.writer.write_lines(request)
            report.write_requests += 1
            report.points_written += len(request)
        for delete in plan.deletes:
            live.execute(delete.statement(measurement))
            report.statements += 1
        report.classes_written += plan.classes_written
        report.series_deleted += plan.series_deleted
        report.classes_deleted += plan.classes_deleted
    # The windows' statistics (one point per group and window): the rebuilt ones overwrite the live ones.
    stats_types = staging.field_types(stats_measurement)
    if stats_types:
        stats_names = sorted(stats_types)
        rebuilt = staging.points(stats_measurement, start_ns, end_ns, stats_types)
        current = live.points(stats_measurement, start_ns, end_ns, stats_types) if live.field_types(
            stats_measurement) else {}
        lines = [point_line(stats_measurement, dict(series), _fields(stats_names, values), stamp)
                 for series, by_time in sorted(rebuilt.items()) for stamp, values in sorted(by_time.items())
                 if current.get(series, {}).get(stamp) != values]
        for chunk in _chunks(lines, max_points):
            live.writer.write_lines(chunk)
            report.write_requests += 1
    return report


def _fields(names: list[str], values: tuple[Any, ...]) -> dict[str, Any]:
    return {name: value for name, value in zip(names, values, strict=True) if value is not None}


def _chunks(lines: list[str], size: int) -> Iterator[list[str]]:
    for first in range(0, len(lines), size):
        yield lines[first:first + size]
