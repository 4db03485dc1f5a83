"""Standalone Flink session cluster from the pip-installed Flink (``pyflink/bin``).

The cluster uses the project's own configuration directory (``.run/flink-conf``: ``config.yaml``,
``workers``, ``masters`` and the log4j files copied from ``pyflink/conf``), logs in
``.run/flink-log`` and PID files in ``.run/flink-pid``; nothing inside the venv is modified
(``scripts/setup.sh`` copies ``flink-python-*.jar`` into ``pyflink/lib`` once, which standalone
mode needs).

    cluster = FlinkCluster(rest_port=8081)
    cluster.start()                       # start-cluster.sh, waits for REST /overview + slots
    FlinkCluster(taskmanagers=2, slots=1)  # two TaskManagers (one line per TaskManager in `workers`)
    job_id = cluster.submit("jobs/ecg_job.py", ["--config", "x"])   # flink run -d -py ...
    cluster.jobs_overview(); cluster.cancel(job_id)
    cluster.stop()                        # stop-cluster.sh, then SIGKILL leftovers (ours only)

Python workers run with the venv's interpreter (``python.executable``) and see only what the job ships
(``add_python_file``, flink_jobs/shipping.py): no repository on their path (no ``python.pythonpath``, no
PYTHONPATH, processes started outside the repository), as on a cluster that has never seen the repository.

Only processes whose command line carries this cluster's ``--configDir`` are ever signalled.

CLI: ``python -m devstack.flink_cluster start|stop|status [--rest-port N] [--taskmanagers N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from devstack.processes import free_port, pid_alive, proc_cmdline

REPO_ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = REPO_ROOT / ".run"
_DEFAULT_JAVA_OPTS = (
    "--add-exports=java.base/sun.net.util=ALL-UNNAMED "
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED "
    "--add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED "
    "--add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.net=ALL-UNNAMED "
    "--add-opens=java.base/java.io=ALL-UNNAMED --add-opens=java.base/java.nio=ALL-UNNAMED "
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED --add-opens=java.base/java.lang.reflect=ALL-UNNAMED "
    "--add-opens=java.base/java.text=ALL-UNNAMED --add-opens=java.base/java.time=ALL-UNNAMED "
    "--add-opens=java.base/java.util=ALL-UNNAMED "
    "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED "
    "--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED "
    "--add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED"
)
_JOB_ID_RE = re.compile(r"JobID\s+([0-9a-f]{32})")


class FlinkClusterError(RuntimeError):
    pass


def pyflink_home() -> Path:
    import pyflink

    return Path(os.path.dirname(os.path.abspath(pyflink.__file__)))


def venv_python() -> str:
    """The project venv's interpreter (not symlink-resolved, or the venv would be lost)."""
    candidate = REPO_ROOT / ".venv" / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def _default_java_opts(home: Path) -> str:
    """``env.java.opts.all`` from the shipped config.yaml (module opens needed on Java 17)."""
    try:
        text = (home / "conf" / "config.yaml").read_text()
    except OSError:
        return _DEFAULT_JAVA_OPTS
    m = re.search(r"^\s+all:\s*(--add-.*)$", text, re.MULTILINE)
    return m.group(1).strip() if m else _DEFAULT_JAVA_OPTS


