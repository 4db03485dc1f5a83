"""Submit the anonymization job to a Flink session cluster once (the `submitter` service of docker-compose.yml).

    python docker/submit_job.py [--jobmanager HOST:PORT] [--flink /opt/flink/bin/flink] [--resume auto|never]

1. Settings come from the environment (and `.env`), validated by `connectors.config` before anything is
   submitted; the job reads them the same way. Secrets travel only in this process's environment: never on
   the command line (the web UI shows program arguments) nor in the Flink configuration.
2. A job named JOB_NAME that is not finished, failed or canceled means there is nothing to do (re-running
   `docker-compose up -d` never starts a second job).
3. Waits until the cluster offers PARALLELISM free slots (`docker-compose up --scale taskmanager=N` adds them).
4. Restores from FROM_CHECKPOINT (`latest` or a `chk-N` path) or, with `--resume auto`, from the newest
   completed checkpoint under CHECKPOINT_DIR if there is one: `flink run -d -s CHECKPOINT -py ...`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors.checkpoints import latest_checkpoint, resolve_recovery_path
from connectors.config import PROJECT_ROOT, ConfigError, load_settings

TERMINAL_STATES = ("FINISHED", "FAILED", "CANCELED")
JOB_FILE = PROJECT_ROOT / "flink_jobs" / "ecg_anonymization_job.py"
# CARDIO_BRANCH=true: the branch runs as its own job next to it (its backpressure cannot reach the
# anonymized output), restored from the newest checkpoint under CHECKPOINT_DIR/cardio.
CARDIO_JOB_FILE = PROJECT_ROOT / "flink_jobs" / "cardio_job.py"


def rest_get(jobmanager: str, path: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(f"http://{jobmanager}{path}", timeout=timeout) as response:
        return json.loads(response.read())


def wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = condition()
            if last:
                return last
        except (OSError, ValueError) as error:  # REST not up yet
            last = error
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} (after {timeout:.0f} s; last: {last})")
        time.sleep(2)


def active_jobs(jobmanager: str, job_name: str) -> list[dict[str, Any]]:
    jobs = rest_get(jobmanager, "/jobs/overview").get("jobs", [])
    return [job for job in jobs if job.get("name") == job_name and job.get("state") not in TERMINAL_STATES]


def build_command(flink: str, jobmanager: str, job_file: Path, checkpoint: Path | None) -> list[str]:
    command = [flink, "run", "-d", "-m", jobmanager]
    if checkpoint is not None:
        command += ["-s", str(checkpoint)]
    return [*command, "-py", str(job_file)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="submit_job.py", description=__doc__.split("\n")[0])
    parser.add_argument("--jobmanager", default="jobmanager:8081", help="REST address of the JobManager")
    parser.add_argument("--flink", default=str(Path(os.environ.get("FLINK_HOME", "/opt/flink")) / "bin" / "flink"))
    parser.add_argument("--resume", choices=("auto", "never"), default="never",
                        help="auto: restore from the newest retained checkpoint when there is one")
    parser.add_argument("--wait-seconds", type=float, default=300.0)
    args = parser.parse_args(argv)
    try:
        settings = load_settings([])
    except ConfigError as error:
        print(f"submitter: configuration error: {error}", file=sys.stderr)
        return 2
    try:
        wait_for(lambda: rest_get(args.jobmanager, "/overview"), args.wait_seconds, "JobManager REST API")
        running = active_jobs(args.jobmanager, settings.job_name)
        if running:
            print(f"submitter: job '{settings.job_name}' is already {running[0]['state']} ({running[0]['jid']}); "
                  "nothing to submit")
            return 0
        wait_for(lambda: rest_get(args.jobmanager, "/overview")["slots-available"] >= settings.parallelism,
                 args.wait_seconds, f"{settings.parallelism} free task slots (scale the taskmanager service)")
        checkpoint_root = settings.path("checkpoint_dir")
        if settings.from_checkpoint:
            checkpoint = resolve_recovery_path(settings.from_checkpoint, checkpoint_root)
        else:
            checkpoint = latest_checkpoint(checkpoint_root) if args.resume == "auto" else None
    except (TimeoutError, FileNotFoundError) as error:
        print(f"submitter: {error}", file=sys.stderr)
        return 1
    environment = dict(os.environ)
    environment["FROM_CHECKPOINT"] = ""  # the restore path is `-s` below, once
    command = build_command(args.flink, args.jobmanager, JOB_FILE, checkpoint)
    print(f"submitter: {' '.join(command)}  (parallelism {settings.parallelism}, "
          f"{'restoring ' + str(checkpoint) if checkpoint else 'no checkpoint to restore'})", flush=True)
    code = subprocess.call(command, env=environment, cwd=str(PROJECT_ROOT))
    if code != 0 or not settings.cardio_branch:
        return code
    return submit_cardio_job(args.flink, args.jobmanager, settings, environment, args.resume == "auto")


def submit_cardio_job(flink: str, jobmanager: str, settings: Any, environment: dict[str, str],
                      resume: bool) -> int:
    name = settings.job_name + "-cardio"
    if active_jobs(jobmanager, name):
        print(f"submitter: job '{name}' is already running; nothing to submit")
        return 0
    cardio_root = settings.path("checkpoint_dir") / "cardio"
    checkpoint = latest_checkpoint(cardio_root) if (resume or settings.from_checkpoint) else None
    command = build_command(flink, jobmanager, CARDIO_JOB_FILE, checkpoint)
    print(f"submitter: {' '.join(command)}  ({'restoring ' + str(checkpoint) if checkpoint else 'fresh'})",
          flush=True)
    return subprocess.call(command, env=environment, cwd=str(PROJECT_ROOT))


if __name__ == "__main__":
    sys.exit(main())
