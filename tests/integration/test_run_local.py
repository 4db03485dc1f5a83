"""README's run command, as a new user runs it: everything starts, anonymized points arrive in InfluxDB,
the web UI lists the job RUNNING, and Ctrl+C stops everything it started (no process left behind)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from connectors.config import PROJECT_ROOT
from devstack.flink_cluster import _descendants
from devstack.processes import free_port


def test_run_local_shows_points_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    output = tmp_path / "run_local.out"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack.run_local", "--patients", "20", "--web-ui-port", str(port),
             "--run-dir", str(tmp_path / "run")],
            cwd=PROJECT_ROOT, stdout=sink, stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if k != "PSEUDONYM_SECRET"},
        )
    started = time.monotonic()
    seen: set[int] = set()
    first_points_at = None
    job_state = None
    try:
        while time.monotonic() - started < 150 and first_points_at is None:
            time.sleep(1)
            assert process.poll() is None, output.read_text()
            seen.update(_descendants(process.pid))
            counts = [int(n) for n in re.findall(r"points in InfluxDB:\s+(\d+)", output.read_text())]
            if counts and counts[-1] > 0:
                first_points_at = time.monotonic() - started
        assert first_points_at is not None, output.read_text()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/jobs/overview", timeout=10) as response:
            job_state = {job["name"]: job["state"] for job in json.loads(response.read())["jobs"]}
        seen.update(_descendants(process.pid))
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl+C
        code = process.wait(timeout=90)
    text = output.read_text()
    print(f"first points after {first_points_at:.0f} s (job start included)")
    assert job_state == {"ecg-anonymization": "RUNNING"}
    assert code == 0, text
    assert "DEMO_MODE" in (tmp_path / "run" / "job.log").read_text()  # no secret configured: says so
    assert "stopped: simulator, job and local stack" in text
    assert len(seen) >= 4  # broker, InfluxDB, job (JVM + Python worker), simulator
    left = [pid for pid in seen if Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)]
    assert left == [], f"processes left behind: {left}"


def _state(pid: int) -> str:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "Z"
    return text[text.rindex(")") + 2]
