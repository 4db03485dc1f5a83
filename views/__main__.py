"""CLI of the views: ``python -m views create NAME --profile FILE | --k N ... / list / stop / resume / delete``.

The stack settings every view shares (KAFKA_BOOTSTRAP, KAFKA_INPUT_TOPIC, KAFKA_DLQ_TOPIC, INFLUX_TRANSPORT,
INFLUX_URL, PARALLELISM, ...) come from ``--set KEY=VALUE``, else the environment, else ``.env`` (the job's own
names); the secret ones (PSEUDONYM_SECRET, ...) from the environment or ``.env`` only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from dotenv import dotenv_values

from connectors.config import PROJECT_ROOT, SETTINGS
from views.flink_rest import FlinkRestError
from views.manager import SECRET_SETTINGS, VIEW_SETTINGS, Outputs, Profile, ViewError, ViewManager

# Stack settings taken from the environment / .env when set there (the rest keep the job's defaults).
STACK_SETTINGS = tuple(s.env for s in SETTINGS if s.env not in VIEW_SETTINGS | SECRET_SETTINGS)


def _settings(ns: argparse.Namespace) -> tuple[dict[str, str], dict[str, str]]:
    env_file = Path(ns.env_file) if ns.env_file else PROJECT_ROOT / ".env"
    file_values = {k: v for k, v in dotenv_values(env_file).items() if v is not None} if env_file.exists() else {}
    merged = {**file_values, **{k: v for k, v in os.environ.items() if k in {s.env for s in SETTINGS}}}
    stack = {k: merged[k] for k in STACK_SETTINGS if k in merged}
    for item in ns.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ViewError(f"--set {item!r}: expected KEY=VALUE")
        stack[key.strip().upper()] = value
    secrets = {k: merged[k] for k in SECRET_SETTINGS if merged.get(k)}
    return stack, secrets


def _profile(ns: argparse.Namespace) -> Profile:
    data: dict[str, object] = {}
    if ns.profile:
        data.update(json.loads(Path(ns.profile).read_text()) if Path(ns.profile).exists() else {})
        if not Path(ns.profile).exists():
            raise ViewError(f"--profile {ns.profile}: no such file")
    for key in ("k", "l", "sensitive_attribute", "hierarchy", "window_seconds", "group_field",
                "max_records_per_second"):
        value = getattr(ns, key)
        if value is not None:
            data[key] = value
    return Profile.from_dict(data, ns.profile or "command line")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m views", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rest-url", default=os.environ.get("FLINK_REST_URL", "http://127.0.0.1:8081"),
                        help="Flink REST endpoint [env FLINK_REST_URL, default http://127.0.0.1:8081]")
    parser.add_argument("--registry", type=Path, default=Path(os.environ.get("VIEWS_DIR", PROJECT_ROOT / ".run/views")),
                        help="registry folder (views.json, checkpoints, savepoints) [env VIEWS_DIR]")
    parser.add_argument("--env-file", default=None, help="dotenv file (default .env in the project root)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="a stack setting for the job")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create a view: its database, its job; record it")
    create.add_argument("name")
    create.add_argument("--profile", help="JSON file: k, l, sensitive_attribute, hierarchy, window_seconds, "
                                          "group_field, max_records_per_second (flags override)")
    create.add_argument("--k", type=int)
    create.add_argument("--l", type=int)
    create.add_argument("--sensitive-attribute")
    create.add_argument("--hierarchy")
    create.add_argument("--window-seconds", type=int)
    create.add_argument("--group-field")
    create.add_argument("--max-records-per-second", type=float, help="throttle of the whole job (0: none)")
    create.add_argument("--influx-db", help="InfluxDB 1.x database of the view (default: view_NAME)")
    create.add_argument("--measurement", default="ecg_anonymized")
    create.add_argument("--csv-dir", default="")
    create.add_argument("--http-url", default="", help="publish to this endpoint instead of InfluxDB")
    create.add_argument("--dlq-topic", default="", help="the view's own dead-letter topic (default: the stack's)")
    sub.add_parser("list", help="every view: job state, last checkpoint, points written, input lag")
    stop = sub.add_parser("stop", help="stop the view's job with a savepoint")
    stop.add_argument("name")
    resume = sub.add_parser("resume", help="resume from the last savepoint, else the latest retained checkpoint")
    resume.add_argument("name")
    resume.add_argument("--max-records-per-second", type=float, help="new throttle (0: none)")
    delete = sub.add_parser("delete", help="stop with a final savepoint, forget the view")
    delete.add_argument("name")
    delete.add_argument("--drop-output", action="store_true", help="also drop its database / CSV folder")
    ns = parser.parse_args(argv)
    try:
        stack, secrets = _settings(ns)
        manager = ViewManager(ns.registry, ns.rest_url, stack, secrets)
        if ns.command == "create":
            outputs = Outputs(influx_db="" if ns.http_url else (ns.influx_db or "view_" + ns.name.replace("-", "_")),
                              measurement=ns.measurement, csv_dir=ns.csv_dir, http_url=ns.http_url,
                              dlq_topic=ns.dlq_topic)
            view = manager.create(ns.name, _profile(ns), outputs)
            print(f"view {view.name}: job {view.job_id} submitted ({view.submit_mode}), "
                  f"output {view.outputs.http_url or view.outputs.influx_db}")
        elif ns.command == "list":
            print(f"{'view':16s} {'state':10s} {'job':32s} {'points':>10s} {'input lag':>16s} "
                  f"{'lag records':>12s}  last checkpoint")
            for status in manager.list():
                lag = "-" if status.event_time_lag_ms is None else f"{status.event_time_lag_ms / 1000:.0f} s"
                if status.unread_input is not None:
                    lag += " (caught up)" if status.unread_input == 0 else " (unread)"
                records = "-" if status.input_lag_records is None else str(status.input_lag_records)
                points = "-" if status.points is None else str(status.points)
                print(f"{status.name:16s} {status.state:10s} {status.job_id:32s} {points:>10s} {lag:>16s} "
                      f"{records:>12s}  {status.last_checkpoint or '-'}")
        elif ns.command == "stop":
            print(f"view {ns.name} stopped; savepoint {manager.stop(ns.name)}")
        elif ns.command == "resume":
            view = manager.resume(ns.name, max_records_per_second=ns.max_records_per_second)
            print(f"view {view.name}: job {view.job_id} resumed from {view.restored_from}")
        else:
            savepoint = manager.delete(ns.name, drop_output=ns.drop_output)
            print(f"view {ns.name} deleted; final savepoint {savepoint or '(job was not running)'}"
                  + ("; output dropped" if ns.drop_output else ""))
    except (ViewError, FlinkRestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
