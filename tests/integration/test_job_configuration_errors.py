"""The job refuses bad configuration at start with a message naming the setting (exit code 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.config import PROJECT_ROOT


def _run(*args: str, secret: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PSEUDONYM_SECRET", "DEMO_MODE")}
    if secret:
        env["PSEUDONYM_SECRET"] = "configuration-test-secret-0123456789"
    return subprocess.run([sys.executable, "-m", "flink_jobs.ecg_anonymization_job", "--env-file", os.devnull, *args],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "secret", "message"),
    [
        ((), False, "PSEUDONYM_SECRET is required"),
        (("--k-anonymity", "0"), True, "invalid K_ANONYMITY"),
        (("--from-checkpoint", "/nonexistent/chk-1"), True, "no _metadata there"),
        (("--from-checkpoint", "latest", "--checkpoint-dir", "/nonexistent"), True, "no completed checkpoint"),
    ],
)
def test_refuses_to_start(args: tuple[str, ...], secret: bool, message: str) -> None:
    result = _run(*args, secret=secret)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_hierarchy_names_file_row_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "hierarchy.csv"
    bad.write_text("level,age\n1,band:5\n")
    result = _run("--hierarchy-path", str(bad))
    assert result.returncode == 2
    assert f"{bad}: row 2, column level" in result.stderr
