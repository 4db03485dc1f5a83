"""flink_jobs.cardio_job.yield_cpu: the branch's job lowers its own scheduling priority before its mini cluster
starts (CARDIO_NICE), so that every process it starts inherits it; 0 leaves it alone (issue 24)."""

from __future__ import annotations

import subprocess
import sys

from connectors.config import PROJECT_ROOT

PROBE = """
import os, subprocess, sys
from flink_jobs.cardio_job import yield_cpu
base = os.nice(0)
yield_cpu(int(sys.argv[1]))
child = subprocess.run(["cat", "/proc/self/stat"], capture_output=True, text=True).stdout
print(base, os.nice(0), child.rsplit(")", 1)[1].split()[16])
"""


def _niceness_before_after_and_of_a_child(niceness: int) -> list[int]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(niceness)], cwd=PROJECT_ROOT, capture_output=True,
                         text=True, check=True, timeout=120).stdout
    return [int(value) for value in out.split()]


def test_niceness_is_raised_for_the_process_and_its_children() -> None:
    base, after, child = _niceness_before_after_and_of_a_child(10)
    assert after == child == min(19, base + 10)


def test_zero_leaves_the_priority_alone() -> None:
    base, after, child = _niceness_before_after_and_of_a_child(0)
    assert base == after == child
