"""The views API: create, list, stop, resume and delete anonymized views on a running Flink cluster.

Each view is one run of flink_jobs/ecg_anonymization_job.py (cardio branch off) submitted through Flink's REST
API: ``/jars/upload`` of Flink's Python driver jar (``flink-python-*.jar`` of the pip-installed PyFlink), then
``/jars/:id/run`` with ``org.apache.flink.client.python.PythonDriver`` and ``-py <job file> <flags>``. The
driver runs the job file in a Python process on the JobManager, which builds the graph and submits it; the
job ships its own packages to the workers (flink_jobs/shipping.py). A cluster with ``web.submit.enable:
false`` answers ``GET /jars`` with 404 (an upload breaks the connection): then ``flink run -d -m HOST:PORT -py
...`` submits the same job (``submit_mode`` in the registry says which was used).

The registry (``<root>/views.json``, written under a lock, replaced atomically) holds per view its profile,
outputs, the job's flags, job id, state and last savepoint. Secrets never appear in the flags (they would show
in the web UI's job configuration): they go into ``<root>/NAME/job.env`` (mode 0600), read by the job through
``--env-file``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.checkpoints import latest_checkpoint
from connectors.config import PROJECT_ROOT, SETTINGS, ConfigError, load_settings
from views.flink_rest import TERMINAL_STATES, FlinkRest, FlinkRestError, local_path

JOB_FILE = PROJECT_ROOT / "flink_jobs" / "ecg_anonymization_job.py"
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
SECRET_SETTINGS = frozenset(setting.env for setting in SETTINGS if setting.secret)
# Settings a view derives from its name or profile: a stack setting may not override them.
VIEW_SETTINGS = frozenset({
    "JOB_NAME", "KAFKA_GROUP_ID", "KAFKA_TRANSACTIONAL_ID_PREFIX", "CHECKPOINT_DIR", "FROM_CHECKPOINT",
    "CARDIO_BRANCH", "K_ANONYMITY", "L_DIVERSITY", "SENSITIVE_ATTRIBUTE", "HIERARCHY_PATH", "WINDOW_SECONDS",
    "GROUP_FIELD", "MAX_RECORDS_PER_SECOND", "OUTPUT", "INFLUX_DB", "INFLUX_MEASUREMENT", "CSV_OUTPUT_DIR",
    "HTTP_OUTPUT_URL",
})
RUNNING_STATES = frozenset({"INITIALIZING", "CREATED", "RUNNING", "RESTARTING", "FAILING", "CANCELLING",
                            "RECONCILING", "SUSPENDED"})


class ViewError(RuntimeError):
    """A view operation was refused or failed; the message says why (nothing was started when refused)."""


@dataclass(frozen=True)
class Profile:
    """The privacy profile of a view."""

    k: int
    l: int = 0  # noqa: E741 (the l of l-diversity)
    sensitive_attribute: str = ""
    hierarchy: str = "hierarchy/ecg_hierarchy.csv"
    window_seconds: int = 5
    group_field: str = "site"
    max_records_per_second: float = 0.0  # 0 = not throttled

    @classmethod
    def from_file(cls, path: Path) -> Profile:
        """A profile from JSON: ``{"k": 5, "l": 2, "sensitive_attribute": "rhythm", ...}`` (field names above)."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ViewError(f"profile {path}: {exc}") from exc
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "profile") -> Profile:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ViewError(f"{where}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        if "k" not in data:
            raise ViewError(f"{where}: k is required")
        return cls(**data)


@dataclass(frozen=True)
class Outputs:
    """Where a view publishes: an InfluxDB 1.x database of its own (+ measurement, optional CSV folder), or an
    HTTP endpoint (``http_url``: the job's main output is then that endpoint alone)."""

    influx_db: str = ""
    measurement: str = "ecg_anonymized"
    csv_dir: str = ""
    http_url: str = ""
    dlq_topic: str = ""  # empty: the stack's KAFKA_DLQ_TOPIC (shared by the views)


@dataclass
class View:
    """A registry entry."""

    name: str
    profile: Profile
    outputs: Outputs
    settings: dict[str, str]  # the job's settings (env names), secrets excluded
    job_id: str = ""
    state: str = "running"  # running | stopped (the registry's intent; the cluster has the job's state)
    submit_mode: str = ""  # rest | flink-run
    last_savepoint: str = ""
    restored_from: str = ""
    job_ids: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> View:
        values = dict(data)
        values["profile"] = Profile(**values["profile"])
        values["outputs"] = Outputs(**values["outputs"])
        return cls(**values)


@dataclass(frozen=True)
class ViewStatus:
    name: str
    job_id: str
    state: str  # the job's state on the cluster, STOPPED (stopped with a savepoint) or UNKNOWN (cluster lost it)
    last_checkpoint: str  # path of the last completed checkpoint (REST, else the newest one on disk)
    points: int | None  # points in the view's measurement (None: not readable)
    event_time_lag_ms: float | None  # wall clock minus the job's event time (watermark), if reported
    unread_input: int | None  # 1: Kafka has records the job has not read yet; 0: caught up (if reported)
    last_savepoint: str
    input_lag_records: int | None = None  # records in Kafka after the last one read, over all readers (if reported)


def _flag(env_name: str) -> str:
    return "--" + env_name.lower().replace("_", "-")


class ViewManager:
    """Views on the cluster at ``rest_url``; registry, env files, checkpoints and savepoints under ``root``.

    ``stack``: settings shared by every view (env names -> values: KAFKA_BOOTSTRAP, KAFKA_INPUT_TOPIC,
    INFLUX_URL, PARALLELISM, ...); ``secrets``: the secret settings (PSEUDONYM_SECRET, ...), written only to
    the views' env files."""

    def __init__(self, root: Path, rest_url: str, stack: Mapping[str, str] | None = None,
                 secrets: Mapping[str, str] | None = None, *, flink_bin: Path | None = None) -> None:
        self.root = Path(root).resolve()
        self.rest = FlinkRest(rest_url)
        self.stack = dict(stack or {})
        self.secrets = {key: value for key, value in (secrets or {}).items() if value}
        self.flink_bin = flink_bin
        bad = sorted(set(self.stack) & (VIEW_SETTINGS | SECRET_SETTINGS))
        if bad:
            raise ViewError(f"stack settings {', '.join(bad)} are per view (or secrets): not allowed there")
        unknown = sorted((set(self.stack) | set(self.secrets)) - {setting.env for setting in SETTINGS})
        if unknown:
            raise ViewError(f"unknown settings: {', '.join(unknown)}")

    # ---- registry -------------------------------------------------------------------------------------

    @property
    def registry_path(self) -> Path:
        return self.root / "views.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, View]]:
        """The registry, locked for this process; written back (atomically) when the block ends without error."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            views = self._read()
            yield views
            tmp = self.registry_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"views": [v.to_json() for v in views.values()]}, indent=2) + "\n")
            os.replace(tmp, self.registry_path)

    def _read(self) -> dict[str, View]:
        if not self.registry_path.exists():
            return {}
        data = json.loads(self.registry_path.read_text())
        return {entry["name"]: View.from_json(entry) for entry in data.get("views", [])}

    def views(self) -> dict[str, View]:
        return self._read()

    def get(self, name: str) -> View:
        view = self._read().get(name)
        if view is None:
            raise ViewError(f"no view named {name!r} (views: {', '.join(sorted(self._read())) or 'none'})")
        return view

    def view_dir(self, name: str) -> Path:
        return self.root / name

    def checkpoint_dir(self, name: str) -> Path:
        return self.view_dir(name) / "checkpoints"

    def savepoint_dir(self, name: str) -> Path:
        return self.view_dir(name) / "savepoints"

    def env_file(self, name: str) -> Path:
        return self.view_dir(name) / "job.env"

    # ---- settings ---------------------------------------------------------------------------------------

    def job_settings(self, name: str, profile: Profile, outputs: Outputs) -> dict[str, str]:
        """The job's settings (env names) of a view: the stack's, then what the view derives from its name."""
        settings = dict(self.stack)
        settings.update({
            "JOB_NAME": f"view-{name}",
            "KAFKA_GROUP_ID": f"ecg-view-{name}",
            "KAFKA_TRANSACTIONAL_ID_PREFIX": f"ecg-view-{name}",
            "CHECKPOINT_DIR": str(self.checkpoint_dir(name)),
            "CARDIO_BRANCH": "false",
            "K_ANONYMITY": str(profile.k),
            "L_DIVERSITY": str(profile.l),
            "SENSITIVE_ATTRIBUTE": profile.sensitive_attribute,
            "HIERARCHY_PATH": str(Path(profile.hierarchy) if Path(profile.hierarchy).is_absolute()
                                  else PROJECT_ROOT / profile.hierarchy),
            "WINDOW_SECONDS": str(profile.window_seconds),
            "GROUP_FIELD": profile.group_field,
            "INFLUX_MEASUREMENT": outputs.measurement,
        })
        if profile.max_records_per_second:
            settings["MAX_RECORDS_PER_SECOND"] = str(profile.max_records_per_second)
        if outputs.http_url:
            settings.update(OUTPUT="http", HTTP_OUTPUT_URL=outputs.http_url)
        else:
            settings.update(OUTPUT="influxdb", INFLUX_DB=outputs.influx_db)
            if outputs.csv_dir:
                settings["CSV_OUTPUT_DIR"] = str(Path(outputs.csv_dir).resolve())
        if outputs.dlq_topic:
            settings["KAFKA_DLQ_TOPIC"] = outputs.dlq_topic
        return settings

    def _job_args(self, name: str, settings: Mapping[str, str]) -> list[str]:
        args = ["--env-file", str(self.env_file(name))]
        for key, value in sorted(settings.items()):
            args += [_flag(key), value]
        return args

    def _validate(self, name: str, settings: Mapping[str, str]) -> None:
        """The job's own validation of its settings, here, before anything is created or started."""
        argv = [arg for key, value in sorted(settings.items()) for arg in (_flag(key), value)]
        try:
            load_settings(["--env-file", os.devnull, *argv], environ=self.secrets)
        except ConfigError as exc:
            raise ViewError(f"view {name!r}: {exc}") from exc

    def _write_env_file(self, name: str) -> None:
        path = self.env_file(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.writelines(f"{key}={json.dumps(value)}\n" for key, value in sorted(self.secrets.items()))

    # ---- InfluxDB 1.x -------------------------------------------------------------------------------

    def _influx_url(self) -> str:
        return self.stack.get("INFLUX_URL", "http://127.0.0.1:8086").rstrip("/")

    def _influx(self, query: str, db: str = "") -> list[dict[str, Any]]:
        params = {"q": query, **({"db": db} if db else {})}
        user, password = self.stack.get("INFLUX_USERNAME", ""), self.secrets.get("INFLUX_PASSWORD", "")
        if user:
            params.update(u=user, p=password)
        req = urllib.request.Request(self._influx_url() + "/query", data=urllib.parse.urlencode(params).encode(),
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                doc = json.loads(resp.read())
        except OSError as exc:
            raise ViewError(f"InfluxDB {self._influx_url()}: {exc}") from exc
        rows: list[dict[str, Any]] = []
        for result in doc.get("results", []):
            if "error" in result:
                raise ViewError(f"InfluxDB {query!r}: {result['error']}")
            for series in result.get("series", []):
                rows += [dict(zip(series["columns"], values, strict=True)) for values in series.get("values", [])]
        return rows

    def influx_databases(self) -> set[str]:
        return {str(row["name"]) for row in self._influx("SHOW DATABASES")}

    def points(self, view: View) -> int | None:
        if view.outputs.http_url:
            return None
        measurement = view.outputs.measurement.replace('"', '\\"')
        rows = self._influx(f'SELECT count("ecg_mv") FROM "{measurement}"', view.outputs.influx_db)
        return int(rows[0]["count"]) if rows else 0

    # ---- operations ---------------------------------------------------------------------------------

    def create(self, name: str, profile: Profile, outputs: Outputs, *, wait_running: float = 0.0) -> View:
        """Create the view's output, submit its job, record it. Refused (ViewError, nothing created or started)
        when the name or an output is taken, a setting is invalid or the cluster does not answer."""
        if not NAME_RE.match(name):
            raise ViewError(f"invalid view name {name!r}: lower-case letters, digits and '-', starting with a letter")
        if self.stack.get("INFLUX_TRANSPORT", "v2") != "v1" and not outputs.http_url:
            raise ViewError("views manage InfluxDB 1.x databases: set INFLUX_TRANSPORT=v1 in the stack settings")
        if not outputs.http_url and not outputs.influx_db:
            raise ViewError(f"view {name!r}: an output is needed (an InfluxDB database or an HTTP URL)")
        with self._locked() as views:
            if name in views:
                raise ViewError(f"view {name!r} already exists (job {views[name].job_id}); delete it first")
            for other in views.values():
                clash = self._clash(outputs, other.outputs)
                if clash:
                    raise ViewError(f"view {name!r}: {clash} is already the output of view {other.name!r}")
            if not outputs.http_url and outputs.influx_db in self.influx_databases():
                raise ViewError(f"view {name!r}: InfluxDB database {outputs.influx_db!r} already exists at "
                                f"{self._influx_url()}; choose another or drop it")
            if self.view_dir(name).exists() and any(self.view_dir(name).iterdir()):
                raise ViewError(f"view {name!r}: {self.view_dir(name)} holds state that is no view's; remove it first")
            settings = self.job_settings(name, profile, outputs)
            self._validate(name, settings)
            self.rest.get("/overview")  # the cluster answers before anything is created
            if not outputs.http_url:
                self._influx(f'CREATE DATABASE "{outputs.influx_db}"')
            self._write_env_file(name)
            view = View(name, profile, outputs, settings)
            try:
                view.job_id, view.submit_mode = self._submit(view, recovery=None)
            except (FlinkRestError, ViewError) as exc:
                if not outputs.http_url:
                    self._influx(f'DROP DATABASE "{outputs.influx_db}"')
                shutil.rmtree(self.view_dir(name), ignore_errors=True)
                raise ViewError(f"view {name!r}: submission failed, nothing kept: {exc}") from exc
            view.job_ids.append(view.job_id)
            views[name] = view
        if wait_running:
            self.rest.wait_for_state(view.job_id, ["RUNNING"], wait_running)
        return view

    @staticmethod
    def _clash(new: Outputs, old: Outputs) -> str:
        if new.influx_db and new.influx_db == old.influx_db:
            return f"InfluxDB database {new.influx_db!r}"
        if new.csv_dir and old.csv_dir and Path(new.csv_dir).resolve() == Path(old.csv_dir).resolve():
            return f"CSV folder {new.csv_dir!r}"
        if new.http_url and new.http_url == old.http_url:
            return f"HTTP endpoint {new.http_url!r}"
        return ""

    def _submit(self, view: View, recovery: str | None) -> tuple[str, str]:
        args = self._job_args(view.name, view.settings)
        try:
            return self.rest.run_python(JOB_FILE, args, savepoint=recovery), "rest"
        except FlinkRestError as exc:
            if exc.status != 404:
                raise
        return self._flink_run(args, recovery), "flink-run"  # web.submit.enable: false

    def _flink_run(self, args: list[str], recovery: str | None) -> str:
        import pyflink

        flink = self.flink_bin or Path(pyflink.__file__).resolve().parent / "bin" / "flink"
        address = urllib.parse.urlsplit(self.rest.url).netloc
        command = [str(flink), "run", "-d", "-m", address, "-py", str(JOB_FILE),
                   "-pyclientexec", sys.executable]
        if recovery:
            command += ["-s", recovery]
        env = dict(os.environ, PYFLINK_CLIENT_EXECUTABLE=sys.executable)
        env.pop("PYTHONPATH", None)
        proc = subprocess.run([*command, *args], env=env, cwd=self.root, capture_output=True, text=True,
                              timeout=300, check=False)
        found = re.search(r"JobID\s+([0-9a-f]{32})", proc.stdout + proc.stderr)
        if proc.returncode != 0 or found is None:
            raise ViewError(f"flink run failed ({proc.returncode}): {(proc.stdout + proc.stderr)[-3000:]}")
        return found.group(1)

    def job_state(self, view: View) -> str:
        if not view.job_id:
            return "STOPPED"
        try:
            state = self.rest.job_state(view.job_id)
        except FlinkRestError:
            return "UNKNOWN"
        if state is None:
            return "UNKNOWN"  # the cluster does not know the job (restarted, or lost)
        if view.state == "stopped" and state == "FINISHED":
            return "STOPPED"
        return state

    def input_lag(self, view: View) -> tuple[float | None, int | None, int | None]:
        """(event-time lag in ms: wall clock minus the job's watermark, max over its readers; 1 if a reader still
        has unread records in Kafka, 0 if not; records in Kafka after the last one read, summed over the
        readers), from the liveness guard's gauges (connectors/java/LivenessGuard: ``event_time_lag_ms``,
        ``liveness_unread_records``, ``input_lag_records``); None when not reported yet. The KafkaSource of this
        job reports no per-partition offset metrics and commits no offsets to its group, so the guard asks
        the broker for the end offsets itself."""
        gauges = self.rest.operator_gauges(view.job_id, (".event_time_lag_ms", ".liveness_unread_records",
                                                         ".input_lag_records"))
        lag = gauges.get(".event_time_lag_ms", {}).get("max")
        unread = gauges.get(".liveness_unread_records", {}).get("max")
        # -1 from any reader means "unknown": a sum over readers is then unknown too.
        unknown = gauges.get(".input_lag_records", {}).get("min")
        records = gauges.get(".input_lag_records", {}).get("sum")
        known_records = None if records is None or unknown is None or min(records, unknown) < 0 else int(records)
        return (lag if lag is not None and lag >= 0 else None,
                int(unread) if unread is not None and unread >= 0 else None, known_records)

    def status(self, name: str) -> ViewStatus:
        view = self.get(name)
        state = self.job_state(view)
        last_checkpoint, lag, unread, records = "", None, None, None
        if state in RUNNING_STATES | TERMINAL_STATES:
            with contextlib.suppress(FlinkRestError):
                completed = (self.rest.checkpoints(view.job_id).get("latest") or {}).get("completed") or {}
                last_checkpoint = local_path(str(completed.get("external_path", "")))
            if state == "RUNNING":
                with contextlib.suppress(FlinkRestError):
                    lag, unread, records = self.input_lag(view)
        if not last_checkpoint:
            on_disk = latest_checkpoint(self.checkpoint_dir(name))
            last_checkpoint = str(on_disk) if on_disk else ""
        try:
            points = self.points(view)
        except ViewError:
            points = None
        return ViewStatus(name, view.job_id, state, last_checkpoint, points, lag, unread, view.last_savepoint,
                          records)

    def list(self) -> list[ViewStatus]:
        return [self.status(name) for name in sorted(self._read())]

    def stop(self, name: str, *, timeout: float = 180.0) -> str:
        """Stop the view's job with a savepoint (``/jobs/:id/stop``, drain=false: windows still open stay in the
        savepoint, so ``resume`` publishes them once); returns the savepoint's path."""
        view = self.get(name)
        state = self.job_state(view)
        if state != "RUNNING":
            raise ViewError(f"view {name!r}: job {view.job_id} is {state}, not RUNNING; nothing to stop")
        target = self.savepoint_dir(name)
        target.mkdir(parents=True, exist_ok=True)
        path = self.rest.stop_with_savepoint(view.job_id, target.as_uri(), drain=False, timeout=timeout)
        self.rest.wait_for_state(view.job_id, ["FINISHED"], timeout=60)
        with self._locked() as views:
            views[name].last_savepoint = path
            views[name].state = "stopped"
        return path

    def recovery_point(self, name: str) -> str:
        """The newest of the view's last savepoint and its latest retained checkpoint."""
        view = self.get(name)
        candidates = []
        if view.last_savepoint and (Path(view.last_savepoint) / "_metadata").exists():
            candidates.append(Path(view.last_savepoint))
        checkpoint = latest_checkpoint(self.checkpoint_dir(name))
        if checkpoint is not None:
            candidates.append(checkpoint)
        if not candidates:
            raise ViewError(f"view {name!r}: no savepoint and no retained checkpoint under {self.view_dir(name)}")
        return str(max(candidates, key=lambda path: (path / "_metadata").stat().st_mtime))

    def resume(self, name: str, *, max_records_per_second: float | None = None, wait_running: float = 0.0) -> View:
        """Start the view's job again from its last savepoint, else its latest retained checkpoint (whichever is
        newer: after a crash, even of the whole cluster, the checkpoints taken after the savepoint count).
        ``max_records_per_second`` changes the view's throttle (0: none)."""
        view = self.get(name)
        state = self.job_state(view)
        if state in RUNNING_STATES:
            raise ViewError(f"view {name!r}: job {view.job_id} is {state}; stop it first")
        recovery = self.recovery_point(name)
        if max_records_per_second is not None:
            view.profile = dataclasses.replace(view.profile, max_records_per_second=max_records_per_second)
            view.settings = self.job_settings(name, view.profile, view.outputs)
            self._validate(name, view.settings)
        self._write_env_file(name)
        job_id, mode = self._submit(view, recovery=recovery)
        with self._locked() as views:
            stored = views[name]
            stored.profile, stored.settings = view.profile, view.settings
            stored.job_id, stored.submit_mode, stored.restored_from = job_id, mode, recovery
            stored.state = "running"
            stored.job_ids.append(job_id)
            view = stored
        if wait_running:
            self.rest.wait_for_state(job_id, ["RUNNING"], wait_running)
        return view

    def delete(self, name: str, *, drop_output: bool = False) -> str:
        """Stop the view's job with a final savepoint, optionally drop its output (database, CSV folder), remove it
        from the registry and move its folder (checkpoints, savepoints) to ``<root>/deleted/NAME-<epoch s>``, so
        the name can be used again; returns the final savepoint's path there ('' when the job was not running)."""
        view = self.get(name)
        savepoint = ""
        state = self.job_state(view)
        if state == "RUNNING":
            savepoint = self.stop(name)
        elif state in RUNNING_STATES:
            raise ViewError(f"view {name!r}: job {view.job_id} is {state}; wait until it runs or stops")
        if drop_output:
            if view.outputs.influx_db:
                self._influx(f'DROP DATABASE "{view.outputs.influx_db}"')
            if view.outputs.csv_dir:
                shutil.rmtree(view.outputs.csv_dir, ignore_errors=True)
        self.env_file(name).unlink(missing_ok=True)
        kept = self.root / "deleted" / f"{name}-{int(time.time())}"
        with self._locked() as views:
            views.pop(name, None)
            if self.view_dir(name).exists():
                kept.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.view_dir(name), kept)
        return str(kept / Path(savepoint).relative_to(self.view_dir(name))) if savepoint else ""
