"""Local Apache Kafka + InfluxDB 1.x + VictoriaMetrics for development and tests: ``LocalStack``.

One manager used by the run command, the CLI and the test fixtures::

    with LocalStack(Path(".run/stack")) as stack:      # start() on enter, stop() on exit
        stack.kafka_bootstrap      # "127.0.0.1:PORT"     (Apache Kafka, one KRaft node)
        stack.influx_v1_url        # "http://127.0.0.1:PORT"  (influxd 1.6, database `ecg` created)
        stack.influx_v2_url        # "http://127.0.0.1:PORT"  (victoria-metrics, /api/v2/write)

Kafka is the Apache Kafka broker that ``scripts/setup.sh`` fetches with Maven into
``.cache/kafka/lib`` (``devstack/kafka/pom.xml``, the version of the compose file's image): one
KRaft node (broker + controller) in a JVM with a small heap, its log directory under
``<run_dir>/kafka/data``. The data survives a restart: ``kill_kafka()`` (SIGKILL, like a crash) and
``restart_kafka()`` bring the broker back on the same log directory and ports, so outage tests see
the topics, offsets and transactions it had. ``start(clean=True)`` starts from an empty log dir.

Everything binds to 127.0.0.1 on free ports (or the ones given). Data, configs, logs
(``<run_dir>/<name>.log``) and PID files (``<run_dir>/<name>.pid``) live in ``run_dir``;
``<run_dir>/stack.json`` describes the running stack (endpoints, pids) for other processes.

Process safety: a PID file records pid, kernel start time and argv. ``stop()`` only signals a
process whose ``/proc/PID/stat`` start time and ``/proc/PID/cmdline`` still match, so a reused
pid is never killed. Children get ``PR_SET_PDEATHSIG=SIGKILL`` unless ``detach=True`` (the
stack dies with the Python process that started it, e.g. a crashed pytest), and run in their own
session (Ctrl+C in the terminal reaches only the manager, which then stops them in order).

Query helpers: devstack.influx_queries; Kafka topics: devstack.kafka_admin; process supervision:
devstack.processes. CLI: ``python -m devstack.local_stack start [--detach] | stop | status``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from devstack.influx_queries import create_database_v1, http_request
from devstack.kafka_admin import admin_client, create_topics
from devstack.processes import (
    ProcRecord,
    StackError,
    free_port,
    log_tail,
    spawn,
    tcp_open,
    terminate_verified,
    write_json_atomic,
)

if TYPE_CHECKING:
    from devstack.secure_kafka import BrokerSecurity

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUN_DIR = REPO_ROOT / ".run" / "stack"

#: topic name -> number of partitions
DEFAULT_TOPICS: dict[str, int] = {
    "ecg-raw": 4,
    "ecg-dlq": 1,
    "ecg-anomalies": 1,
    "ecg-model-updates": 1,
}
#: topic config applied on creation (Kafka needs it for ~10 MB frames)
DEFAULT_TOPIC_CONFIG: dict[str, str] = {"max.message.bytes": str(16 * 1024 * 1024)}
DEFAULT_INFLUX_DB = "ecg"
STATE_FILE = "stack.json"
SERVICES = ("kafka", "influxd", "victoria-metrics")

#: Apache Kafka version of the local broker: devstack/kafka/pom.xml and docker-compose.yml's image
KAFKA_VERSION = "3.9.1"
KAFKA_LIB = REPO_ROOT / ".cache" / "kafka" / "lib"
#: JVM options of the local broker: a small heap, quick start (single node, short-lived)
KAFKA_JVM_OPTS = ("-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true")

# Environment variables the services would otherwise read as configuration.
_SCRUB_ENV_PREFIXES = ("INFLUXDB_", "OTEL_")
_SCRUB_ENV_KEYS = ("KAFKA_HEAP_OPTS", "KAFKA_OPTS", "KAFKA_LOG4J_OPTS", "JAVA_TOOL_OPTIONS", "CLASSPATH")


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_ENV_PREFIXES) and k not in _SCRUB_ENV_KEYS}
    env.setdefault("RUST_LOG", "warn")
    return env


def kafka_classpath(lib: Path = KAFKA_LIB) -> str:
    """``-cp`` value of the local Apache Kafka broker (``.cache/kafka/lib/*``, from scripts/setup.sh)."""
    if not (lib / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file():
        raise StackError(f"Apache Kafka {KAFKA_VERSION} is not in {lib}: run scripts/setup.sh")
    return f"{lib}/*"


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    return _which("java")


def _kafka_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (as ``random-uuid``), never starting
    with "-": the storage tool's argument parser takes such an id for an option (1 run in 64 failed), which is
    why Kafka's own Uuid.randomUuid draws again."""
    import base64

    while True:
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _which(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise StackError(f"{binary} not found on PATH: run scripts/setup.sh (apt influxdb victoria-metrics)")
    return path


# --------------------------------------------------------------------------------------------
# the manager


@dataclass
class _Service:
    rec: ProcRecord
    popen: subprocess.Popen[bytes] | None
    endpoint: str
    ports: dict[str, int] = field(default_factory=dict)


class LocalStack:
    """Start/stop Apache Kafka, influxd 1.x and victoria-metrics as local child processes."""

    def __init__(
        self,
        run_dir: Path = DEFAULT_RUN_DIR,
        *,
        topics: Mapping[str, int] | None = None,
        topic_config: Mapping[str, str] | None = None,
        influx_db: str = DEFAULT_INFLUX_DB,
        ports: Mapping[str, int] | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        detach: bool = False,
        kafka_security: BrokerSecurity | None = None,
    ) -> None:
        """``ports`` may fix ``kafka``, ``kafka_controller``, ``influx_http``, ``influx_rpc``, ``vm``
        (else free ports); ``kafka_advertised``: the port the broker tells its clients (PLAINTEXT only), for a
        proxy in front of it that every client then goes through (``kafka_bootstrap`` is that address; the
        proxy must accept before the broker starts). Kafka gets at least 90 s to start (a JVM on a busy 2-core machine).

        ``detach=False`` (default): children die with this Python process (PR_SET_PDEATHSIG).

        ``kafka_security``: the broker's only client listener is SASL_SSL with these certificates, SCRAM users
        and ACLs enforced (devstack/secure_kafka.py); the stack's own admin client logs in as its admin user.
        """
        self.run_dir = Path(run_dir).resolve()
        self.topics: dict[str, int] = dict(DEFAULT_TOPICS if topics is None else topics)
        self.topic_config: dict[str, str] = dict(DEFAULT_TOPIC_CONFIG if topic_config is None else topic_config)
        self.influx_db = influx_db
        self.fixed_ports = dict(ports or {})
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.detach = detach
        self.kafka_security = kafka_security
        self._services: dict[str, _Service] = {}
        self._stopped_kafka_ports: dict[str, int] = {}

    # ---- endpoints ---------------------------------------------------------------------------

    def _endpoint(self, name: str, what: str) -> str:
        svc = self._services.get(name)
        if svc is None:
            raise StackError(f"{what} is not running in this LocalStack (start it first)")
        return svc.endpoint

    @property
    def kafka_bootstrap(self) -> str:
        """``127.0.0.1:PORT`` of the Kafka broker."""
        return self._endpoint("kafka", "kafka")

    @property
    def influx_v1_url(self) -> str:
        """``http://127.0.0.1:PORT`` of influxd 1.x (database ``influx_db`` exists)."""
        return self._endpoint("influxd", "influxdb v1 (influxd)")

    @property
    def influx_v2_url(self) -> str:
        """``http://127.0.0.1:PORT`` of victoria-metrics (InfluxDB v2 write API compatible)."""
        return self._endpoint("victoria-metrics", "victoria-metrics")

    @property
    def vm_url(self) -> str:
        return self.influx_v2_url

    def endpoints(self) -> dict[str, Any]:
        d: dict[str, Any] = {"run_dir": str(self.run_dir)}
        if "kafka" in self._services:
            d["kafka_bootstrap"] = self.kafka_bootstrap
            d["topics"] = dict(self.topics)
        if "influxd" in self._services:
            d["influx_v1_url"] = self.influx_v1_url
            d["influx_db"] = self.influx_db
        if "victoria-metrics" in self._services:
            d["influx_v2_url"] = self.influx_v2_url
        return d

    def records(self) -> dict[str, ProcRecord]:
        return {n: s.rec for n, s in self._services.items()}

    def alive_pids(self) -> list[int]:
        """PIDs of processes this stack started that are still running (verified identity)."""
        return [s.rec.pid for s in self._services.values() if s.rec.alive()]

    # ---- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Self:
        if not self._services:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(
        self,
        kafka: bool = True,
        influx_v1: bool = True,
        victoria_metrics: bool = True,
        *,
        clean: bool = False,
    ) -> LocalStack:
        """Start the selected services and wait until they answer.

        ``clean=True`` deletes existing Kafka/influxd/victoria-metrics data in ``run_dir`` first
        (without it Kafka keeps the topics and records of the last run in ``run_dir``). Raises
        ``StackError`` (with the log tail) if a service fails; the services this call had already
        started are stopped again.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._refuse_if_running()
        if clean:
            for d in ("kafka", "influxdb", "vm"):
                shutil.rmtree(self.run_dir / d, ignore_errors=True)
        before = set(self._services)
        try:
            if kafka:
                self._start_with_retry("kafka", self._start_kafka)
                self.create_topics(self.topics)
            if influx_v1:
                self._start_with_retry("influxd", self._start_influxd)
            if victoria_metrics:
                self._start_with_retry("victoria-metrics", self._start_vm)
        except BaseException:
            self._stop([n for n in self._services if n not in before])
            raise
        self._write_state()
        return self

    def stop(self) -> None:
        """Stop every process this stack started (SIGTERM, then SIGKILL); idempotent."""
        self._stop(list(self._services))

    def _stop(self, names: list[str]) -> None:
        survivors: list[str] = []
        for name in reversed(names):
            svc = self._services[name]
            ok = terminate_verified(svc.rec, svc.popen, timeout=self.stop_timeout)
            if svc.popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    svc.popen.wait(timeout=1)
            if ok:
                (self.run_dir / f"{name}.pid").unlink(missing_ok=True)
                del self._services[name]
            else:
                survivors.append(f"{name} pid {svc.rec.pid}")
        if not self._services:
            (self.run_dir / STATE_FILE).unlink(missing_ok=True)
        if survivors:
            raise StackError(f"could not stop: {', '.join(survivors)}")

    @classmethod
    def attach(cls, run_dir: Path = DEFAULT_RUN_DIR) -> LocalStack:
        """A manager for a stack started by another process (``start --detach``) in ``run_dir``.

        Only PID files whose process is still the one recorded are adopted; stale ones are
        removed. ``stop()`` then works as usual.
        """
        run_dir = Path(run_dir).resolve()
        state: dict[str, Any] = {}
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            state = json.loads((run_dir / STATE_FILE).read_text())
        stack = cls(
            run_dir,
            topics=state.get("topics"),
            influx_db=str(state.get("influx_db", DEFAULT_INFLUX_DB)),
        )
        endpoints = {
            "kafka": state.get("kafka_bootstrap"),
            "influxd": state.get("influx_v1_url"),
            "victoria-metrics": state.get("influx_v2_url"),
        }
        for name, rec in _read_pid_files(run_dir).items():
            if rec.alive():
                stack._services[name] = _Service(rec, None, str(endpoints.get(name) or ""))
            else:
                (run_dir / f"{name}.pid").unlink(missing_ok=True)
        return stack

    def _refuse_if_running(self) -> None:
        for name, rec in _read_pid_files(self.run_dir).items():
            if name in self._services:
                raise StackError(f"{name} already started by this LocalStack")
            if rec.alive():
                raise StackError(
                    f"{name} (pid {rec.pid}) is already running from {self.run_dir}; "
                    "stop it first (python -m devstack.local_stack stop)"
                )
            (self.run_dir / f"{name}.pid").unlink(missing_ok=True)

    def _write_state(self) -> None:
        state = self.endpoints()
        state["processes"] = {n: s.rec.to_json() for n, s in self._services.items()}
        state["started_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_json_atomic(self.run_dir / STATE_FILE, state)

    def _start_with_retry(self, name: str, fn: Callable[[], _Service], attempts: int = 3) -> None:
        last: StackError | None = None
        for _ in range(attempts):
            try:
                self._services[name] = fn()
                return
            except StackError as exc:  # port raced away, slow start, ...
                last = exc
                if self.fixed_ports:
                    break
        assert last is not None
        raise last

    def _port(self, key: str) -> int:
        return int(self.fixed_ports.get(key) or free_port())

    def _wait(
        self,
        rec: ProcRecord,
        popen: subprocess.Popen[bytes],
        ready: Callable[[], bool],
        what: str,
        timeout: float | None = None,
    ) -> None:
        timeout = self.start_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if popen.poll() is not None:
                break
            try:
                if ready():
                    return
            except Exception as exc:  # noqa: BLE001 - probes fail while starting
                last_error = exc
            time.sleep(0.1)
        code = popen.poll()
        terminate_verified(rec, popen, timeout=3)
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=1)
        (self.run_dir / f"{rec.name}.pid").unlink(missing_ok=True)
        why = (
            f"exited with {code}"
            if code is not None
            else f"not ready after {timeout}s (last probe error: {last_error!r})"
        )
        raise StackError(f"{what} {why}; log {rec.log}:\n{log_tail(rec.log)}")

    # ---- Apache Kafka (one KRaft node) -------------------------------------------------------

    @property
    def kafka_client_config(self) -> dict[str, Any]:
        """kafka-python keyword arguments of the stack's admin (security settings; empty for PLAINTEXT)."""
        return self.kafka_security.admin.kafka_python_config() if self.kafka_security else {}

    def _kafka_properties(self, port: int, controller_port: int, data: Path, advertised_port: int) -> Path:
        listeners = (
            self.kafka_security.broker_properties(port, controller_port) if self.kafka_security else f"""\
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{advertised_port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
"""
        )
        conf = f"""\
# generated by devstack/stack.py -- do not edit
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
controller.listener.names=CONTROLLER
{listeners}log.dirs={data}
auto.create.topics.enable=true
num.partitions=1
default.replication.factor=1
# one node: internal topics with one replica and few partitions (they are created on first use)
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
# room above KAFKA_TRANSACTION_TIMEOUT_MS, as in docker-compose.yml
transaction.max.timeout.ms=3600000
group.initial.rebalance.delay.ms=0
# after a kill -9 the controller keeps the dead broker's registration until its session expires:
# a short session lets the restarted broker register within ~2 s instead of ~13 s
broker.session.timeout.ms=2000
broker.heartbeat.interval.ms=500
# ~10 MB frames (topics also get max.message.bytes, see DEFAULT_TOPIC_CONFIG)
message.max.bytes={16 * 1024 * 1024}
replica.fetch.max.bytes={16 * 1024 * 1024}
# test data carries old event timestamps: keep every record
log.retention.ms=-1
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
"""
        path = self.run_dir / "kafka.properties"
        path.write_text(conf)
        (self.run_dir / "kafka-log4j.properties").write_text(
            "log4j.rootLogger=WARN, stdout\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka.server.BrokerServer=INFO\n"
            "log4j.logger.kafka.server.KafkaRaftServer=INFO\n"
        )
        return path

    def _kafka_java(self, main_class: str, *args: str) -> list[str]:
        log4j = (self.run_dir / "kafka-log4j.properties").as_uri()
        return [_java(), *KAFKA_JVM_OPTS, f"-Dlog4j.configuration={log4j}", "-cp", kafka_classpath(), main_class, *args]

    def _start_kafka(self, ports: Mapping[str, int] | None = None) -> _Service:
        """Start the broker; format its log directory first unless it holds a formatted one."""
        port = int((ports or {}).get("kafka") or self._port("kafka"))
        controller_port = int((ports or {}).get("kafka_controller") or self._port("kafka_controller"))
        while controller_port == port:
            controller_port = free_port()
        advertised_port = int((ports or {}).get("kafka_advertised") or self.fixed_ports.get("kafka_advertised") or port)
        if advertised_port != port and self.kafka_security:
            raise StackError("kafka_advertised is for the PLAINTEXT listener only")
        data = self.run_dir / "kafka" / "data"
        data.mkdir(parents=True, exist_ok=True)
        conf = self._kafka_properties(port, controller_port, data, advertised_port)
        if not (data / "meta.properties").is_file():
            argv = self._kafka_java(
                "kafka.tools.StorageTool", "format", "--ignore-formatted", "-t", _kafka_cluster_id(), "-c", str(conf),
                *(self.kafka_security.scram_arguments() if self.kafka_security else []),
            )
            formatted = subprocess.run(argv, env=_clean_env(), capture_output=True, text=True, check=False, timeout=120)
            if formatted.returncode != 0:
                raise StackError(
                    f"kafka-storage format {data} failed ({formatted.returncode}):\n"
                    f"{(formatted.stdout + formatted.stderr)[-3000:]}"
                )
        argv = self._kafka_java("kafka.Kafka", str(conf))
        rec, popen = spawn("kafka", argv, self.run_dir, env=_clean_env(), detach=self.detach)
        bootstrap = f"127.0.0.1:{advertised_port}"

        def ready() -> bool:
            if not tcp_open("127.0.0.1", port):
                return False
            admin = admin_client(bootstrap, self.kafka_client_config)
            try:
                admin.list_topics()
                return True
            finally:
                admin.close()

        self._wait(rec, popen, ready, f"kafka on {bootstrap}", timeout=max(self.start_timeout, 90.0))
        return _Service(rec, popen, bootstrap,
                        {"kafka": port, "kafka_controller": controller_port, "kafka_advertised": advertised_port})

    def kill_kafka(self) -> None:
        """SIGKILL the broker (a crash: no clean shutdown); its log directory stays for ``restart_kafka``."""
        svc = self._services.get("kafka")
        if svc is None:
            raise StackError("kafka is not running in this LocalStack")
        if svc.rec.alive():
            os.kill(svc.rec.pid, signal.SIGKILL)
        if svc.popen is not None:
            svc.popen.wait(timeout=30)
        else:
            deadline = time.monotonic() + 30
            while svc.rec.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
        self._stopped_kafka_ports = dict(svc.ports)
        del self._services["kafka"]
        (self.run_dir / "kafka.pid").unlink(missing_ok=True)
        self._write_state()

    def restart_kafka(self) -> None:
        """Start the broker again on the same log directory and ports (after ``kill_kafka``)."""
        if "kafka" in self._services:
            raise StackError("kafka is still running: kill_kafka() first")
        ports = self._stopped_kafka_ports
        if not ports:
            raise StackError("kafka was not started and killed by this LocalStack")
        self._services["kafka"] = self._start_kafka(ports)
        self._write_state()

    def create_topics(
        self,
        topics: Mapping[str, int],
        config: Mapping[str, str] | None = None,
    ) -> None:
        """Create topics (name -> partitions) if missing; waits until metadata shows them."""
        create_topics(self.kafka_bootstrap, topics, self.topic_config if config is None else config,
                      client_config=self.kafka_client_config)

    # ---- influxd 1.x -------------------------------------------------------------------------

    def _influx_config(self, http_port: int, rpc_port: int) -> Path:
        d = self.run_dir / "influxdb"
        for sub in ("meta", "data", "wal"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        conf = f"""\
# generated by devstack/stack.py -- do not edit
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{d / "meta"}"
  retention-autocreate = true
  logging-enabled = false

[data]
  dir = "{d / "data"}"
  wal-dir = "{d / "wal"}"
  index-version = "inmem"
  query-log-enabled = false
  wal-fsync-delay = "0s"

[coordinator]
  write-timeout = "30s"

[retention]
  enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = false
  log-enabled = false
  suppress-write-log = true
  pprof-enabled = false
  unix-socket-enabled = false
  max-body-size = 0
  max-row-limit = 0

[ifql]
  enabled = false

[logging]
  level = "warn"
  suppress-logo = true

[[graphite]]
  enabled = false

[[collectd]]
  enabled = false

[[opentsdb]]
  enabled = false

[[udp]]
  enabled = false

[continuous_queries]
  enabled = false
"""
        path = self.run_dir / "influxdb.conf"
        path.write_text(conf)
        return path

    def _start_influxd(self) -> _Service:
        http_port = self._port("influx_http")
        rpc_port = self._port("influx_rpc")
        while rpc_port == http_port:
            rpc_port = free_port()
        conf = self._influx_config(http_port, rpc_port)
        argv = [_which("influxd"), "-config", str(conf)]
        env = _clean_env()
        env["HOME"] = str(self.run_dir)  # influxd falls back to ~/.influxdb for unset dirs
        rec, popen = spawn("influxd", argv, self.run_dir, env=env, detach=self.detach)
        url = f"http://127.0.0.1:{http_port}"

        def ready() -> bool:
            status, _ = http_request("GET", url + "/ping", timeout=2)
            return status == 204

        self._wait(rec, popen, ready, f"influxd on {url}")
        create_database_v1(url, self.influx_db)
        return _Service(rec, popen, url, {"influx_http": http_port, "influx_rpc": rpc_port})

    # ---- victoria-metrics --------------------------------------------------------------------

    def _start_vm(self) -> _Service:
        port = self._port("vm")
        data = self.run_dir / "vm"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            _which("victoria-metrics"),
            f"-httpListenAddr=127.0.0.1:{port}",
            f"-storageDataPath={data}",
            "-retentionPeriod=100y",
            "-dedup.minScrapeInterval=1ms",
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-loggerLevel=WARN",
        ]
        rec, popen = spawn("victoria-metrics", argv, self.run_dir, env=_clean_env(), detach=self.detach)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            status, _ = http_request("GET", url + "/health", timeout=2)
            return status == 200

        self._wait(rec, popen, ready, f"victoria-metrics on {url}")
        return _Service(rec, popen, url, {"vm": port})


def _read_pid_files(run_dir: Path) -> dict[str, ProcRecord]:
    out: dict[str, ProcRecord] = {}
    for name in SERVICES:
        p = run_dir / f"{name}.pid"
        try:
            out[name] = ProcRecord.from_json(json.loads(p.read_text()))
        except FileNotFoundError:
            continue
        except (json.JSONDecodeError, KeyError, ValueError, TypeError):
            p.unlink(missing_ok=True)  # unreadable: nothing we can safely act on
    return out
