"""Every query of the Grafana dashboards runs against the local influxd (InfluxQL, as Grafana sends it) with
data from a real job run, and returns rows.

The dashboard JSON is the only copy of the queries: they are read from it here. Every panel must return rows
(a broken copy of a query is shown to come back empty). The job writes the cardio branch's per-patient statistics
to a database of their own, as the compose stack does (INFLUX_BRANCH_BUCKET): the provisioned dashboard gets all
its rows from the anonymized database alone (Grafana's token reads nothing else), the optional cardio-branch
dashboard from the branch database.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from connectors.config import PROJECT_ROOT
from devstack import deployment_checks as checks
from devstack.influx_queries import create_database_v1, query_v1
from devstack.simulator import SimConfig, end_of_stream_messages, generate_messages, produce
from testkit.jobs import JobProcess, wait_until
from testkit.reference import expected_output
from tests.integration.support import IsolatedRun

DASHBOARD = PROJECT_ROOT / "docker" / "grafana" / "dashboards" / "ecg-anonymization.json"
BRANCH_DASHBOARD = PROJECT_ROOT / "docker" / "grafana" / "optional" / "ecg-cardio-branch.json"
START_MS = 1_763_812_800_000
K = 5

LATE_FRAMES = 4


def late_frames_counted(url: str, db: str) -> int:
    rows = query_v1(url, 'SELECT sum("count") FROM "ecg_dead_letters" WHERE "reason" = \'late\'', db)
    return int(rows[0]["sum"]) if rows else 0


def panels_without_rows(dashboard: dict, url: str, db: str, start_ms: int, end_ms: int) -> dict[str, str]:
    """title -> rendered query of every dashboard query (variables first) that returns no row."""
    queries = checks.dashboard_queries(dashboard)
    variables: dict[str, str] = {}
    empty: dict[str, str] = {}
    for query in sorted(queries, key=lambda q: not str(q.panel_id).startswith("var:")):
        rendered = checks.render_query(query.query, start_ms=start_ms, end_ms=end_ms, interval="1s",
                                       variables=variables)
        rows = query_v1(url, rendered, db)
        if str(query.panel_id).startswith("var:") and rows:
            variables[str(query.panel_id)[4:]] = str(rows[0]["value"])  # Grafana's default: the first value
        if not rows:
            empty[query.title] = rendered
    return empty


def test_every_dashboard_query_returns_rows(isolated_run: IsolatedRun, tmp_path: Path) -> None:
    run, stack = isolated_run, isolated_run.stack
    data = list(generate_messages(SimConfig(patients=16, duration_s=30, start_ms=START_MS, sites=2,
                                            bad_fraction=0.05, seed=5)))
    # Frames of the first window again, once event time has passed it: late, dead-lettered, counted in the
    # window event time is in when they arrive (closed by the end-of-stream marker that follows).
    late = [m for m in data if m.kind == "frame"][:LATE_FRAMES]
    messages = data + end_of_stream_messages(4)
    expected = expected_output(messages, k=K)
    assert 9 in expected.points_by_level and len(expected.points_by_level) >= 2, expected.points_by_level
    assert produce(data, stack.kafka_bootstrap, run.raw_topic).errors == 0

    branch_db = run.db + "_branch"
    create_database_v1(stack.influx_v1_url, branch_db)
    job = JobProcess(run.job_args("--k-anonymity", str(K), "--influx-branch-bucket", branch_db), tmp_path / "job.log")
    try:
        wait_until(lambda: run.points() > 0, 240, "first points", job=job)
        assert produce(late + end_of_stream_messages(4), stack.kafka_bootstrap, run.raw_topic).errors == 0
        wait_until(lambda: run.points() >= expected.points, 240, f"{expected.points} points", job=job)
        wait_until(lambda: late_frames_counted(stack.influx_v1_url, run.db) == LATE_FRAMES, 60,
                   "late frames in ecg_dead_letters", job=job)
        # The cardio branch is a job of its own (started by this one): its statistics come on its own time.
        for measurement in ("ecg_anomaly_stats", "ecg_model_stats"):
            wait_until(lambda m=measurement: query_v1(stack.influx_v1_url, f'SELECT count(*) FROM "{m}"', branch_db),
                       120, f"the cardio job's {measurement}", job=job)
        time.sleep(3)
    finally:
        job.stop()
    assert run.points() == expected.points

    dashboard = checks.load_dashboard(DASHBOARD)
    start_ms, end_ms = START_MS - 60_000, START_MS + 90_000
    empty = panels_without_rows(dashboard, stack.influx_v1_url, run.db, start_ms, end_ms)
    assert empty == {}, f"panels without rows:\n{json.dumps(empty, indent=2)}"
    branch = checks.load_dashboard(BRANCH_DASHBOARD)
    empty = panels_without_rows(branch, stack.influx_v1_url, branch_db, start_ms, end_ms)
    assert empty == {}, f"cardio-branch panels without rows:\n{json.dumps(empty, indent=2)}"
    assert set(panels_without_rows(branch, stack.influx_v1_url, run.db, start_ms, end_ms)) == {
        "Anomalies", "Model rounds"}, "control: the branch's statistics are not in the anonymized database"

    # The same check on a broken copy: a misspelt field makes its panel come back empty.
    broken = json.loads(json.dumps(dashboard))
    panel = next(p for p in broken["panels"] if p.get("title") == "Generalization level distribution")
    panel["targets"][0]["query"] = panel["targets"][0]["query"].replace('"ecg_mv"', '"ecg_mV"')
    assert "Generalization level distribution" in panels_without_rows(broken, stack.influx_v1_url, run.db,
                                                                      start_ms, end_ms)
