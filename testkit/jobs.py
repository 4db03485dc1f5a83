"""The job under test, run for real: `JobProcess` is `python -m flink_jobs.ecg_anonymization_job` in its own
process group (embedded Flink mini cluster), so `kill_hard()` is a real kill -9 of JVM and Python workers;
`job_args` points it at the local stack."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from connectors.config import PROJECT_ROOT

TEST_SECRET = "integration-test-secret-0123456789abcdef"



class JobProcess:
    """The anonymization job in an embedded mini cluster, in its own process group."""

    def __init__(self, args: Sequence[str], log_path: Path, env: dict[str, str] | None = None,
                 module: str = "flink_jobs.ecg_anonymization_job", cwd: Path = PROJECT_ROOT) -> None:
        self.log_path = log_path
        environment = dict(os.environ if env is None else env)
        environment.setdefault("PSEUDONYM_SECRET", TEST_SECRET)
        # Flink (and Python worker) logs of this job only, for window lines and leak scans.
        self.flink_log_dir = log_path.parent / f"{log_path.stem}-flink"
        environment["FLINK_LOG_DIR"] = str(self.flink_log_dir)
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=cwd,
            env=environment,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill_hard(self) -> None:
        """kill -9 of the whole job: client, Flink JVM and Python workers."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        self._log.close()

    def stop(self) -> None:
        if self.alive():
            self.kill_hard()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def flink_log_text(self) -> str:
        return "".join(path.read_text(errors="replace") for path in sorted(self.flink_log_dir.glob("*.log*")))

    def window_log(self) -> list[tuple[str, int, int]]:
        """(group, window start, per-key window number) of every window this job anonymized."""
        return [
            (match[1], int(match[2]), int(match[3]))
            for match in re.finditer(r"window (\S+) \[(\d+), \d+\) #(\d+) ", self.flink_log_text())
        ]



def job_args(stack: Any, checkpoint_dir: Path, *extra: str) -> list[str]:
    return [
        "--kafka-bootstrap", stack.kafka_bootstrap,
        "--influx-transport", "v1", "--influx-url", stack.influx_v1_url, "--influx-db", stack.influx_db,
        "--checkpoint-dir", str(checkpoint_dir), "--checkpoint-interval-seconds", "2",
        "--restart-attempts", "2",
        *extra,
    ]  # fmt: skip



def branch_args(anomaly_topic: str, model_topic: str) -> list[str]:
    """Flags of the cardio branch for a run with its own (fresh) anomaly and model topics."""
    if not anomaly_topic:
        return []
    return ["--kafka-anomaly-topic", anomaly_topic, "--kafka-model-topic", model_topic]



def wait_until(condition: Callable[[], Any], timeout: float, what: str, *, poll: float = 1.0,
               job: JobProcess | None = None) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        if job is not None and not job.alive():
            raise AssertionError(f"job exited ({job.process.returncode}) while waiting for {what}:\n"
                                 + job.log_text()[-3000:])
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")

