"""Query helpers for the local InfluxDB 1.x and VictoriaMetrics (stdlib only; tests and tools check exact point
counts with them):

- ``query_v1(url, q, db=None)`` -> list of row dicts (InfluxQL, ``epoch=ns`` so ``time`` is an
  int in ns; each row also carries ``_measurement`` and the GROUP BY tags).
- ``count_points_v1(url, db, measurement, field="ecg_mv")`` -> int (``SELECT COUNT(field)``).
- ``write_v1(url, db, lines, precision="ns")``: line protocol ``/write``.
- ``export_vm(url, match)`` -> list of ``{"metric": {labels}, "values": [...],
  "timestamps": [ms...]}`` (VictoriaMetrics ``/api/v1/export`` JSON lines, after a force flush).
- ``count_points_vm(url, measurement, field="ecg_mv")`` -> int.

VictoriaMetrics caveats (important for exact counts): InfluxDB line protocol becomes one series
per field, named ``{measurement}_{field}`` (``ecg_anonymized_ecg_mv``); string fields are
dropped, booleans become 0/1; timestamps are stored in **milliseconds** (ns are truncated), and
with ``-dedup.minScrapeInterval=1ms`` samples of one series in the same millisecond collapse to
one -- replays are idempotent, but two samples < 1 ms apart (fs > 1000 Hz) are merged.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any

from devstack.processes import StackError

# --------------------------------------------------------------------------------------------
# HTTP helpers (stdlib only)


def http_request(
    method: str,
    url: str,
    *,
    params: Mapping[str, str] | None = None,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, bytes]:
    if params:
        url = f"{url}?{urllib.parse.urlencode(params)}"
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


class InfluxQueryError(RuntimeError):
    pass


def query_v1(
    url: str,
    q: str,
    db: str | None = None,
    *,
    epoch: str = "ns",
    timeout: float = 60.0,
) -> list[dict[str, Any]]:
    """Run InfluxQL against an InfluxDB 1.x ``/query`` endpoint and flatten the result.

    Returns one dict per row: ``{"_measurement": name, **group_by_tags, **{column: value}}``;
    with ``epoch="ns"`` the ``time`` column is an int (ns since epoch). Raises
    ``InfluxQueryError`` on an HTTP or statement error. Statements that return nothing (e.g.
    ``CREATE DATABASE``) give ``[]``.
    """
    params = {"q": q}
    if db:
        params["db"] = db
    if epoch:
        params["epoch"] = epoch
    status, body = http_request(
        "POST",
        url.rstrip("/") + "/query",
        data=urllib.parse.urlencode(params).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=timeout,
    )
    if status != 200:
        raise InfluxQueryError(f"{q!r}: HTTP {status}: {body[:500]!r}")
    doc = json.loads(body)
    if "error" in doc:
        raise InfluxQueryError(f"{q!r}: {doc['error']}")
    rows: list[dict[str, Any]] = []
    for result in doc.get("results", []):
        if "error" in result:
            raise InfluxQueryError(f"{q!r}: {result['error']}")
        for series in result.get("series", []) or []:
            base: dict[str, Any] = {"_measurement": series.get("name")}
            base.update(series.get("tags") or {})
            cols = series.get("columns", [])
            for values in series.get("values", []) or []:
                row = dict(base)
                row.update(zip(cols, values, strict=False))
                rows.append(row)
    return rows


def _q_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def count_points_v1(url: str, db: str, measurement: str, field: str = "ecg_mv", *, where: str | None = None) -> int:
    """Number of points of ``measurement`` in ``db`` (points having ``field``), 0 if none.

    ``where`` is an optional InfluxQL condition, e.g. ``"\\"pid\\" = 'abc'"``.
    """
    q = f"SELECT COUNT({_q_ident(field)}) FROM {_q_ident(measurement)}"
    if where:
        q += f" WHERE {where}"
    rows = query_v1(url, q, db)
    return int(sum(int(r.get("count") or 0) for r in rows))


def write_v1(
    url: str,
    db: str,
    lines: str | Iterable[str],
    *,
    precision: str = "ns",
    timeout: float = 60.0,
) -> None:
    """Write line protocol to InfluxDB 1.x ``/write?db=&precision=``; raises on non-204."""
    body = lines if isinstance(lines, str) else "\n".join(lines)
    status, resp = http_request(
        "POST",
        url.rstrip("/") + "/write",
        params={"db": db, "precision": precision},
        data=body.encode(),
        timeout=timeout,
    )
    if status != 204:
        raise InfluxQueryError(f"write to {db}: HTTP {status}: {resp[:500]!r}")


def create_database_v1(url: str, db: str) -> None:
    query_v1(url, f"CREATE DATABASE {_q_ident(db)}")


def vm_force_flush(url: str) -> None:
    """Make samples just written to VictoriaMetrics visible to export/query."""
    status, body = http_request("GET", url.rstrip("/") + "/internal/force_flush", timeout=30)
    if status != 200:
        raise StackError(f"victoria-metrics force_flush: HTTP {status}: {body[:300]!r}")


def export_vm(
    url: str,
    match: str = '{__name__=~"ecg_anonymized_.*"}',
    *,
    start: str | None = None,
    end: str | None = None,
    flush: bool = True,
    timeout: float = 120.0,
) -> list[dict[str, Any]]:
    """Raw samples from VictoriaMetrics ``/api/v1/export``.

    ``match`` is a series selector (``{__name__="ecg_anonymized_ecg_mv", pid="..."}``). Returns
    one dict per series: ``{"metric": {"__name__": ..., tag: value}, "values": [float...],
    "timestamps": [int ms...]}`` (timestamps ascending, deduplicated per ms). ``start``/``end``
    accept what VictoriaMetrics accepts (unix seconds or RFC3339); default: all time.
    """
    if flush:
        vm_force_flush(url)
    params: list[tuple[str, str]] = [("match[]", match)]
    if start is not None:
        params.append(("start", start))
    if end is not None:
        params.append(("end", end))
    full = url.rstrip("/") + "/api/v1/export?" + urllib.parse.urlencode(params)
    status, body = http_request("GET", full, timeout=timeout)
    if status != 200:
        raise StackError(f"victoria-metrics export {match!r}: HTTP {status}: {body[:300]!r}")
    out: list[dict[str, Any]] = []
    for line in body.decode().splitlines():
        if line.strip():
            out.append(json.loads(line))
    out.sort(key=lambda s: sorted(s["metric"].items()))
    return out


def count_points_vm(url: str, measurement: str, field: str = "ecg_mv", **labels: str) -> int:
    """Samples of ``{measurement}_{field}`` (optionally filtered by exact label values)."""
    sel = [f'__name__="{measurement}_{field}"']
    sel += [f'{k}="{_prom_escape(v)}"' for k, v in sorted(labels.items())]
    return sum(len(s["values"]) for s in export_vm(url, "{" + ",".join(sel) + "}"))


def _prom_escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
