"""Completed checkpoints of a running job, from Flink's REST checkpoint history (`/jobs/<id>/checkpoints`).

The REST history keeps only the last `web.checkpoints.history` (10) checkpoints, so `CheckpointWatch` polls
it in a thread and keeps every completed one it sees, with the slowest barrier's start delay and alignment
(`/checkpoints/details/<id>/subtasks/<vertex>`). `spacing()` summarizes what bounds a restore's replay:
the gaps between completions and, the figure a kill -9 pays, the longest time from a checkpoint's trigger
to the next completion (a kill just before that completion restores the earlier checkpoint and replays
the input read since its trigger)."""

from __future__ import annotations

import itertools
import re
import threading
import time
from dataclasses import dataclass, field
from typing import ClassVar

from testkit.flink_rest import rest_get, running_job_id


@dataclass(frozen=True)
class CompletedCheckpoint:
    job_id: str
    checkpoint_id: int
    trigger_ms: int
    completed_ms: int  # latest acknowledgement: the checkpoint counts from here
    size_bytes: int  # checkpointed (incremental) size
    unaligned: bool
    start_delay_ms: int  # slowest barrier: trigger -> barrier at a subtask
    alignment_ms: int  # slowest alignment of a subtask
    slowest_vertex: str  # the vertex whose barrier came last (largest start delay)
    start_delays_ms: dict[str, int] = field(default_factory=dict, compare=False)  # per vertex name

    @property
    def duration_ms(self) -> int:
        return self.completed_ms - self.trigger_ms


def logged_checkpoint_times(flink_log: str, job_id: str, checkpoint_id: int) -> tuple[int, int] | None:
    """(trigger ms, completion ms) of a checkpoint from the JobManager's log lines ("Triggering checkpoint N ... @
    <ms> for job J", "Completed checkpoint N for job J (..., checkpointDuration=D ms"): for a checkpoint that
    completed between two polls of the REST history and a kill -9 right after it."""
    triggered = re.search(rf"Triggering checkpoint {checkpoint_id} \(.*?\) @ (\d+) for job {job_id}", flink_log)
    completed = re.search(rf"Completed checkpoint {checkpoint_id} for job {job_id} \(.*?checkpointDuration=(\d+) ms",
                          flink_log)
    if triggered is None or completed is None:
        return None
    trigger_ms = int(triggered.group(1))
    return trigger_ms, trigger_ms + int(completed.group(1))


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


@dataclass(frozen=True)
class Spacing:
    """Completed checkpoints of one run between `start_ms` and `end_ms` (wall clock, epoch ms)."""

    checkpoints: int
    max_gap_s: float  # start or a completion -> the next completion (or the end)
    p95_gap_s: float
    max_replay_s: float  # a checkpoint's trigger -> the next completion (or the end): the worst restore age
    max_duration_s: float
    p95_duration_s: float
    max_start_delay_s: float
    max_alignment_s: float
    max_size_mb: float

    def cells(self) -> list[str]:
        return [str(self.checkpoints), f"{self.max_gap_s:.1f}", f"{self.p95_gap_s:.1f}", f"{self.max_replay_s:.1f}",
                f"{self.max_duration_s:.1f} / {self.p95_duration_s:.1f}", f"{self.max_start_delay_s:.1f}",
                f"{self.max_alignment_s:.2f}", f"{self.max_size_mb:.1f}"]

    HEADER: ClassVar[list[str]] = [
        "completed", "max gap s", "p95 gap s", "max trigger -> next completion s", "duration max / p95 s",
        "max barrier start delay s", "max alignment s", "max size MB"]