def _yaml_scalar(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    return json.dumps(str(v))  # JSON strings are valid YAML double-quoted scalars


class FlinkCluster:
    """Manage one standalone session cluster (1 JobManager + ``taskmanagers`` TaskManagers) on 127.0.0.1."""

    def __init__(
        self,
        run_dir: Path = RUN_DIR,
        *,
        rest_port: int = 8081,
        rpc_port: int = 0,
        slots: int = 2,
        taskmanagers: int = 1,
        parallelism: int = 2,
        jobmanager_memory: str = "1600m",
        taskmanager_memory: str = "4096m",
        python_executable: str | None = None,
        extra_config: Mapping[str, object] | None = None,
        start_timeout: float = 120.0,
        stop_timeout: float = 30.0,
    ) -> None:
        """``rest_port=0`` / ``rpc_port=0`` pick free ports (at ``write_config`` time).

        Defaults fit a 2-core, 24 GB machine: JM 1.6 GB, TM 4 GB with 2 slots (Python workers
        take their memory from the TM's managed memory). ``slots`` are per TaskManager.
        """
        if taskmanagers < 1:
            raise ValueError("taskmanagers must be >= 1")
        self.run_dir = Path(run_dir).resolve()
        self.conf_dir = self.run_dir / "flink-conf"
        self.log_dir = self.run_dir / "flink-log"
        self.pid_dir = self.run_dir / "flink-pid"
        self.tmp_dir = self.run_dir / "flink-tmp"
        self.checkpoint_dir = self.run_dir / "flink-checkpoints"
        self.savepoint_dir = self.run_dir / "flink-savepoints"
        self.rest_port = rest_port
        self.rpc_port = rpc_port
        self.slots = slots
        self.taskmanagers = taskmanagers
        self.parallelism = parallelism
        self.jobmanager_memory = jobmanager_memory
        self.taskmanager_memory = taskmanager_memory
        self.python = python_executable or venv_python()
        self.extra_config = dict(extra_config or {})
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.home = pyflink_home()
        self._load_ports()

    # ---- configuration -------------------------------------------------------------------

    def _load_ports(self) -> None:
        """Reuse the ports of an existing generated config (for a cluster started elsewhere)."""
        conf = self.conf_dir / "config.yaml"
        if not conf.exists():
            return
        text = conf.read_text()
        for key, attr in (("rest.port", "rest_port"), ("jobmanager.rpc.port", "rpc_port")):
            m = re.search(rf"^{re.escape(key)}:\s*(\d+)\s*$", text, re.MULTILINE)
            if m and getattr(self, attr) == 0:
                setattr(self, attr, int(m.group(1)))

    @property
    def rest_url(self) -> str:
        if not self.rest_port:
            raise FlinkClusterError("rest port not chosen yet (call start() or write_config())")
        return f"http://127.0.0.1:{self.rest_port}"

    def config(self) -> dict[str, object]:
        cfg: dict[str, object] = {
            "env.java.opts.all": _default_java_opts(self.home),
            "env.log.dir": str(self.log_dir),
            "env.pid.dir": str(self.pid_dir),
            "jobmanager.rpc.address": "127.0.0.1",
            "jobmanager.rpc.port": self.rpc_port,
            "jobmanager.bind-host": "127.0.0.1",
            "jobmanager.memory.process.size": self.jobmanager_memory,
            "jobmanager.execution.failover-strategy": "region",
            "taskmanager.host": "127.0.0.1",
            "taskmanager.bind-host": "127.0.0.1",
            "taskmanager.numberOfTaskSlots": self.slots,
            "taskmanager.memory.process.size": self.taskmanager_memory,
            "parallelism.default": self.parallelism,
            "rest.address": "127.0.0.1",
            "rest.bind-address": "127.0.0.1",
            "rest.port": self.rest_port,
            "blob.server.port": "0",
            "taskmanager.rpc.port": "0",
            "taskmanager.data.port": 0,
            "metrics.internal.query-service.port": "0",
            "io.tmp.dirs": str(self.tmp_dir),
            "web.tmpdir": str(self.tmp_dir / "web"),
            "execution.checkpointing.dir": self.checkpoint_dir.as_uri(),
            "state.savepoints.dir": self.savepoint_dir.as_uri(),
            "python.executable": self.python,
            "python.client.executable": self.python,
        }
        cfg.update(self.extra_config)
        return cfg

    def write_config(self) -> Path:
        """Generate ``conf_dir`` (config.yaml, masters, workers, logging files)."""
        if not self.rest_port:
            self.rest_port = free_port()
        if not self.rpc_port:
            self.rpc_port = free_port()
        for d in (self.conf_dir, self.log_dir, self.pid_dir, self.tmp_dir, self.checkpoint_dir):
            d.mkdir(parents=True, exist_ok=True)
        lines = ["# generated by devstack/flink_cluster.py -- do not edit"]
        lines += [f"{k}: {_yaml_scalar(v)}" for k, v in self.config().items()]
        path = self.conf_dir / "config.yaml"
        path.write_text("\n".join(lines) + "\n")
        # start-cluster.sh starts one TaskManager per line (locally for 127.0.0.1).
        (self.conf_dir / "workers").write_text("127.0.0.1\n" * self.taskmanagers)
        (self.conf_dir / "masters").write_text(f"127.0.0.1:{self.rest_port}\n")
        for src in (self.home / "conf").iterdir():
            if src.suffix in (".properties", ".xml"):
                shutil.copyfile(src, self.conf_dir / src.name)
        return path

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            FLINK_HOME=str(self.home),
            FLINK_CONF_DIR=str(self.conf_dir),
            FLINK_LOG_DIR=str(self.log_dir),
            FLINK_PID_DIR=str(self.pid_dir),
            PYFLINK_CLIENT_EXECUTABLE=self.python,
        )
        venv_bin = str(Path(self.python).parent)
        env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
        # The workers inherit the TaskManager's environment: no first-party code may reach them that way.
        env.pop("PYTHONPATH", None)
        return env

    # ---- processes ---------------------------------------------------------------------------

    def _ours(self, pid: int) -> bool:
        cmd = proc_cmdline(pid)
        return cmd is not None and str(self.conf_dir) in cmd and pid_alive(pid)

    def pids(self) -> list[int]:
        """PIDs from this cluster's PID files that are alive and carry our --configDir."""
        out: list[int] = []
        for f in sorted(self.pid_dir.glob("flink-*.pid")):
            with contextlib.suppress(OSError):
                for tok in f.read_text().split():
                    if tok.isdigit() and self._ours(int(tok)):
                        out.append(int(tok))
        return out

    def _sanitize_pid_files(self) -> None:
        """Drop PID-file lines that are not our live processes (so stop-cluster.sh cannot kill
        an unrelated process that reused a pid)."""
        for f in self.pid_dir.glob("flink-*.pid"):
            keep = [t for t in f.read_text().split() if t.isdigit() and self._ours(int(t))]
            if keep:
                f.write_text("\n".join(keep) + "\n")
            else:
                f.unlink(missing_ok=True)

    def _script(self, name: str, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(self.home / "bin" / name), *args],
            env=self.env(),
            cwd=str(self.run_dir),  # not the repository: a worker's working directory must not import it
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def is_running(self) -> bool:
        try:
            self.overview()
            return True
        except FlinkClusterError:
            return False

    def start(self) -> Self:
        """Start the JobManager and the TaskManagers and wait until all their slots are registered."""
        if self.pid_dir.exists():
            self._sanitize_pid_files()
        if self.pids():
            if self.is_running():
                return self  # already up (ours)
            raise FlinkClusterError(f"Flink processes {self.pids()} exist but REST does not answer; stop first")
        if self.rest_port and _port_open(self.rest_port):
            raise FlinkClusterError(
                f"port {self.rest_port} is already in use by another process; pass another "
                "rest_port (--rest-port), or 0 for a free one"
            )
        self.write_config()
        proc = self._script("start-cluster.sh")
        if proc.returncode != 0:
            raise FlinkClusterError(f"start-cluster.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        deadline = time.monotonic() + self.start_timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                ov = self.overview()
                last = ov
                if int(ov.get("slots-total", 0)) >= self.slots * self.taskmanagers:
                    return self
            except FlinkClusterError as exc:
                last = exc
            if not self.pids():
                break
            time.sleep(0.5)
        logs = "\n".join(f"--- {p.name}\n" + _tail(p) for p in sorted(self.log_dir.glob("*.log")))
        self.stop()
        raise FlinkClusterError(f"Flink cluster not ready ({last}); logs:\n{logs}")

    def stop(self) -> None:
        """stop-cluster.sh, then SIGKILL whatever of ours is still alive."""
        if not self.pid_dir.exists():
            return
        self._sanitize_pid_files()
        pids = self.pids()
        if not pids:
            return
        if (self.conf_dir / "config.yaml").exists():
            self._script("stop-cluster.sh", timeout=self.stop_timeout + 30)
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline and any(self._ours(p) for p in pids):
            time.sleep(0.2)
        for p in pids:
            if self._ours(p):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(self._ours(p) for p in pids):
            time.sleep(0.1)
        left = [p for p in pids if self._ours(p)]
        if left:
            raise FlinkClusterError(f"Flink processes still running: {left}")
        for f in self.pid_dir.glob("flink-*.pid"):
            f.unlink(missing_ok=True)

    def process_tree(self) -> list[int]:
        """This cluster's JobManager and TaskManagers and every process below them (the Python workers)."""
        return [tree_pid for pid in self.pids() for tree_pid in (pid, *_descendants(pid))]

    def taskmanager_pids(self) -> list[int]:
        return [p for p in self.pids() if "TaskManagerRunner" in " ".join(proc_cmdline(p) or [])]

    def kill_taskmanager(self) -> int:
        """kill -9 one TaskManager of this cluster (chaos testing); returns its pid."""
        pids = self.taskmanager_pids()
        if not pids:
            raise FlinkClusterError("no TaskManager of this cluster is running")
        # Its Python workers die with it, as on a lost machine (they would otherwise linger as orphans).
        for pid in [pids[0], *_descendants(pids[0])]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self._ours(pids[0]):
            time.sleep(0.1)
        self._sanitize_pid_files()
        return pids[0]

    def start_taskmanager(self) -> None:
        """Start one more TaskManager (`taskmanager.sh start`) and wait until it registers."""
        # By its id: counts cannot tell it apart from a killed one the JobManager has not yet dropped, and
        # restarting jobs may take all its slots the moment it registers.
        registered = self.taskmanager_ids()
        proc = self._script("taskmanager.sh", "start")
        if proc.returncode != 0:
            raise FlinkClusterError(f"taskmanager.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.taskmanager_ids() - registered:
                return
            time.sleep(0.5)
        raise FlinkClusterError("new TaskManager did not register")

    def taskmanager_ids(self) -> set[str]:
        """REST ``/taskmanagers``: the ids of the TaskManagers registered with the JobManager."""
        return {str(tm["id"]) for tm in self._rest("GET", "/taskmanagers").get("taskmanagers", [])}

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- REST ----------------------------------------------------------------------------------

    def _rest(self, method: str, path: str, timeout: float = 10.0) -> Any:
        req = urllib.request.Request(self.rest_url + path, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            raise FlinkClusterError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:500]!r}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise FlinkClusterError(f"{method} {path}: {exc}") from exc
        return json.loads(body) if body else None

    def rest_get(self, path: str) -> Any:
        """GET a REST path of this cluster (e.g. ``/jobs/JOB_ID/checkpoints``), JSON-decoded."""
        return self._rest("GET", path)

    def overview(self) -> dict[str, Any]:
        """REST ``/overview`` (taskmanagers, slots-total, slots-available, jobs-running, ...)."""
        return dict(self._rest("GET", "/overview"))

    def jobs_overview(self) -> list[dict[str, Any]]:
        """REST ``/jobs/overview``: one dict per job (``jid``, ``name``, ``state``, ...)."""
        return list(self._rest("GET", "/jobs/overview").get("jobs", []))

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self._rest("GET", f"/jobs/{job_id}"))

    def job_state(self, job_id: str) -> str:
        return str(self.job(job_id)["state"])

    def cancel(self, job_id: str) -> None:
        self._rest("PATCH", f"/jobs/{job_id}?mode=cancel")

    def wait_for_job(
        self,
        job_id: str,
        states: Sequence[str] = ("FINISHED", "FAILED", "CANCELED"),
        timeout: float = 300.0,
    ) -> str:
        """Poll until the job reaches one of ``states``; returns the state."""
        deadline = time.monotonic() + timeout
        state = "?"
        while time.monotonic() < deadline:
            state = self.job_state(job_id)
            if state in states:
                return state
            time.sleep(0.5)
        raise FlinkClusterError(f"job {job_id} still {state} after {timeout}s")

    # ---- submit --------------------------------------------------------------------------------

    def submit(
        self,
        job_py: str | Path,
        args: Sequence[str] = (),
        *,
        detached: bool = True,
        pyfiles: Sequence[str | Path] = (),
        jars: Sequence[str | Path] = (),
        parallelism: int | None = None,
        from_savepoint: str | Path | None = None,
        timeout: float = 300.0,
    ) -> str:
        """``flink run [-d] -py job_py -pyexec <venv python> ... -- args``; returns the JobID.

        ``jars`` are added with ``-C file://...`` (classpath on the cluster); a job that sets
        ``pipeline.jars`` itself does not need them.
        """
        cmd = [
            str(self.home / "bin" / "flink"),
            "run",
            "-py",
            str(Path(job_py).resolve()),
            "-pyexec",
            self.python,
            "-pyclientexec",
            self.python,
        ]
        if detached:
            cmd.insert(2, "-d")
        if parallelism:
            cmd += ["-p", str(parallelism)]
        if from_savepoint:
            cmd += ["-s", str(from_savepoint)]  # a retained checkpoint or a savepoint
        if pyfiles:
            cmd += ["-pyfs", ",".join(str(Path(p).resolve()) for p in pyfiles)]
        for j in jars:
            cmd += ["-C", Path(j).resolve().as_uri()]
        cmd += list(args)
        # The client runs the job file as a script; the file puts its own tree on the path (not this repository's).
        proc = subprocess.run(
            cmd, env=self.env(), cwd=str(self.run_dir), capture_output=True, text=True, timeout=timeout, check=False
        )
        out = proc.stdout + "\n" + proc.stderr
        m = _JOB_ID_RE.search(out)
        if proc.returncode != 0 or m is None:
            raise FlinkClusterError(f"flink run failed ({proc.returncode}):\n{out[-4000:]}")
        return m.group(1)


