"""What a leak scan reads: everything an operator, an analyst or a dashboard can see of a job's run, as
``(where, content)`` pairs to search for raw identifiers and secrets (tests/integration/test_no_identifier_leaks.py).

* ``influx_dump``: every point, series, tag key and value, field key and measurement of a v1 database.
* ``flink_rest_dump``: what Flink's web UI and REST API show about the cluster and one job: configuration and
  environment, plan and vertex names, exceptions, accumulators (job, vertex, subtask), checkpoint statistics
  and the details of the latest checkpoint, watermarks, every metric name with its value (job, vertices and
  their subtasks, JobManager, TaskManagers), and the log and stdout files the REST API serves.
* ``files``: every file under a directory (logs, CSV, checkpoints).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from devstack.influx_queries import query_v1
from testkit.flink_rest import rest_get

# Flink REST paths that serve files (logs, stdout) as text, not JSON.
_TEXT_TAILS = ("/log", "/stdout")


def influx_dump(url: str, db: str) -> Iterator[tuple[str, str]]:
    """Everything the InfluxDB database holds, as (statement, JSON text) pairs."""
    for statement in (
        "SHOW MEASUREMENTS", "SHOW SERIES", "SHOW TAG KEYS", "SHOW FIELD KEYS", 'SHOW TAG VALUES WITH KEY =~ /.*/',
        "SHOW RETENTION POLICIES", "SELECT * FROM /.*/",
    ):
        yield statement, json.dumps(query_v1(url, statement, db), ensure_ascii=False)
    for statement in ("SHOW DATABASES", "SHOW USERS"):
        yield statement, json.dumps(query_v1(url, statement), ensure_ascii=False)


def _rest_text(port: int, path: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
        return bytes(response.read()).decode("utf-8", "replace")


def _metric_values(port: int, base: str, names: list[str]) -> list[Any]:
    """Values of the named metrics; one by one when the batch is refused (a metric can vanish between the
    listing and the query, e.g. a Python operator's gauges after a bundle), skipping the vanished ones."""
    try:
        return list(rest_get(port, f"{base}?get=" + urllib.parse.quote(",".join(names), safe=",")))
    except urllib.error.HTTPError:
        values = []
        for name in names:
            try:
                values += rest_get(port, f"{base}?get=" + urllib.parse.quote(name, safe=""))
            except urllib.error.HTTPError as error:
                if error.code != 404:
                    raise
        return values


def _metrics(port: int, base: str) -> Iterator[tuple[str, str]]:
    """Every metric under a REST metrics path (``.../metrics``), names and values, in batches."""
    names = [metric["id"] for metric in rest_get(port, base)]
    for start in range(0, len(names), 20):
        yield base, json.dumps(_metric_values(port, base, names[start:start + 20]), ensure_ascii=False)


def flink_rest_dump(port: int, jid: str, unavailable: list[str] | None = None) -> Iterator[tuple[str, str]]:
    """What Flink's web UI shows about the cluster and the job ``jid``, as (REST path, text) pairs. A path the
    cluster does not serve (e.g. a TaskManager's log file in a mini cluster without one) is appended to
    ``unavailable`` with its status, so a scan can say what it could not read."""
    def get(path: str) -> tuple[str, str] | None:
        try:
            if path.endswith(_TEXT_TAILS):
                return path, _rest_text(port, path)
            return path, json.dumps(rest_get(port, path), ensure_ascii=False)
        except urllib.error.HTTPError as error:
            if unavailable is None:
                raise
            unavailable.append(f"{path} ({error.code})")
            return None

    job = f"/jobs/{jid}"
    paths = ["/config", "/overview", "/jobmanager/config", "/jobmanager/environment", "/jobmanager/logs",
             "/jobmanager/log", "/jobmanager/stdout", "/jobs/overview", job, f"{job}/config", f"{job}/plan",
             f"{job}/exceptions", f"{job}/accumulators", f"{job}/checkpoints", f"{job}/checkpoints/config",
             f"{job}/jobmanager/config", f"{job}/jobmanager/environment", "/taskmanagers"]
    checkpoints = rest_get(port, f"{job}/checkpoints")
    latest = (checkpoints.get("latest") or {}).get("completed")
    if latest:
        paths.append(f"{job}/checkpoints/details/{latest['id']}")
    for vertex in rest_get(port, job)["vertices"]:
        base = f"{job}/vertices/{vertex['id']}"
        paths += [base, f"{base}/subtasks/accumulators", f"{base}/subtasktimes", f"{base}/taskmanagers",
                  f"{base}/watermarks"]
        if latest:
            paths.append(f"{job}/checkpoints/details/{latest['id']}/subtasks/{vertex['id']}")
    for tm in rest_get(port, "/taskmanagers")["taskmanagers"]:
        paths += [f"/taskmanagers/{tm['id']}{tail}" for tail in ("", "/logs", "/log", "/stdout")]
    for path in paths:
        found = get(path)
        if found is not None:
            yield found
    # Every metric with its value (the operators' own group `ecg` included): what the web UI's Metrics tab and
    # any metrics reporter see.
    yield from _metrics(port, f"{job}/metrics")
    yield from _metrics(port, "/jobmanager/metrics")
    for vertex in rest_get(port, job)["vertices"]:
        yield from _metrics(port, f"{job}/vertices/{vertex['id']}/metrics")
        yield from _metrics(port, f"{job}/vertices/{vertex['id']}/subtasks/metrics")
    for tm in rest_get(port, "/taskmanagers")["taskmanagers"]:
        yield from _metrics(port, f"/taskmanagers/{tm['id']}/metrics")


def files(directory: Path) -> Iterator[tuple[str, bytes]]:
    """Every file under ``directory`` (none if it does not exist), as (path, bytes)."""
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            yield str(path), path.read_bytes()
