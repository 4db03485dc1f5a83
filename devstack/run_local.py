"""Run the whole product on this machine: simulator -> Apache Kafka -> job (embedded Flink) -> InfluxDB.

    .venv/bin/python -m devstack.run_local [--patients 40] [--k-anonymity 5] [--seconds 0]

Starts the local stack (devstack.stack), the anonymization job in an embedded Flink mini
cluster with its web UI, and the ECG simulator in real time; prints where to look and a progress line
per window; Ctrl+C (or --seconds) stops everything it started, and nothing else.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from connectors.config import PROJECT_ROOT
from devstack.influx_queries import count_points_v1, query_v1
from devstack.stack import LocalStack

DEFAULT_RUN_DIR = PROJECT_ROOT / ".run" / "local"


def _stop_group(process: subprocess.Popen[bytes], name: str, timeout: float = 15.0) -> None:
    """SIGTERM the process group we started, SIGKILL after the timeout."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"{name} ignored SIGTERM for {timeout:.0f}s; killing it")
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)
    except ProcessLookupError:
        pass


def _suppression_summary(url: str, db: str) -> str:
    """Suppressed share of patient-windows so far (from `ecg_window_stats`), the utility at a glance."""
    try:
        rows = query_v1(url, 'SELECT sum("patients_suppressed"), sum("patients") FROM "ecg_window_stats"', db)
    except Exception as error:  # noqa: BLE001 - progress display only
        return f"(query failed: {error})"
    if not rows or not rows[0].get("sum_1"):
        return "-"
    return f"{100.0 * float(rows[0]['sum']) / float(rows[0]['sum_1']):.1f} % of patient-windows"


def _level_summary(url: str, db: str) -> str:
    try:
        rows = query_v1(url, 'SELECT count("ecg_mv") FROM "ecg_anonymized" GROUP BY "level"', db)
    except Exception as error:  # noqa: BLE001 - progress display only
        return f"(query failed: {error})"
    levels = {int(row["level"]): int(row["count"]) for row in rows if row.get("level")}
    return " ".join(f"L{level}:{count}" for level, count in sorted(levels.items())) or "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--sites", type=int, default=2)
    parser.add_argument("--k-anonymity", type=int, default=5)
    parser.add_argument("--window-seconds", type=int, default=5)
    parser.add_argument("--web-ui-port", type=int, default=8081)
    parser.add_argument("--seconds", type=float, default=0, help="stop after this long (0 = until Ctrl+C)")
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR, help="logs, checkpoints, service data")
    args = parser.parse_args(argv)
    run_dir = args.run_dir.resolve()

    run_dir.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    stack = LocalStack(run_dir / "stack")
    processes: list[tuple[str, subprocess.Popen[bytes]]] = []
    interrupted = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal interrupted
        interrupted = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        print("starting local stack (Apache Kafka broker, InfluxDB 1.x) ...", flush=True)
        stack.start(kafka=True, influx_v1=True, victoria_metrics=False, clean=True)
        env = dict(os.environ)
        if not env.get("PSEUDONYM_SECRET") and not (PROJECT_ROOT / ".env").exists():
            env["DEMO_MODE"] = "true"  # says so in the job log; a real deployment sets a secret
        job_log = (run_dir / "job.log").open("wb")
        job = subprocess.Popen(
            [
                python, "-m", "flink_jobs.ecg_anonymization_job",
                "--kafka-bootstrap", stack.kafka_bootstrap,
                "--influx-transport", "v1", "--influx-url", stack.influx_v1_url, "--influx-db", stack.influx_db,
                "--k-anonymity", str(args.k_anonymity), "--window-seconds", str(args.window_seconds),
                "--checkpoint-dir", str(run_dir / "checkpoints"), "--web-ui-port", str(args.web_ui_port),
            ],
            cwd=PROJECT_ROOT, env=env, stdout=job_log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        processes.append(("job", job))
        simulator_log = (run_dir / "simulator.log").open("wb")
        simulator = subprocess.Popen(
            [
                python, "-m", "devstack.simulator", "--bootstrap", stack.kafka_bootstrap,
                "--patients", str(args.patients), "--sites", str(args.sites), "--duration", "86400", "--realtime",
            ],
            cwd=PROJECT_ROOT, env=env, stdout=simulator_log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        processes.append(("simulator", simulator))
        url, db = stack.influx_v1_url, stack.influx_db
        port = url.rsplit(":", 1)[1]
        print(
            "\n".join(
                [
                    "",
                    f"  Flink web UI      http://127.0.0.1:{args.web_ui_port}  (job 'ecg-anonymization')",
                    f"  Kafka bootstrap   {stack.kafka_bootstrap}  topics ecg-raw, ecg-dlq",
                    f"  InfluxDB 1.x      {url}  database {db}, measurement ecg_anonymized",
                    "  query the anonymized data:",
                    f"    influx -host 127.0.0.1 -port {port} -database {db} -execute "
                    "'SELECT * FROM ecg_anonymized ORDER BY time DESC LIMIT 10'",
                    f"    curl -s {url}/query --data-urlencode db={db} --data-urlencode "
                    "\"q=SELECT count(ecg_mv) FROM ecg_anonymized GROUP BY level\"",
                    f"  logs              {run_dir}/job.log, simulator.log, stack/",
                    "  Ctrl+C stops everything started here.",
                    "",
                ]
            ),
            flush=True,
        )
        started = time.monotonic()
        while not interrupted:
            time.sleep(1.0)
            for name, process in processes:
                if process.poll() is not None:
                    print(f"{name} exited with code {process.returncode}; see {run_dir}/{name}.log")
                    return 1
            elapsed = time.monotonic() - started
            if int(elapsed) % args.window_seconds == 0:
                try:
                    points = count_points_v1(url, db, "ecg_anonymized")
                except Exception:  # noqa: BLE001 - the database may not exist before the first write
                    points = 0
                print(f"[{elapsed:6.0f}s] points in InfluxDB: {points:>9}  by level: {_level_summary(url, db)}"
                      f"  suppressed: {_suppression_summary(url, db)}",
                      flush=True)
            if args.seconds and elapsed >= args.seconds:
                break
        return 0
    finally:
        print("stopping ...", flush=True)
        for name, process in reversed(processes):
            _stop_group(process, name)
        stack.stop()
        print("stopped: simulator, job and local stack", flush=True)


if __name__ == "__main__":
    sys.exit(main())
