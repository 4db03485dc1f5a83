"""Smoke variant of `python -m benchmarks.throughput`: seconds of data, every run (job -> InfluxDB, job ->
discarding sink, InfluxDB ceiling, single-process consumer) must deliver exactly the reference model's
points. Speed is not checked here; the benchmark prints it."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.throughput import RUN_NAMES, main


def test_every_run_accounts_for_every_point(tmp_path: Path) -> None:
    results_path = tmp_path / "results.json"
    assert main(["--patients", "6", "--duration", "10", "--json", str(results_path)]) == 0
    results = json.loads(results_path.read_text())
    assert [r["name"] for r in results] == list(RUN_NAMES.values())
    for result in results:
        assert result["expected"] > 0, result
        assert result["points"] == result["expected"], result
