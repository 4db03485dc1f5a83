"""Smoke variant of `python -m benchmarks.throughput` (run as a program): seconds of raw-ECG data
(frames without hr_bpm, the default input), every run (job with its cardio branch -> InfluxDB and ->
discarding sink, the job with the branch off, the branch's job alone, PyFlink window count, InfluxDB
ceiling, single-process consumer, the job on a standalone cluster, the ceiling again with one gzip writer,
and one paced run with devices streaming in real time) must deliver exactly the reference model's points
(the branch alone: every valid frame into its detector), and the Flink runs report their checkpoints.
Speed and latency are not checked here; the benchmark prints them."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from connectors.config import PROJECT_ROOT


def run_names() -> dict[str, str]:
    """benchmarks.throughput.RUN_NAMES, read from its source: tests run benchmarks as programs, never import them."""
    tree = ast.parse((PROJECT_ROOT / "benchmarks" / "throughput.py").read_text(encoding="utf-8"))
    [names] = [node.value for node in tree.body if isinstance(node, ast.Assign)
               and [target.id for target in node.targets if isinstance(target, ast.Name)] == ["RUN_NAMES"]]
    return dict(ast.literal_eval(names))


def test_every_run_accounts_for_every_point(tmp_path: Path) -> None:
    results_path = tmp_path / "results.json"
    names = run_names()
    # --max-rate: the paced run does not depend on how fast run (a) happened to be; 50 % = 6 devices.
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.throughput", "--patients", "6", "--duration", "10",
         "--json", str(results_path), "--variant", "d:1 writer, gzip=--writers 1 --gzip 1",
         "--latency", "--latency-loads", "50", "--latency-seconds", "15", "--max-rate", "3000"],
        cwd=PROJECT_ROOT, check=False)
    assert completed.returncode == 0
    results = json.loads(results_path.read_text())
    assert [r["name"] for r in results["runs"]] == [*names.values(), names["d"] + " [1 writer, gzip]"]
    frames = 6 * 10
    by_name = {result["name"]: result for result in results["runs"]}
    assert by_name[names["b''"]]["expected"] == frames and by_name[names["c"]]["expected"] == frames
    for result in results["runs"]:
        assert result["expected"] > 0, result
        assert result["points"] == result["expected"], result
        if result["name"] in (names["a"], names["b"], names["b'"], names["b''"], names["c"], names["f"]):
            assert result["checkpoints"]["completed"] >= 1, result
            assert result["checkpoints"]["max_state_mb"] > 0, result
    [paced] = results["paced"]
    assert paced["devices"] == 6, paced
    assert paced["expected"] == 6 * 15 * 250 and paced["points"] == paced["expected"], paced
    assert paced["latency"]["windows"] >= 1 and paced["latency"]["missing"] == 0, paced
    assert paced["rss_mb"] and paced["checkpoints"]["completed"] >= 1, paced
    jvm_and_total = zip(paced["jvm_rss_mb"], paced["rss_mb"], strict=True)
    assert all(0 < jvm <= total for (_, jvm), (_, total) in jvm_and_total), paced
    assert paced["first_point_p50_s"] <= paced["latency"]["p50"], paced
