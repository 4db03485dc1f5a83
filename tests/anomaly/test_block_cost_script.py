"""`python -m benchmarks.block_cost` (the figure docs/benchmarks.md quotes for CARDIO_BLOCK_SECONDS) runs and prints a
row per block length with the same outputs (the branch's outputs do not change with the block length here)."""

from __future__ import annotations

import subprocess
import sys

from connectors.config import PROJECT_ROOT


def test_prints_the_cost_per_frame_of_each_block_length() -> None:
    out = subprocess.run([sys.executable, "-m", "benchmarks.block_cost", "--devices", "3", "--seconds", "120",
                          "--blocks", "1,5", "--repeat", "1"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                         check=True, timeout=300).stdout.splitlines()
    rows = [line.split() for line in out[2:]]
    assert [row[0] for row in rows] == ["1", "5"]
    assert all(float(row[1]) > 0 for row in rows)
    assert rows[0][2:] == rows[1][2:]  # anomalies, local updates
