"""Command line of the local stack (devstack.stack.LocalStack): Apache Kafka + influxd 1.x + victoria-metrics.

    python -m devstack.local_stack start [--detach] [--clean] | stop | status
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from devstack.stack import DEFAULT_INFLUX_DB, DEFAULT_RUN_DIR, STATE_FILE, LocalStack, StackError


def _status(run_dir: Path) -> int:
    stack = LocalStack.attach(run_dir)
    state_path = run_dir / STATE_FILE
    if not stack._services:
        print(f"local stack: not running ({run_dir})")
        return 1
    for name, rec in stack.records().items():
        print(f"{name:17s} pid {rec.pid:<7d} log {rec.log}")
    if state_path.exists():
        print(state_path.read_text().rstrip())
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m devstack.local_stack",
        description="Local Apache Kafka + influxd 1.x + victoria-metrics on 127.0.0.1.",
    )
    ap.add_argument("command", choices=("start", "stop", "status"))
    ap.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    ap.add_argument("--detach", action="store_true", help="start: return once ready, keep running")
    ap.add_argument("--clean", action="store_true", help="start: delete old kafka/influxd/vm data first")
    ap.add_argument("--no-kafka", action="store_true")
    ap.add_argument("--no-influx", action="store_true")
    ap.add_argument("--no-vm", action="store_true")
    ap.add_argument("--kafka-port", type=int, default=0)
    ap.add_argument("--influx-port", type=int, default=0)
    ap.add_argument("--vm-port", type=int, default=0)
    ap.add_argument("--influx-db", default=DEFAULT_INFLUX_DB)
    ns = ap.parse_args(argv)
    run_dir = ns.run_dir.resolve()

    if ns.command == "status":
        return _status(run_dir)
    if ns.command == "stop":
        stack = LocalStack.attach(run_dir)
        names = list(stack.records())
        stack.stop()
        print(f"stopped: {', '.join(names) if names else 'nothing was running'}")
        return 0

    ports = {k: v for k, v in (("kafka", ns.kafka_port), ("influx_http", ns.influx_port), ("vm", ns.vm_port)) if v}
    stack = LocalStack(run_dir, influx_db=ns.influx_db, ports=ports, detach=ns.detach)
    try:
        stack.start(
            kafka=not ns.no_kafka,
            influx_v1=not ns.no_influx,
            victoria_metrics=not ns.no_vm,
            clean=ns.clean,
        )
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(stack.endpoints(), indent=2))
    print(f"state: {run_dir / STATE_FILE}")
    if ns.detach:
        print("detached; stop with: python -m devstack.local_stack stop")
        return 0

    stop_requested = False

    def _on_signal(signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    print("running; Ctrl+C to stop")
    rc = 0
    try:
        while not stop_requested:
            dead = [n for n, s in stack._services.items() if s.popen is not None and s.popen.poll() is not None]
            if dead:
                print(f"error: {', '.join(dead)} exited; see logs in {run_dir}", file=sys.stderr)
                rc = 1
                break
            time.sleep(0.5)
    finally:
        stack.stop()
        print("stopped")
    return rc


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
