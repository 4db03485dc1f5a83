"""The privacy checks on what InfluxDB holds, after a real run with a churning population.

Three wards of 20 patients from the realistic population, each patient present for 40-100 % of two
minutes (some wards start late or stop early), k = 5. On the points in InfluxDB:

- the auditor: grouped by the window of their timestamps and by class (level + labels), every group
  of published points (levels 1..8) holds >= k distinct pseudonyms;
- the cross-window attacker, after every window: for every patient whose pseudonym was published with
  a label, at least k pseudonyms have only labels that contain the patient's true quasi-identifiers;
- the points are exactly the reference model's.

`slow` (issue 21 item 5): the same workload and assertions run on the job's operators in a mini cluster, on the
published frames instead of InfluxDB's points, in ~12 s instead of ~100 s: tests/flink_jobs/
test_pipeline_on_collections.py::test_auditor_and_cross_window_attacker_on_the_output. The default run keeps
the InfluxDB side: test_job_end_to_end.py (points, levels and tags in InfluxDB) and
test_readers_never_see_below_k.py (what readers see during InfluxDB faults).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from devstack.influx_queries import query_v1
from devstack.simulator import SimConfig, generate_messages, produce
from hierarchy.loader import load_hierarchy
from testkit.jobs import TEST_SECRET, JobProcess, wait_until
from testkit.privacy_audit import cross_window_attack_prefixes, true_quasi_identifiers
from testkit.reference import expected_output
from tests.integration.support import IsolatedRun, visible_classes_below_k

START_MS = 1_763_812_800_000
K = 5
WINDOW_MS = 5000


def published_labels(url: str, db: str) -> list[tuple[str, int, int, dict[str, str]]]:
    """(pid, window start, level, labels) of every published (pid, window, class) in InfluxDB."""
    rows = query_v1(url, 'SELECT count("ecg_mv") FROM "ecg_anonymized" WHERE "level" != \'9\' AND time > 0 '
                         'GROUP BY time(5s), "pid", "level", "age", "sex", "zip" fill(none)', db)
    return [(row["pid"], int(row["time"]) // 1_000_000, int(row["level"]),
             {"age": row["age"], "sex": row["sex"], "zip": row["zip"]}) for row in rows]


@pytest.mark.slow
def test_auditor_and_cross_window_attacker_on_the_output(isolated_run: IsolatedRun, tmp_path: Path) -> None:
    run = isolated_run
    messages = list(generate_messages(SimConfig(patients=60, duration_s=120, start_ms=START_MS, sites=3, churn=True,
                                                end_of_stream=True, partitions=4, seed=41)))
    expected = expected_output(messages, k=K)
    assert produce(messages, run.stack.kafka_bootstrap, run.raw_topic).errors == 0
    true_qi = true_quasi_identifiers(messages, TEST_SECRET)
    assert len(true_qi) == 60

    job = JobProcess(run.job_args("--k-anonymity", str(K)), tmp_path / "job.log")
    try:
        wait_until(lambda: run.points() >= expected.points, 240, f"{expected.points} points", job=job)
        time.sleep(4)
    finally:
        job.stop()
    assert run.points() == expected.points
    assert run.points_by_level() == expected.points_by_level

    assert visible_classes_below_k(run.stack.influx_v1_url, run.db, K) == []
    points = published_labels(run.stack.influx_v1_url, run.db)
    assert {pid for pid, *_ in points} == set(true_qi), "every patient published with a label"
    worst, below = cross_window_attack_prefixes(load_hierarchy(), points, true_qi, K, WINDOW_MS)
    print(f"\ncross-window attacker: min candidates {worst} over {len(true_qi)} patients, after every window")
    assert below == [] and worst >= K