def spacing(checkpoints: list[CompletedCheckpoint], start_ms: int, end_ms: int) -> Spacing:
    inside = sorted((c for c in checkpoints if start_ms <= c.completed_ms <= end_ms), key=lambda c: c.completed_ms)
    completions = [start_ms, *(c.completed_ms for c in inside), end_ms]
    gaps = [(b - a) / 1000 for a, b in itertools.pairwise(completions)]
    # Before the first completion a kill restarts from scratch: count that stretch from the start.
    triggers = [start_ms, *(c.trigger_ms for c in inside)]
    replays = [(b - a) / 1000 for a, b in zip(triggers, completions[1:], strict=True)]
    durations = [c.duration_ms / 1000 for c in inside]
    return Spacing(
        checkpoints=len(inside), max_gap_s=max(gaps), p95_gap_s=_percentile(gaps, 0.95), max_replay_s=max(replays),
        max_duration_s=max(durations, default=float("nan")), p95_duration_s=_percentile(durations, 0.95),
        max_start_delay_s=max((c.start_delay_ms / 1000 for c in inside), default=float("nan")),
        max_alignment_s=max((c.alignment_ms / 1000 for c in inside), default=float("nan")),
        max_size_mb=max((c.size_bytes / 1e6 for c in inside), default=float("nan")))


def _barrier_figures(port: int, job_id: str, checkpoint_id: int, vertices: dict[str, str]
                     ) -> tuple[int, int, str, dict[str, int]]:
    """(slowest start delay, slowest alignment) in ms over the job's vertices' subtasks, the name of the
    vertex with the slowest start delay, and each vertex's."""
    start_delay = alignment = 0
    slowest = ""
    delays: dict[str, int] = {}
    for vertex, name in vertices.items():
        summary = rest_get(port, f"/jobs/{job_id}/checkpoints/details/{checkpoint_id}/subtasks/{vertex}")["summary"]
        delay = delays[name] = int(summary.get("start_delay", {}).get("max", 0))
        if delay >= start_delay:
            start_delay, slowest = delay, name
        alignment = max(alignment, int(summary.get("alignment", {}).get("duration", {}).get("max", 0)))
    return start_delay, alignment, slowest, delays


@dataclass
class CheckpointWatch:
    """Polls the RUNNING job behind `port` (a new job after a resume is picked up) until `stop()`."""

    port: int
    poll_s: float = 0.5
    completed: dict[tuple[str, int], CompletedCheckpoint] = field(default_factory=dict)
    restored: dict[str, int] = field(default_factory=dict)  # job id -> checkpoint id it restored
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> CheckpointWatch:
        self._thread = threading.Thread(target=self._run, daemon=True, name="checkpoint-watch")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.poll_once()  # what completed since the last poll, if the job still answers

    def retarget(self, port: int) -> None:
        """Watch the job behind another port (a resumed job with its own web UI)."""
        self.port = port

    def checkpoints(self) -> list[CompletedCheckpoint]:
        return sorted(self.completed.values(), key=lambda c: c.completed_ms)

    def find(self, job_id: str, checkpoint_id: int) -> CompletedCheckpoint | None:
        return self.completed.get((job_id, checkpoint_id))

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.poll_once()

    def poll_once(self) -> None:
        try:
            job_id = running_job_id(self.port)
            if job_id is None:
                return
            history = rest_get(self.port, f"/jobs/{job_id}/checkpoints")
            restored = (history.get("latest") or {}).get("restored")
            if restored:
                self.restored[job_id] = int(restored["id"])
            new = [entry for entry in history.get("history", [])
                   if entry.get("status") == "COMPLETED" and not entry.get("is_savepoint")
                   and (job_id, int(entry["id"])) not in self.completed]
            if not new:
                return
            vertices = {vertex["id"]: vertex["name"] for vertex in rest_get(self.port, f"/jobs/{job_id}")["vertices"]}
            for entry in new:
                start_delay, alignment, slowest, delays = _barrier_figures(
                    self.port, job_id, int(entry["id"]), vertices)
                self.completed[(job_id, int(entry["id"]))] = CompletedCheckpoint(
                    job_id=job_id, checkpoint_id=int(entry["id"]), trigger_ms=int(entry["trigger_timestamp"]),
                    completed_ms=int(entry["latest_ack_timestamp"]),
                    size_bytes=int(entry.get("checkpointed_size", entry.get("state_size", 0))),
                    unaligned="UNALIGNED" in str(entry.get("checkpoint_type", "")),
                    start_delay_ms=start_delay, alignment_ms=alignment, slowest_vertex=slowest,
                    start_delays_ms=delays)
        except (OSError, ValueError, KeyError, AssertionError):  # a job going down between two requests
            return


def now_ms() -> int:
    return int(time.time() * 1000)