def _descendants(pid: int) -> list[int]:
    """All processes below `pid` in the process tree (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            parent = int(text[text.rindex(")") + 2 :].split()[1])
            children.setdefault(parent, []).append(int(stat.parent.name))
    found: list[int] = []
    pending = list(children.get(pid, []))
    while pending:
        child = pending.pop()
        found.append(child)
        pending.extend(children.get(child, []))
    return found


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devstack.flink_cluster")
    ap.add_argument("command", choices=("start", "stop", "status"))
    ap.add_argument("--run-dir", type=Path, default=RUN_DIR)
    ap.add_argument("--rest-port", type=int, default=None, help="default 8081 (0 = free port)")
    ap.add_argument("--slots", type=int, default=2, help="task slots per TaskManager")
    ap.add_argument("--taskmanagers", type=int, default=1)
    ap.add_argument("--tm-memory", default="4096m")
    ns = ap.parse_args(argv)
    rest_port = ns.rest_port
    if rest_port is None:
        rest_port = 0 if ns.command != "start" else 8081
    cluster = FlinkCluster(ns.run_dir, rest_port=rest_port, slots=ns.slots, taskmanagers=ns.taskmanagers,
                           taskmanager_memory=ns.tm_memory)
    try:
        if ns.command == "start":
            cluster.start()
            print(f"Flink cluster ready: {cluster.rest_url} (conf {cluster.conf_dir}, logs {cluster.log_dir})")
        elif ns.command == "stop":
            pids = cluster.pids()
            cluster.stop()
            print(f"stopped Flink pids {pids}" if pids else "no Flink cluster running")
        else:
            pids = cluster.pids()
            if not pids or not cluster.rest_port:
                print("Flink cluster: not running")
                return 1
            print(f"Flink cluster: pids {pids}, {cluster.rest_url}")
            print(json.dumps(cluster.overview(), indent=2))
            for j in cluster.jobs_overview():
                print(f"  {j['jid']}  {j['state']:10s}  {j['name']}")
    except FlinkClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
