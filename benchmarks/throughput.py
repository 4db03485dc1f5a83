"""Throughput of the whole job side by side with its ceilings, on one pre-produced data set.

    .venv/bin/python -m benchmarks.throughput [--patients 200] [--duration 120] [--input raw|mixed]
        [--runs "a,b,b',b'',c,d,e,f"] [--variant RUN:NAME=FLAGS ...]
        [--latency [--latency-loads 25,50,90] [--latency-seconds 60] [--max-rate SAMPLES_PER_S]]
        [--minutes N] [--paced-variant LOAD:NAME=FLAGS ...] [--py-spy DIR] [--png FILE] [--json FILE]

One topic (4 partitions) is filled once with `--patients` x `--duration` s of 1 s frames at 250 Hz (MIT-BIH
record 208) plus end-of-stream markers: `--input raw` (default) frames without `hr_bpm`, the waveform only, as
many bedside devices send it (the job derives the heart rate of every frame); `--input mixed` half of the
devices send `hr_bpm`. Then, in this one invocation and on that same topic:

  (a) job -> InfluxDB        the full job with its defaults (cardio branch on: flink_jobs/cardio_job.py runs
                             next to it as its own job) into the local influxd (v1 /write)
  (b) job -> discard         the same into a tiny HTTP server that counts and discards writes (204)
  (b') cardio branch off     (b) with --cardio-branch false: the anonymization job alone
  (b'') cardio branch alone  flink_jobs/cardio_job.py alone on the topic; its rate = valid frames its detector
                             consumed per second (its `cardio_frames_in` counter over Flink REST), clock from
                             the first counted frame to the last
  (c) Flink ceiling          a plain PyFlink job on the same topic: the job's Kafka source, watermarks and
                             checkpoints, one Python step, 5 s event-time tumbling windows, a count per
                             partition and window (benchmarks/plain_window_count_job.py)
  (d) InfluxDB ceiling       the same class-whole requests written straight to the same influxd over as many
                             connections at once as the job's sink uses (INFLUX_WRITERS default), no Flink
  (e) single process         one kafka-python consumer applying the same privacy core (parse_frame ->
                             to_core_frame -> anonymize_window -> class_requests) and writing the same points
  (f) standalone cluster     the anonymization job (cardio branch off: on a cluster the branch is a second
                             `flink run`) submitted with `flink run` to a standalone session cluster
                             (1 JobManager, 1 TaskManager with 2 slots) started for this run

--py-spy DIR records the Python processes of every Flink run (py-spy, collapsed stacks) over the run's clock and
prints their top functions: with the busy / backpressured ms per vertex, the profile of what bounds a run.

--variant repeats (a), (b), (b'), (b'') or (f) with more job flags (e.g. 'f:p2=--parallelism 2'), or (d) with
'--writers N' (concurrent writers) / '--gzip LEVEL' (gzip request bodies), in the same invocation.

A Flink run's clock starts when the sink has delivered its first points and stops when it has every
expected point, so JVM and Python worker start-up are not counted. CPU = user + system seconds of every
process of the run (JVM(s) and Python workers; for (d)/(e) the writer process). Every run
must account for every record: the points (a, b, b', d, e) or frames (b'', c) are checked exactly against the
reference model (testkit.reference.expected_output), otherwise the benchmark fails. Before a Flink
run's job is stopped, its checkpoint statistics are read from the REST API (/jobs/<id>/checkpoints).

--latency (paced runs, after the runs above): the full job (a, cardio branch on) into the local influxd while
devices stream in real time (frames stamped with the wall clock, sent when their last sample is due), as many
devices as make 25 / 50 / 90 % of (a)'s samples/s of this invocation (or of --max-rate). Per load: window end -> last
point queryable in InfluxDB (benchmarks.event_time_latency) p50 / p99 / max, the job's RSS every 5 s
(first vs last minute) and its checkpoints. --minutes N adds one such run of N minutes at --memory-load %.
End-of-stream markers close the last windows; every window must then hold exactly its frames' samples.
--paced-variant repeats one paced run with more job flags (e.g. '50:ooo 1 s=--max-out-of-orderness-seconds 1').
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from benchmarks.event_time_latency import latency_summary, poll_window_completion, window_point_counts
from connectors.config import PROJECT_ROOT, SETTINGS
from connectors.influxdb import InfluxV1Writer, class_requests
from contract.frames import EcgFrame, parse_frame
from devstack.flink_cluster import FlinkCluster
from devstack.influx_queries import count_points_v1, create_database_v1
from devstack.kafka_admin import create_topics
from devstack.processes import free_port
from devstack.simulator import SimConfig, SimMessage, generate_messages, produce
from devstack.stack import LocalStack
from hierarchy.loader import load_hierarchy
from privacy.intake import IntakeOptions, to_core_frame
from privacy.kanonymity import AnonymizationConfig, KeyState, anonymize_window
from privacy.model import Frame
from privacy.pseudonym import suppression_token_key
from testkit.flink_rest import job_metrics, rest_get, running_job_id, vertex_load
from testkit.jobs import TEST_SECRET, JobProcess, branch_args, job_args, wait_until
from testkit.reference import anonymized_windows, expected_output

MEASUREMENT = "ecg_anonymized"
PARTITIONS = 4
WINDOW_MS = 5000
OUT_OF_ORDERNESS_MS = 2000
BATCH_POINTS = 20000  # INFLUX_BATCH_POINTS default
START_MS = 1_763_812_800_000
RUN_NAMES = {
    "a": "(a) job -> InfluxDB",
    "b": "(b) job -> discard",
    "b'": "(b') job -> discard, cardio branch off",
    "b''": "(b'') cardio branch alone",
    "c": "(c) PyFlink window count",
    "d": "(d) InfluxDB ceiling",
    "e": "(e) single process",
    "f": "(f) job -> InfluxDB, standalone cluster, cardio branch off",
}
# --input: the share of devices that send their own hr_bpm (the rest: the waveform only).
HR_FRACTIONS = {"raw": 0.0, "mixed": 0.5}
# The job sink's connections per window by default: run (d) writes over as many.
JOB_WRITERS = int(next(setting.default for setting in SETTINGS if setting.env == "INFLUX_WRITERS") or 1)
JOB_FILE = PROJECT_ROOT / "flink_jobs" / "ecg_anonymization_job.py"


@dataclass
class RunResult:
    name: str
    seconds: float
    frames: int
    samples: int
    cpu_seconds: float
    peak_rss_mb: float
    points: int = 0
    expected: int = 0
    checkpoints: dict[str, float] = field(default_factory=dict)  # checkpoint_stats() at the end of a Flink run
    notes: dict[str, Any] = field(default_factory=dict)

    # A tiny data set can be delivered in one go, before the clock of a Flink run starts: rates are nan.
    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.frames else float("nan")

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.samples else float("nan")

    @property
    def cpu_s_per_million_samples(self) -> float:
        return self.cpu_seconds / (self.samples / 1e6) if self.samples else float("nan")


# --- process accounting --------------------------------------------------------------------------------


def session_pids(session_id: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == session_id:  # fields after the command: state ppid pgrp session ...
                pids.append(int(entry))
    return pids


def _stat_cpu_seconds(stat_path: Path) -> tuple[str, float]:
    """(name, user + system CPU seconds) from a /proc `stat` file (a process's or a thread's); OSError if gone."""
    stat = stat_path.read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return stat[stat.index("(") + 1:stat.rindex(")")], (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Iterable[int]) -> float:
    """user + system CPU seconds of the live processes `pids` (the job's JVM and Python workers)."""
    total = 0.0
    for pid in pids:
        try:
            total += _stat_cpu_seconds(Path(f"/proc/{pid}/stat"))[1]
        except OSError:
            continue
    return total


def _thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of `pid` by its name (as /proc shows it: 15 characters)."""
    by_name: dict[str, float] = defaultdict(float)
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name, seconds = _stat_cpu_seconds(task / "stat")
        except OSError:
            continue
        by_name[name] += seconds
    return by_name


def cpu_seconds_by_kind(pids: Iterable[int]) -> dict[str, float]:
    """`cpu_seconds` by kind of work, to see which side of a Flink job bounds it: the JVMs' JIT compiler threads
    ("jvm jit": a short run pays the JVM's warm-up), their garbage collector ("jvm gc"), their other threads ("jvm":
    the tasks, network, RPC, REST) and the Python processes ("python": the job's client and its Python workers)."""
    by_kind: dict[str, float] = defaultdict(float)
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != "java":
                by_kind["python"] += cpu_seconds([pid])
                continue
            threads = _thread_cpu_seconds(pid)
        except OSError:
            continue
        for name, seconds in threads.items():
            kind = ("jvm jit" if name.startswith(("C1 Compiler", "C2 Compiler"))
                    else "jvm gc" if name.startswith(("GC Thread", "G1 ")) else "jvm")
            by_kind[kind] += seconds
    return dict(by_kind)


def rss_mb_by_process(pids: Iterable[int]) -> dict[str, float]:
    """RSS of each live process of `pids`, named "<name> <pid> <end of its command line>" (java: a Flink
    JVM; python: the job's client and the Python workers), to see which one grows."""
    by_process: dict[str, float] = {}
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if "VmRSS" in fields:
            name = f"{fields['Name'].strip()} {pid} {command.strip()[-60:]}"
            by_process[name] = int(fields["VmRSS"].split()[0]) / 1024
    return by_process


def rss_mb(pids: Iterable[int]) -> float:
    return sum(rss_mb_by_process(pids).values())


@dataclass
class Watched:
    """What a Flink run is watched through: whether its job still runs, its log, and its processes."""

    alive: Callable[[], bool]
    log_tail: Callable[[], str]
    pids: Callable[[], list[int]]

    def until(self, condition: Callable[[], Any], timeout: float, what: str, poll: float = 1.0) -> Any:
        """wait_until `condition`, failing at once (with the log) if the job stops running."""

        def checked() -> Any:
            if not self.alive():
                raise AssertionError(f"job stopped while waiting for {what}:\n{self.log_tail()}")
            return condition()

        return wait_until(checked, timeout, what, poll=poll)


def embedded(job: JobProcess) -> Watched:
    """An embedded mini cluster: the job's process session (JVM, client, Python workers)."""
    return Watched(job.alive, lambda: job.log_text()[-3000:], lambda: session_pids(job.process.pid))


def on_cluster(cluster: FlinkCluster, job_id: str) -> Watched:
    """A job on a standalone cluster: the JobManager, the TaskManagers and their Python workers."""

    def log_tail() -> str:
        return "\n".join(f"--- {log.name}\n" + log.read_text(errors="replace")[-1500:]
                         for log in sorted(cluster.log_dir.glob("*.log")))

    return Watched(lambda: cluster.job_state(job_id) in ("CREATED", "INITIALIZING", "RUNNING"), log_tail,
                   cluster.process_tree)


# --- py-spy on the Python side of a Flink run -----------------------------------------------------------

PY_SPY = PROJECT_ROOT / ".venv" / "bin" / "py-spy"


class PySpyProfile:
    """`py-spy record` (raw collapsed stacks) of every Python process of a run -- the job's client, which
    runs the loopback Python workers, the cardio branch's job next to it, or process-mode workers --
    from the start of the run's clock to its end. Sampling costs the run a little CPU: compare rates of
    profiled runs with each other only."""

    def __init__(self, directory: Path, run_name: str, pids: Iterable[int], rate: int = 50) -> None:
        import re
        import subprocess

        directory.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^a-z0-9]+", "-", run_name.lower()).strip("-")
        self.outputs: list[Path] = []
        self._recorders: list[subprocess.Popen[bytes]] = []
        for pid in pids:
            try:
                if not Path(f"/proc/{pid}/comm").read_text().startswith("python"):
                    continue
                command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            role = next((part.decode().rsplit(".", 1)[-1] for part in command if part.startswith(b"flink_jobs.")
                         or part.startswith(b"benchmarks.")), "worker")
            output = directory / f"{stem}-{role}-{pid}.txt"
            self.outputs.append(output)
            self._recorders.append(subprocess.Popen(
                [str(PY_SPY), "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw", "--nonblocking",
                 "--output", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(self) -> dict[str, Any]:
        """Stops the recorders (py-spy writes its file on SIGINT); per process the top functions."""
        import signal

        for recorder in self._recorders:
            recorder.send_signal(signal.SIGINT)
        for recorder in self._recorders:
            try:
                recorder.wait(timeout=30)
            except Exception:  # noqa: BLE001 -- a profile is a diagnostic, never the run's failure
                recorder.kill()
        return {output.name: profile_summary(output) for output in self.outputs if output.exists()}


def profile_summary(collapsed: Path, top: int = 12) -> dict[str, Any]:
    """Samples of a py-spy raw (collapsed) profile: total, and the functions with the most samples on the
    stack (inclusive) and at its top (self), as "function (file)" -> % of the samples."""
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame.split(":")[0] + ")" if "(" in frame else frame for frame in stack.split(";")]
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            leaf[frames[-1]] += count
    share: dict[str, Any] = {"samples": total}
    if total:
        share["inclusive_pct"] = {f: round(100 * n / total, 1) for f, n in inclusive.most_common(top * 3)
                                  if "pyflink" not in f and "apache_beam" not in f and "threading" not in f}
        share["self_pct"] = {f: round(100 * n / total, 1) for f, n in leaf.most_common(top)}
    return share


# --- the data set and its reference ------------------------------------------------------------------


def dataset(patients: int, duration: int, sites: int, hr_fraction: float) -> tuple[SimConfig, list[SimMessage]]:
    config = SimConfig(patients=patients, duration_s=duration, start_ms=START_MS, sites=sites, seed=11, fs=250.0,
                       end_of_stream=True, partitions=PARTITIONS, hr_fraction=hr_fraction)
    return config, list(generate_messages(config))


def published_windows(messages: Iterable[SimMessage], k: int) -> list[list[Any]]:
    """Per (site, window) in event-time order, the frames the job publishes: the pure core, batch."""
    return [result.published for _, _, result in anonymized_windows(messages, k=k, window_seconds=WINDOW_MS // 1000)]


# --- (b): the discarding sink -------------------------------------------------------------------------


class DiscardingInflux:
    """Accepts /write and /api/v2/write, counts the lines of `measurement`, discards them, answers 204."""

    def __init__(self) -> None:
        self.points = 0
        self.requests = 0
        self.frames_counted = 0  # run (c): POST /count with a window's frame count
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/count":
                    with lock:
                        outer.frames_counted += int(body)
                    self.send_response(204)
                    self.end_headers()
                    return
                if self.path.split("?")[0] not in ("/write", "/api/v2/write"):
                    self.send_response(404)
                    self.end_headers()
                    return
                lines = body.count(b"\n" + MEASUREMENT.encode() + b",") + int(body.startswith(MEASUREMENT.encode()))
                with lock:
                    outer.points += lines
                    outer.requests += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- Flink runs (a), (b), (c) ---------------------------------------------------------------------------


def checkpoint_stats(port: int) -> dict[str, float]:
    """The running job's completed checkpoints so far (Flink REST /jobs/<id>/checkpoints): how many (and
    failed), end-to-end duration avg / max / latest in ms, full state size max / latest and the latest
    checkpointed (incremental) size in MB. {} while the REST API or the job is not up."""
    try:
        jid = running_job_id(port)
        if jid is None:
            return {}
        stats = rest_get(port, f"/jobs/{jid}/checkpoints")
    except OSError:
        return {}
    completed = int(stats["counts"]["completed"])
    result: dict[str, float] = {"completed": completed, "failed": int(stats["counts"]["failed"])}
    if completed:
        summary, latest = stats["summary"], stats["latest"]["completed"]
        megabytes = 1 / (1 << 20)
        result |= {"avg_ms": float(summary["end_to_end_duration"]["avg"]),
                   "max_ms": float(summary["end_to_end_duration"]["max"]),
                   "latest_ms": float(latest["end_to_end_duration"]),
                   "max_state_mb": summary["state_size"]["max"] * megabytes,
                   "latest_state_mb": latest["state_size"] * megabytes,
                   "latest_checkpointed_mb": latest["checkpointed_size"] * megabytes}
    return result


def completed_checkpoint_stats(name: str, port: int, watched: Watched) -> dict[str, float]:
    """checkpoint_stats once the job has completed at least one checkpoint (a short run may end before
    its first; waiting for it is not on the run's clock)."""
    return dict(watched.until(lambda: (stats := checkpoint_stats(port)).get("completed") and stats, 120,
                              f"{name}: a completed checkpoint", poll=0.5))


def _timed_flink_run(name: str, watched: Watched, done: Callable[[], int], expected: int, frames: int,
                     samples: int, timeout: float, port: int, cardio_port: int | None = None,
                     py_spy: Path | None = None) -> RunResult:
    """The clock starts at the first points the sink delivers (JVM, Python workers and the first window
    are not counted) and stops when all expected points are there; the rate covers the points between.
    CPU: of the processes alive at both ends (the job's are). `cardio_port`: the REST port of the cardio
    branch's job running next to it (its vertices join the load profile, prefixed "cardio: ", and the
    frames it had consumed when the clock stopped go into the notes). `py_spy`: a folder for py-spy profiles
    of the run's Python processes over the clock's span (their top functions go into the notes)."""
    peak_rss = 0.0
    first = watched.until(done, 300, f"{name}: first points", poll=0.1)
    pids = watched.pids()
    profile = PySpyProfile(py_spy, name, pids) if py_spy is not None else None
    started, cpu_start, kinds_start = time.monotonic(), cpu_seconds(pids), cpu_seconds_by_kind(pids)
    deadline = started + timeout
    got = first
    load: dict[str, list[tuple[float, float]]] = defaultdict(list)
    while got < expected and time.monotonic() < deadline:
        peak_rss = max(peak_rss, rss_mb(watched.pids()))
        for prefix, rest_port in (("", port), ("cardio: ", cardio_port)):
            if rest_port is None:
                continue
            try:  # what bounds the run: the vertex busy ~1000 ms/s while the ones before it are backpressured
                for vertex, busy_backpressured in vertex_load(rest_port).items():
                    load[prefix + vertex].append(busy_backpressured)
            except (OSError, KeyError):
                pass
        if not watched.alive():
            raise AssertionError(f"{name}: job stopped\n{watched.log_tail()}")
        time.sleep(0.1)
        got = done()
    seconds = max(time.monotonic() - started, 1e-3)
    cpu = cpu_seconds(pids) - cpu_start
    notes: dict[str, Any] = {"cpu_s_by_kind": {kind: round(value - kinds_start.get(kind, 0.0), 2)
                                               for kind, value in cpu_seconds_by_kind(pids).items()}}
    if profile is not None:
        notes["py_spy"] = profile.stop()
    if got != expected:
        raise AssertionError(f"{name}: {got} of {expected} expected points after {seconds:.0f} s")
    if cardio_port is not None:
        notes["cardio_frames_in_at_end"] = cardio_frames_in(cardio_port)
    checkpoints = completed_checkpoint_stats(name, port, watched)
    share = (expected - first) / expected  # the part of the data set the clock saw
    return RunResult(name, seconds, round(frames * share), round(samples * share), cpu, peak_rss, got, expected,
                     checkpoints,
                     {**notes, "points_before_clock": first,
                      "busy_backpressured_ms_per_s": {vertex: [round(max(b for b, _ in values)),
                                                               round(max(p for _, p in values))]
                                                      for vertex, values in load.items()}})


@dataclass
class StartedJob:
    job: JobProcess
    port: int  # REST of the job's mini cluster
    db: str
    cardio_port: int | None  # REST of the cardio branch's job next to it (None: branch off)


def start_job(stack: LocalStack, workdir: Path, topic: str, k: int, extra: list[str],
              discard: DiscardingInflux | None = None, cardio: bool = True,
              module: str = "flink_jobs.ecg_anonymization_job") -> StartedJob:
    """The full job (checkpoints every 5 s; the cardio branch on unless `cardio` is False) on `topic` into a
    fresh database of the local influxd (or into `discard`). `module` flink_jobs.cardio_job: the branch's
    job alone."""
    run, db, args = fresh_job_args(stack, workdir, topic, k, extra, cardio)
    port = free_port()
    args += ["--web-ui-port", str(port)]
    cardio_port = None
    if cardio:
        cardio_port = port if module == "flink_jobs.cardio_job" else free_port()
        args += ["--cardio-web-ui-port", str(cardio_port)]
    if discard is not None:
        args += ["--influx-url", discard.url]
    return StartedJob(JobProcess(args, workdir / f"job-{run}.log", module=module), port, db, cardio_port)


def fresh_job_args(stack: LocalStack, workdir: Path, topic: str, k: int, extra: list[str],
                   cardio: bool = False) -> tuple[str, str, list[str]]:
    """(run id, database, flags) of one full-job run: a fresh database and dead-letter topic (and anomaly and
    model topics with the cardio branch on: no global model of an earlier run reaches its detectors),
    checkpoints every 5 s."""
    run = uuid.uuid4().hex[:8]
    db = f"tp_{run}"
    create_database_v1(stack.influx_v1_url, db)
    topics = {f"tp-dlq-{run}": 1}
    branch: list[str] = ["--cardio-branch", "false"]
    if cardio:
        topics |= {f"tp-anomalies-{run}": 1, f"tp-models-{run}": 1}
        branch = ["--cardio-branch", "true", *branch_args(f"tp-anomalies-{run}", f"tp-models-{run}")]
    create_topics(stack.kafka_bootstrap, topics)
    args = job_args(stack, workdir / f"checkpoints-{run}", "--influx-db", db, "--kafka-input-topic", topic,
                    "--kafka-dlq-topic", f"tp-dlq-{run}", "--k-anonymity", str(k), *branch,
                    "--checkpoint-interval-seconds", "5", *extra)
    return run, db, args


def cardio_frames_in(port: int) -> int:
    """Valid frames the cardio branch's detector has consumed (its `cardio_frames_in` counter); 0 until its
    job runs and reports it."""
    try:
        return int(job_metrics(port).get("cardio_frames_in", 0)) if running_job_id(port) else 0
    except (OSError, KeyError, AssertionError):  # REST not up, or the job between RUNNING checks
        return 0


def influx_points(stack: LocalStack, db: str) -> Callable[[], int]:
    """The points of `db` so far; counting a large database is not free: at most twice a second."""
    last_poll = [0.0, 0]

    def points() -> int:
        if time.monotonic() - last_poll[0] >= 0.5:
            last_poll[:] = [time.monotonic(), count_points_v1(stack.influx_v1_url, db, MEASUREMENT)]
        return int(last_poll[1])

    return points


def run_job(stack: LocalStack, workdir: Path, topic: str, k: int, expected: int, frames: int, samples: int,
            extra: list[str], discard: DiscardingInflux | None = None, cardio: bool = True,
            timeout: float = 900, py_spy: Path | None = None) -> RunResult:
    """(a) (`discard` None), (b) or (b') (`cardio` False)."""
    name = RUN_NAMES["a" if discard is None else "b" if cardio else "b'"]
    started = start_job(stack, workdir, topic, k, extra, discard, cardio)
    try:
        done = (lambda: discard.points) if discard is not None else influx_points(stack, started.db)
        return _timed_flink_run(name, embedded(started.job), done, expected, frames, samples, timeout, started.port,
                                started.cardio_port, py_spy)
    finally:
        started.job.stop()


def run_cardio_alone(stack: LocalStack, workdir: Path, topic: str, k: int, frames: int, samples: int,
                     extra: list[str], timeout: float = 900, py_spy: Path | None = None) -> RunResult:
    """(b''): the cardio branch's job alone; its "points" are the valid frames its detector consumed
    (`cardio_frames_in`, Flink REST; must equal the frames sent). Its Influx statistics go to a discarding
    endpoint, as in (b)."""
    discard = DiscardingInflux()
    started = start_job(stack, workdir, topic, k, extra, discard, module="flink_jobs.cardio_job")
    try:
        port = started.port
        counted = [0.0, 0]

        def frames_in() -> int:  # a walk over every vertex's metrics: at most twice a second
            if time.monotonic() - counted[0] >= 0.5:
                counted[:] = [time.monotonic(), cardio_frames_in(port)]
            return int(counted[1])

        return _timed_flink_run(RUN_NAMES["b''"], embedded(started.job), frames_in, frames, frames, samples,
                                timeout, port, py_spy=py_spy)
    finally:
        started.job.stop()
        discard.close()


def run_plain_count(stack: LocalStack, workdir: Path, topic: str, frames: int, samples: int,
                    last_window_start: int, timeout: float = 900, py_spy: Path | None = None) -> RunResult:
    """(c): the framework's ceiling; its "points" are the frames it counted (must equal the frames sent)."""
    run = uuid.uuid4().hex[:8]
    port = free_port()
    collector = DiscardingInflux()
    args = [*job_args(stack, workdir / f"checkpoints-{run}", "--kafka-input-topic", topic,
                      "--checkpoint-interval-seconds", "5", "--web-ui-port", str(port)),
            "--collector", f"{collector.url}/count", "--last-window-start", str(last_window_start)]
    job = JobProcess(args, workdir / f"job-{run}.log", module="benchmarks.plain_window_count_job")
    try:
        return _timed_flink_run(RUN_NAMES["c"], embedded(job), lambda: collector.frames_counted, frames, frames,
                                samples, timeout, port, py_spy=py_spy)
    finally:
        job.stop()
        collector.close()


def run_on_cluster(stack: LocalStack, workdir: Path, topic: str, k: int, expected: int, frames: int, samples: int,
                   extra: list[str], timeout: float = 900, py_spy: Path | None = None) -> RunResult:
    """(f): run (a) submitted with `flink run` to a standalone session cluster (1 JobManager, 1 TaskManager
    with 2 slots, devstack.flink_cluster defaults); CPU and RSS of the JobManager, the TaskManager and its
    Python workers. The cluster starts (and stops) for this run alone."""
    run, db, args = fresh_job_args(stack, workdir, topic, k, extra)
    os.environ.setdefault("PSEUDONYM_SECRET", TEST_SECRET)  # the job's client reads it at `flink run`
    cluster = FlinkCluster(workdir / f"flink-{run}", rest_port=0, parallelism=1)
    cluster.start()
    try:
        job_id = cluster.submit(JOB_FILE, args)
        return _timed_flink_run(RUN_NAMES["f"], on_cluster(cluster, job_id), influx_points(stack, db), expected,
                                frames, samples, timeout, cluster.rest_port, py_spy=py_spy)
    finally:
        cluster.stop()


# --- (d), (e): no Flink, each in a fresh process (its own peak RSS and CPU) ----------------------------


class GzipV1Writer(InfluxV1Writer):
    """InfluxV1Writer with gzip request bodies (influxd accepts `Content-Encoding: gzip` on /write)."""

    def __init__(self, url: str, db: str, level: int) -> None:
        super().__init__(url, db)
        self._headers["Content-Encoding"] = "gzip"
        self._level = level

    def _post(self, body: bytes) -> None:
        super()._post(gzip.compress(body, self._level))


def ceiling_options(flags: list[str]) -> dict[str, int]:
    """Options of a (d) --variant: --writers N (concurrent writers, threads), --gzip LEVEL (1-9)."""
    parser = argparse.ArgumentParser(prog="(d) variant", add_help=False, exit_on_error=False)
    parser.add_argument("--writers", type=int, default=JOB_WRITERS)
    parser.add_argument("--gzip", type=int, default=0, dest="gzip_level")
    return dict(vars(parser.parse_args(flags)))


def _influx_ceiling(url: str, patients: int, duration: int, sites: int, hr_fraction: float, k: int,
                    writers: int = JOB_WRITERS, gzip_level: int = 0) -> dict[str, Any]:
    """The job's requests written straight to influxd: by `writers` threads at once (1 = in order), with
    gzip bodies at `gzip_level` (0 = plain)."""
    _, messages = dataset(patients, duration, sites, hr_fraction)
    requests = [request for frames in published_windows(messages, k)
                for request in class_requests(frames, MEASUREMENT, BATCH_POINTS, k)]
    db = "tp_" + uuid.uuid4().hex[:8]
    create_database_v1(url, db)
    writer = GzipV1Writer(url, db, gzip_level) if gzip_level else InfluxV1Writer(url, db)
    del messages
    cpu, started = time.process_time(), time.monotonic()  # the writer encodes, as the job's writer does
    if writers == 1:
        for request in requests:
            writer.write_lines(request)
    else:
        with ThreadPoolExecutor(writers) as pool:
            list(pool.map(writer.write_lines, requests))
    seconds, cpu = time.monotonic() - started, time.process_time() - cpu
    return {"seconds": seconds, "cpu": cpu, "points": count_points_v1(url, db, MEASUREMENT),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _single_process(url: str, bootstrap: str, topic: str, k: int, total_records: int) -> dict[str, Any]:
    """What a user might write instead: one consumer, windows closed by the same watermark rule."""
    from kafka import KafkaConsumer, TopicPartition

    hierarchy = load_hierarchy()
    options = IntakeOptions(TEST_SECRET.encode(), 32, hierarchy.quasi_identifiers)
    config = AnonymizationConfig(hierarchy=hierarchy, k=k, token_key=suppression_token_key(TEST_SECRET.encode()))
    db = "tp_" + uuid.uuid4().hex[:8]
    create_database_v1(url, db)
    writer = InfluxV1Writer(url, db)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=8 << 20,
                             fetch_max_bytes=32 << 20)
    assignment = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(assignment)
    consumer.seek_to_beginning(*assignment)
    pending: dict[str, dict[int, list[Frame]]] = defaultdict(lambda: defaultdict(list))
    states: dict[str, KeyState | None] = defaultdict(lambda: None)
    points = records = 0
    watermark = -(1 << 62)

    def close_windows(up_to: int) -> int:
        written = 0
        for site, by_start in pending.items():
            for start in sorted(s for s in by_start if s + WINDOW_MS - 1 <= up_to):
                result = anonymize_window(by_start.pop(start), states[site], config, start)
                states[site] = result.state
                for request in class_requests(result.published, MEASUREMENT, BATCH_POINTS, k):
                    writer.write_lines(request)
                    written += len(request)
        return written

    cpu, started = time.process_time(), time.monotonic()
    while records < total_records:
        for partition_records in consumer.poll(timeout_ms=500, max_records=2000).values():
            for record in partition_records:
                records += 1
                parsed = parse_frame(record.value, record.timestamp)
                if isinstance(parsed, EcgFrame):
                    frame, _ = to_core_frame(parsed, options)
                    assert isinstance(frame, Frame)
                    pending[parsed.group][record.timestamp - record.timestamp % WINDOW_MS].append(frame)
                watermark = max(watermark, record.timestamp - OUT_OF_ORDERNESS_MS)
        points += close_windows(watermark)
    points += close_windows(1 << 62)  # the end-of-stream markers close everything
    seconds, cpu = time.monotonic() - started, time.process_time() - cpu
    consumer.close()
    assert count_points_v1(url, db, MEASUREMENT) == points
    return {"seconds": seconds, "cpu": cpu, "points": points,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def in_fresh_process(function: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


# --- paced runs: latency and memory at a fixed input rate ------------------------------------------------

SAMPLES_PER_DEVICE_PER_S = 250  # a device streaming 1 s frames at 250 Hz in real time
RSS_SAMPLE_SECONDS = 5.0


@dataclass
class PacedResult:
    name: str
    target_samples_per_s: float
    devices: int
    seconds: int  # of signal per device, streamed in real time
    latency: dict[str, Any]  # benchmarks.event_time_latency.latency_summary: windows, p50, p99, max, first (s)
    first_point_p50_s: float  # window end -> its first points queryable (median): the rest of the latency is writing
    points: int
    expected: int
    rss_mb: list[tuple[float, float]]  # (seconds since the stream's first frame, the job's RSS)
    jvm_rss_mb: list[tuple[float, float]]  # the same, the Flink JVM alone (the rest: Python processes)
    rss_mb_by_process: list[tuple[float, dict[str, float]]]  # the same, per process (JSON only)
    checkpoints: dict[str, float]
    producer_max_lag_s: float  # how late the producer sent a frame after its last sample was due

    @property
    def rss_span_s(self) -> float:
        """First / last minute; a third of the run when it is shorter than 3 minutes."""
        return min(60.0, self.seconds / 3)

    def rss_median(self, first: bool, jvm_only: bool = False) -> float:
        span = self.rss_span_s
        chosen = [mb for t, mb in (self.jvm_rss_mb if jvm_only else self.rss_mb)
                  if (0 <= t < span if first else self.seconds - span <= t <= self.seconds)]
        return statistics.median(chosen) if chosen else float("nan")


def _produce_in_real_time(bootstrap: str, topic: str, config: SimConfig) -> dict[str, Any]:
    """Runs in a process of its own (not under the benchmark's GIL): each frame is sent when its last sample
    is due on the wall clock; returns the produce report and the largest lag behind that moment."""
    lag = [0.0]
    due = [float("inf")]

    def measured(messages: Iterable[SimMessage]) -> Iterable[SimMessage]:
        for message in messages:
            # produce() sends the previous message before asking for this one: its lag is known now.
            lag[0] = max(lag[0], time.time() - due[0])
            due[0] = (message.timestamp_ms + config.frame_ms) / 1000 if message.valid else float("inf")
            yield message

    report = produce(measured(generate_messages(config)), bootstrap, topic, realtime_frame_ms=config.frame_ms)
    return {"valid": report.valid, "control": report.control, "errors": report.errors,
            "error_samples": report.error_samples, "max_lag_s": lag[0]}


def run_paced(stack: LocalStack, workdir: Path, name: str, target_samples_per_s: float, seconds: int, k: int,
              sites: int, hr_fraction: float, extra: list[str]) -> PacedResult:
    """The full job (cardio branch on) into influxd while devices stream in real time at `target_samples_per_s`."""
    devices = max(1, round(target_samples_per_s / SAMPLES_PER_DEVICE_PER_S))
    topic = f"paced-raw-{uuid.uuid4().hex[:8]}"
    create_topics(stack.kafka_bootstrap, {topic: PARTITIONS})
    started = start_job(stack, workdir, topic, k, extra)
    job, port, db = started.job, started.port, started.db
    watched = embedded(job)
    try:
        watched.until(lambda: checkpoint_stats(port).get("completed"), 300, f"{name}: job running")
        # The first frame is due 3-8 s from now, on a window boundary: time for the producer process to start.
        start_ms = (int(time.time() * 1000) + 3000 + WINDOW_MS - 1) // WINDOW_MS * WINDOW_MS
        config = SimConfig(patients=devices, duration_s=seconds, start_ms=start_ms, sites=sites, seed=12, fs=250.0,
                           end_of_stream=True, partitions=PARTITIONS, hr_fraction=hr_fraction)
        # No churn: every device sends every frame, so each window holds devices x frames x samples points.
        expected: Counter[int] = Counter()
        for frame in range(seconds):
            expected[start_ms + frame * 1000 // WINDOW_MS * WINDOW_MS] += devices * config.samples_per_frame
        # Windows the data itself closes (the rest is closed by the end-of-stream markers): latency counts these.
        closable = {w for w in expected if w + WINDOW_MS <= max(expected) - OUT_OF_ORDERNESS_MS}
        rss: list[tuple[float, float]] = []
        jvm_rss: list[tuple[float, float]] = []
        rss_by_process: list[tuple[float, dict[str, float]]] = []
        first_point_at: dict[int, float] = {}

        def sample_rss() -> None:
            if not watched.alive():
                raise AssertionError(f"{name}: job stopped\n{watched.log_tail()}")
            now = time.time()
            if not rss or now - start_ms / 1000 - rss[-1][0] >= RSS_SAMPLE_SECONDS:
                by_process = rss_mb_by_process(watched.pids())
                jvm = sum(mb for process, mb in by_process.items() if process.startswith("java "))
                rss.append((now - start_ms / 1000, sum(by_process.values())))
                jvm_rss.append((now - start_ms / 1000, jvm))
                rss_by_process.append((now - start_ms / 1000, by_process))

        with get_context("spawn").Pool(1) as pool:  # leaving the block terminates the producer, also on errors
            producer = pool.apply_async(_produce_in_real_time, (stack.kafka_bootstrap, topic, config))
            complete_at = poll_window_completion(stack.influx_v1_url, db, expected, set(expected),
                                                 start_ms / 1000 + seconds + 300, on_poll=sample_rss,
                                                 first_point_at=first_point_at)
            produced = producer.get(timeout=120)
        checkpoints = completed_checkpoint_stats(name, port, watched)
    finally:
        job.stop()
    assert produced["errors"] == 0, produced["error_samples"]
    counts = window_point_counts(stack.influx_v1_url, db, start_ms)
    if counts != dict(expected):  # every frame's samples, in its own window, once
        wrong = {w: (counts.get(w, 0), expected.get(w, 0)) for w in set(counts) | set(expected)
                 if counts.get(w, 0) != expected.get(w, 0)}
        raise AssertionError(f"{name}: (points, expected) per window differ: {sorted(wrong.items())[:10]}")
    first_point_latencies = [first_point_at[w] - (w + WINDOW_MS) / 1000 for w in closable if w in first_point_at]
    return PacedResult(name, target_samples_per_s, devices, seconds, latency_summary(complete_at, closable),
                       statistics.median(first_point_latencies) if first_point_latencies else float("nan"),
                       sum(counts.values()), sum(expected.values()), rss, jvm_rss, rss_by_process, checkpoints,
                       produced["max_lag_s"])


# --- report ----------------------------------------------------------------------------------------------


def checkpoint_cells(checkpoints: dict[str, float]) -> tuple[str, str]:
    """("avg / max ms", "max state MB") of a run's completed checkpoints; "-" for runs without Flink."""
    if not checkpoints.get("completed"):
        return "-", "-"
    return (f"{checkpoints['avg_ms']:,.0f} / {checkpoints['max_ms']:,.0f}",
            f"{checkpoints['max_state_mb']:,.2f}")


def table(results: list[RunResult]) -> str:
    rows = ["| run | seconds | frames/s | samples/s | CPU s / M samples | peak RSS MB | checkpoint ms (avg / max) "
            "| checkpoint size MB | points (= expected) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        duration, size = checkpoint_cells(r.checkpoints)
        rows.append(f"| {r.name} | {r.seconds:.1f} | {r.frames_per_s:,.0f} | {r.samples_per_s:,.0f} | "
                    f"{r.cpu_s_per_million_samples:.1f} | {r.peak_rss_mb:,.0f} | {duration} | {size} | {r.points:,} |")
    return "\n".join(rows)


def paced_table(results: list[PacedResult]) -> str:
    rows = ["| paced run | samples/s | devices | windows | p50 s | p99 s | max s | first s | first point p50 s "
            "| RSS MB first / last minute | checkpoint ms (avg / max) | checkpoint size MB | producer max lag s "
            "| points (= expected) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        latency = r.latency
        duration, size = checkpoint_cells(r.checkpoints)
        cells = (f"{latency['p50']:.1f} | {latency['p99']:.1f} | {latency['max']:.1f} | {latency['first']:.1f}"
                 if latency["windows"] else "- | - | - | -")
        rows.append(f"| {r.name} | {r.devices * SAMPLES_PER_DEVICE_PER_S:,} | {r.devices} | {latency['windows']} | "
                    f"{cells} | {r.first_point_p50_s:.1f} | "
                    f"{r.rss_median(first=True):,.0f} / {r.rss_median(first=False):,.0f} | {duration} | "
                    f"{size} | {r.producer_max_lag_s:.1f} | {r.points:,} |")
    return "\n".join(rows)


def ratios(results: list[RunResult]) -> list[str]:
    by_key = {key: r for r in results for key, name in RUN_NAMES.items() if r.name == name}  # not the --variant runs
    # (d): the best of its runs, the --variant ones (e.g. 1 and 2 writers) included
    ceilings = [r for r in results if r.name.startswith(RUN_NAMES["d"])]
    if ceilings:
        by_key["d"] = max(ceilings, key=lambda r: r.frames_per_s)
    out = []
    for top, bottom, target in (("b", "b'", ">= 0.75: the cardio branch costs at most 25 %"), ("b", "c", ">= 0.60"),
                                ("a", "d", ">= 0.90"), ("a", "e", ">= 1.5"), ("b''", "b'", "the branch alone")):
        if top in by_key and bottom in by_key:
            value = by_key[top].frames_per_s / by_key[bottom].frames_per_s
            out.append(f"({top})/({bottom}) frames/s = {value:.2f} (target {target})")
    if "b" in by_key:
        out.append(f"(b) samples/s = {by_key['b'].samples_per_s:,.0f} (target >= 1,000,000)")
    if "f" in by_key and "a" in by_key:
        out.append(f"(f)/(a) frames/s = {by_key['f'].frames_per_s / by_key['a'].frames_per_s:.2f} "
                   "(standalone cluster vs embedded)")
    return out


def plot(results: list[RunResult], path: Path, title: str) -> None:
    import matplotlib  # requirements-refs.txt (.venv-refs); main() falls back to that interpreter

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 3.6))
    names = [r.name for r in results][::-1]
    values = [r.samples_per_s / 1e6 for r in results][::-1]
    bars = axis.barh(names, values, color="#4c72b0")
    axis.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=3)
    axis.set_xlabel("million ECG samples / s (higher is better)")
    axis.set_title(title, fontsize=10)
    axis.set_xlim(0, max(values) * 1.2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--duration", type=int, default=120, help="seconds of 1 s frames per patient")
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--input", choices=sorted(HR_FRACTIONS), default="raw",
                        help="raw: no frame carries hr_bpm (the job derives it); mixed: half of the devices send it")
    parser.add_argument("--runs", default="a,b,b',b'',c,d,e,f",
                        help="which runs, comma-separated (a, b, b', b'', c, d, e, f)")
    parser.add_argument("--job-args", default="",
                        help="extra flags for every job run (a, b, b', b'', f, paced runs), e.g. settings to try")
    parser.add_argument("--variant", action="append", default=[], metavar="RUN:NAME=FLAGS",
                        help="one more run (a), (b), (b'), (b'') or (f) with extra job flags, in the same "
                             "invocation, e.g. "
                             "'a:sync=--influx-write-queue 0', or (d) with '--writers N' / '--gzip LEVEL' "
                             "(repeatable; runs after --runs)")
    parser.add_argument("--py-spy", type=Path, default=None, metavar="DIR",
                        help="py-spy profiles (raw collapsed stacks) of the Python processes of every Flink run "
                             "into DIR, their top functions printed; sampling costs CPU: compare profiled runs only")
    parser.add_argument("--png", type=Path, default=None, help="write the plot here (e.g. docs/throughput.png)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--latency", action="store_true",
                        help="paced runs of the full job into influxd at --latency-loads %% of the maximum rate")
    parser.add_argument("--latency-loads", default="25,50,90", help="percent of the maximum rate, comma-separated")
    parser.add_argument("--latency-seconds", type=int, default=60, help="seconds streamed in real time per load")
    parser.add_argument("--max-rate", type=float, default=None,
                        help="samples/s that count as 100 %% (default: run (a)'s samples/s of this invocation)")
    parser.add_argument("--minutes", type=float, default=0,
                        help="one more paced run this long (memory over time), at --memory-load %%")
    parser.add_argument("--memory-load", type=float, default=50)
    parser.add_argument("--paced-variant", action="append", default=[], metavar="LOAD:NAME=FLAGS",
                        help="one more paced run at LOAD %% with extra job flags, e.g. "
                             "'50:ooo 1 s=--max-out-of-orderness-seconds 1' (repeatable; after the others)")
    args = parser.parse_args(argv)
    runs = [run.strip() for run in args.runs.split(",") if run.strip()]
    # (percent of the maximum rate, seconds streamed, run name, extra job flags) of each paced run
    paced_runs: list[tuple[float, int, str, list[str]]] = [
        (float(load), args.latency_seconds, f"{float(load):g} % load, {args.latency_seconds} s", [])
        for load in args.latency_loads.split(",") if load.strip()] if args.latency else []
    if args.minutes > 0:
        paced_runs.append((args.memory_load, round(args.minutes * 60),
                           f"{args.memory_load:g} % load, {args.minutes:g} min (memory)", []))
    for spec in args.paced_variant:
        head, _, flags = spec.partition("=")
        load, _, label = head.partition(":")
        try:
            paced_runs.append((float(load), args.latency_seconds,
                               f"{float(load):g} % load, {args.latency_seconds} s [{label}]", flags.split()))
        except ValueError:
            parser.error(f"--paced-variant {spec!r}: expected LOAD:NAME=FLAGS, e.g. 50:queue=--influx-write-queue 16")
    if paced_runs and args.max_rate is None and "a" not in runs:
        parser.error("--latency / --minutes need run (a) in --runs or --max-rate")

    hr_fraction = HR_FRACTIONS[args.input]
    config, messages = dataset(args.patients, args.duration, args.sites, hr_fraction)
    frames = sum(1 for m in messages if m.valid)
    samples = frames * config.samples_per_frame
    expected = expected_output(messages, k=args.k).points
    print(f"data set: {args.patients} patients x {args.duration} s, {frames:,} frames, {samples:,} samples, "
          f"{args.sites} sites, k={args.k}, input {args.input} ({hr_fraction:.0%} of the devices send hr_bpm); "
          f"expected points {expected:,}", flush=True)
    results: list[RunResult] = []
    paced: list[PacedResult] = []
    with tempfile.TemporaryDirectory(prefix="throughput-") as tmp:
        workdir = Path(tmp)
        stack = LocalStack(workdir / "stack")
        stack.start(victoria_metrics=False)
        try:
            topic = f"tp-raw-{uuid.uuid4().hex[:8]}"
            create_topics(stack.kafka_bootstrap, {topic: PARTITIONS})
            report = produce(messages, stack.kafka_bootstrap, topic)
            assert report.errors == 0, report.error_samples
            print(f"produced {report.valid + report.control:,} records in {report.seconds:.1f} s", flush=True)
            total_records = len(messages)
            del messages
            extra = args.job_args.split()
            variants = []
            for spec in args.variant:
                head, _, flags = spec.partition("=")
                run, _, label = head.partition(":")
                if run not in ("a", "b", "b'", "b''", "d", "f") or not label:
                    parser.error(f"--variant {spec!r}: expected RUN:NAME=FLAGS, RUN one of a, b, b', b'', d, f")
                if run == "d":
                    try:
                        ceiling_options(flags.split())
                    except argparse.ArgumentError as error:
                        parser.error(f"--variant {spec!r}: {error}")
                variants.append((run, label, flags.split()))
            for run, label, flags in [(run, "", []) for run in runs] + variants:
                if run in ("a", "b", "b'"):
                    discard = DiscardingInflux() if run != "a" else None
                    try:
                        result = run_job(stack, workdir, topic, args.k, expected, frames, samples, extra + flags,
                                         discard, cardio=run != "b'", py_spy=args.py_spy)
                    finally:
                        if discard:
                            discard.close()
                elif run == "b''":
                    result = run_cardio_alone(stack, workdir, topic, args.k, frames, samples, extra + flags,
                                              py_spy=args.py_spy)
                elif run == "f":
                    result = run_on_cluster(stack, workdir, topic, args.k, expected, frames, samples, extra + flags,
                                            py_spy=args.py_spy)
                elif run == "c":
                    last_window_start = START_MS + (args.duration * 1000 - 1) // WINDOW_MS * WINDOW_MS
                    result = run_plain_count(stack, workdir, topic, frames, samples, last_window_start,
                                             py_spy=args.py_spy)
                elif run in ("d", "e"):
                    if run == "d":
                        options = ceiling_options(flags)
                        out = in_fresh_process(_influx_ceiling, stack.influx_v1_url, args.patients, args.duration,
                                               args.sites, hr_fraction, args.k, options["writers"],
                                               options["gzip_level"])
                    else:
                        out = in_fresh_process(_single_process, stack.influx_v1_url, stack.kafka_bootstrap, topic,
                                               args.k, total_records)
                    result = RunResult(RUN_NAMES[run], out["seconds"], frames, samples, out["cpu"],
                                       out["peak_rss_mb"], out["points"], expected)
                    if result.points != expected:
                        raise AssertionError(f"{result.name}: {result.points} points, expected {expected}")
                else:
                    parser.error(f"unknown run {run!r}")
                if label:
                    result.name = f"{result.name} [{label}]"
                results.append(result)
                print(f"{result.name}: {result.seconds:.1f} s, {result.samples_per_s:,.0f} samples/s, "
                      f"points {result.points:,}/{result.expected:,}, checkpoints {result.checkpoints}", flush=True)
            max_rate = args.max_rate or next((r.samples_per_s for r in results if r.name == RUN_NAMES["a"]), 0.0)
            for load, seconds, name, flags in paced_runs:
                paced_result = run_paced(stack, workdir, name, max_rate * load / 100, seconds, args.k,
                                         args.sites, hr_fraction, extra + flags)
                paced.append(paced_result)
                print(f"{name}: {paced_result.devices} devices, latency {paced_result.latency}, RSS MB first / "
                      f"last {paced_result.rss_median(True):,.0f} / {paced_result.rss_median(False):,.0f} (JVM "
                      f"{paced_result.rss_median(True, jvm_only=True):,.0f} / "
                      f"{paced_result.rss_median(False, jvm_only=True):,.0f}), "
                      f"checkpoints {paced_result.checkpoints}, producer max lag "
                      f"{paced_result.producer_max_lag_s:.1f} s", flush=True)
        finally:
            stack.stop()
    print()
    print(table(results))
    for line in ratios(results):
        print(line)
    if paced:
        print()
        print(f"paced runs (100 % = {max_rate:,.0f} samples/s), window end -> last point queryable:")
        print(paced_table(paced))
    for result in results:
        if result.notes.get("cpu_s_by_kind") and result.samples:
            split = ", ".join(f"{kind} {seconds / (result.samples / 1e6):.1f}"
                              for kind, seconds in sorted(result.notes["cpu_s_by_kind"].items()))
            print(f"{result.name}: CPU s / M samples by process: {split}")
    for result in results:
        if result.notes.get("busy_backpressured_ms_per_s"):
            print(f"{result.name}: busy / backpressured ms per s, max over the run, per vertex:")
            for vertex, (busy, backpressured) in result.notes["busy_backpressured_ms_per_s"].items():
                print(f"    {busy:5} {backpressured:5}  {vertex}")
    for result in results:
        for process, summary in result.notes.get("py_spy", {}).items():
            print(f"{result.name}: py-spy {process}, {summary['samples']} samples; % on the stack (inclusive):")
            for function, percent in list(summary.get("inclusive_pct", {}).items())[:15]:
                print(f"    {percent:5.1f}  {function}")
            print("    % at the top of the stack (self):")
            for function, percent in summary.get("self_pct", {}).items():
                print(f"    {percent:5.1f}  {function}")
    if args.png:
        title = (f"{args.patients} patients x {args.duration} s, 250 Hz, {args.input} input, k={args.k}, "
                 f"{os.cpu_count()} cores")
        plotted = [r for r in results if not r.name.endswith("]")]  # the runs a-f, not their --variant runs
        try:
            plot(plotted, args.png, title)
        except ModuleNotFoundError:  # matplotlib lives in .venv-refs (requirements-refs.txt)
            import subprocess

            data = json.dumps([[r.name, r.samples_per_s] for r in plotted])
            subprocess.run([str(PROJECT_ROOT / ".venv-refs" / "bin" / "python"), "-c",
                            "import json,sys; import matplotlib; matplotlib.use('Agg');"
                            "import matplotlib.pyplot as plt; rows=json.loads(sys.argv[1])[::-1];"
                            "f,a=plt.subplots(figsize=(8,3.6)); b=a.barh([r[0] for r in rows],"
                            "[r[1]/1e6 for r in rows],color='#4c72b0');"
                            "a.bar_label(b,labels=[f'{r[1]/1e6:.2f}' for r in rows],padding=3);"
                            "a.set_xlabel('million ECG samples / s (higher is better)');"
                            "a.set_title(sys.argv[3],fontsize=10); f.tight_layout(); f.savefig(sys.argv[2],dpi=110)",
                            data, str(args.png), title], check=True)
    if args.json:
        args.json.write_text(json.dumps(
            {"runs": [r.__dict__ | {"samples_per_s": r.samples_per_s} for r in results],
             "paced": [r.__dict__ | {"rss_first_mb": r.rss_median(first=True), "rss_last_mb": r.rss_median(first=False),
                                     "rss_span_s": r.rss_span_s} for r in paced]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(PROJECT_ROOT))
    raise SystemExit(main())
