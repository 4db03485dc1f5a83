"""replay.merge.merge against the real influxd of the local stack: a window whose classes move (one vanishes, one
loses a member, a suppressed token changes) ends exactly as its rebuilt version, a second merge sends nothing."""

from __future__ import annotations

import uuid
from typing import Any

from connectors.influxdb import point_line
from devstack.influx_queries import create_database_v1
from replay.merge import InfluxQL, merge

M, STATS = "ecg_anonymized", "ecg_window_stats"
W = 5_000_000_000
T0 = 1_763_812_800_000_000_000


def tags(pid: str, level: str, age: str, sex: str = "*", zip_code: str = "*") -> dict[str, str]:
    return {"pid": pid, "lead": "II", "level": level, "age": age, "sex": sex, "zip": zip_code}


def lines(series: list[dict[str, str]], window: int, hr: float = 70.0) -> list[str]:
    return [point_line(M, t, {"ecg_mv": 0.5 * i, "hr_bpm": hr, "imputed": t["level"] == "9"}, T0 + window * W + i)
            for t in series for i in range(3)]


def dump(db: InfluxQL) -> dict[Any, Any]:
    types = db.field_types(M)
    return {(s, t): v for s, by_time in db.points(M, 0, 2**62, types).items() for t, v in by_time.items()}


def test_merge_on_influxd(local_stack: Any) -> None:
    url = local_stack.influx_v1_url
    live_db, staging_db = "l_" + uuid.uuid4().hex[:8], "s_" + uuid.uuid4().hex[:8]
    for name in (live_db, staging_db):
        create_database_v1(url, name)
    live, staging = InfluxQL(url, live_db), InfluxQL(url, staging_db)
    k = 3
    old = ([tags(f"a{i}", "3", "50-59", "F", "10***") for i in range(k)]           # vanishes: all move to level 8
           + [tags(f"b{i}", "5", "40-59") for i in range(k + 1)] + [tags("tok1", "9", "*")])
    new = ([tags(f"a{i}", "8", "*") for i in range(k)] + [tags(f"b{i}", "5", "40-59") for i in range(k)]
           + [tags("tok2", "9", "*")])
    untouched = [tags(f"c{i}", "8", "*") for i in range(k)]  # the next window, the same in both
    live.writer.write_lines(lines(old, 0) + lines(untouched, 1))
    staging.writer.write_lines(lines(new, 0) + lines(untouched, 1, hr=70.0))
    stats = point_line(STATS, {"group": "g1"}, {"patients": 7, "ncp": 0.5}, T0)
    staging.writer.write_lines([stats])
    assert dump(live) != dump(staging)

    report = merge(live, staging, M, STATS, T0, T0 + 3 * W, W, k=k, max_points=4)
    assert dump(live) == dump(staging)
    assert (report.windows_compared, report.windows_changed, report.classes_deleted) == (2, 1, 1)
    assert report.series_deleted == 2  # b3 (its class stays) and the old token
    assert live.query(f'SELECT "patients" FROM "{STATS}"')[0]["patients"] == 7
    again = merge(live, staging, M, STATS, T0, T0 + 3 * W, W, k=k, max_points=4)
    assert (again.windows_changed, again.write_requests, again.statements) == (0, 0, 0)
