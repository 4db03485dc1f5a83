"""The running job seen through Flink's REST API (embedded mini cluster started with --web-ui-port):
its id, restarts, metrics, watermarks and how far its Kafka source has read."""

from __future__ import annotations

import math
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any


def rest_get(port: int, path: str, timeout: float = 10.0) -> Any:
    """GET a Flink REST path (e.g. ``/jobs/overview``) and decode its JSON."""
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
        return json.loads(response.read())



def running_job_id(port: int) -> str | None:
    """The jid of the one RUNNING job of the mini cluster behind `port`, None while there is none."""
    try:
        jobs = rest_get(port, "/jobs/overview")["jobs"]
    except OSError:  # REST not up yet
        return None
    running = [job["jid"] for job in jobs if job["state"] == "RUNNING"]
    assert len(running) <= 1, jobs
    return running[0] if running else None



def job_restarts(port: int, jid: str) -> int | None:
    """The job-level ``numRestarts`` metric: restarts since submission, global or of a failover
    region. None until the REST metric fetcher has it (a few seconds after the job starts)."""
    metrics = rest_get(port, f"/jobs/{jid}/metrics?get=numRestarts")
    return int(float(metrics[0]["value"])) if metrics else None



# Lines Flink's JobMaster logs whenever the job (not one task) leaves RUNNING for a restart or failure.
JOB_RESTART_PATTERN = re.compile(r"switched from state RUNNING to (?:FAILING|FAILED|RESTARTING)|"
                                 r"switched from RUNNING to (?:FAILING|FAILED|RESTARTING)")



def job_restart_lines(flink_log: str) -> list[str]:
    """Flink log lines showing a job failure/restart or a failed task (empty for a clean run)."""
    return [
        line for line in flink_log.splitlines()
        if JOB_RESTART_PATTERN.search(line) or "switched from RUNNING to FAILED" in line
        or "Recovering job" in line or "restarting the job" in line.lower()
    ]



def job_metrics(port: int) -> dict[str, float]:
    """Every `ecg.*` metric of the running job (ids `<subtask>.<operator>.ecg.<name>`), summed over
    operators and subtasks, by name."""
    jid = running_job_id(port)
    assert jid is not None, "no RUNNING job"
    totals: dict[str, float] = {}
    for vertex in rest_get(port, f"/jobs/{jid}")["vertices"]:
        base = f"/jobs/{jid}/vertices/{vertex['id']}/metrics"
        names = [m["id"] for m in rest_get(port, base) if ".ecg." in m["id"]]
        for start in range(0, len(names), 20):
            query = urllib.parse.quote(",".join(names[start : start + 20]), safe=",")
            for metric in rest_get(port, f"{base}?get={query}"):
                short = metric["id"].rsplit(".", 1)[-1]
                totals[short] = totals.get(short, 0.0) + float(metric["value"])
    return totals



def vertex_load(port: int) -> dict[str, tuple[float, float]]:
    """Per job vertex (Flink REST): busy and backpressured ms per second, max over subtasks."""
    jid = running_job_id(port)
    if jid is None:
        return {}
    load = {}
    for vertex in rest_get(port, f"/jobs/{jid}")["vertices"]:
        metrics = rest_get(port, f"/jobs/{jid}/vertices/{vertex['id']}/subtasks/metrics"
                                 "?get=busyTimeMsPerSecond,backPressuredTimeMsPerSecond&agg=max")
        # Flink reports NaN while a subtask's time cannot be measured yet (e.g. just after it started):
        # such a sample says nothing, so it counts as 0 rather than poisoning the run's maximum
        values = {m["id"]: value for m in metrics if math.isfinite(value := float(m.get("max", 0.0)))}
        load[vertex["name"][:60]] = (values.get("busyTimeMsPerSecond", 0.0),
                                     values.get("backPressuredTimeMsPerSecond", 0.0))
    return load



def vertex_watermarks(port: int) -> dict[str, int | None]:
    """Per vertex of the running job: the lowest input watermark over its subtasks (epoch ms; None
    before any watermark), from the REST API, to see where event time stops."""
    jid = running_job_id(port)
    assert jid is not None, "no RUNNING job"
    result: dict[str, int | None] = {}
    for vertex in rest_get(port, f"/jobs/{jid}")["vertices"]:
        items = rest_get(port, f"/jobs/{jid}/vertices/{vertex['id']}/watermarks")
        values = [int(float(item["value"])) for item in items]
        lowest = min(values) if values else None
        result[vertex["name"]] = None if lowest is None or lowest == -(2**63) else lowest
    return result



def stall_report(port: int) -> dict[str, dict[str, float | None]]:
    """Per vertex of the running job: its lowest input watermark and the time per second its subtasks were
    busy, idle and backpressured (the highest over subtasks), to say where a job that makes no progress
    waits. Best effort: an error is reported, not raised (this is for failure messages)."""
    try:
        jid = running_job_id(port)
        if jid is None:
            return {"job": {"running": 0.0}}
        report: dict[str, dict[str, float | None]] = {}
        watermarks = vertex_watermarks(port)
        names = ("busyTimeMsPerSecond", "idleTimeMsPerSecond", "backPressuredTimeMsPerSecond")
        for vertex in rest_get(port, f"/jobs/{jid}")["vertices"]:
            subtasks = rest_get(port, f"/jobs/{jid}/vertices/{vertex['id']}/subtasks/metrics?get={','.join(names)}")
            entry: dict[str, float | None] = {"watermark": watermarks.get(vertex["name"])}
            for metric in subtasks:
                entry[metric["id"]] = metric.get("max")
            report[vertex["name"][:60]] = entry
        return report
    except (OSError, AssertionError, KeyError, ValueError) as error:
        return {"error": {repr(error): None}}



def source_offsets(port: int) -> dict[int, int]:
    """Per partition, the offset the running job's Kafka source has read up to (REST metrics
    `...KafkaSourceReader.topic.<topic>.partition.<p>.currentOffset`; the job reads one topic, whose
    name Flink may rewrite in metric ids)."""
    jid = running_job_id(port)
    if jid is None:
        return {}
    offsets: dict[int, int] = {}
    for vertex in rest_get(port, f"/jobs/{jid}")["vertices"]:
        base = f"/jobs/{jid}/vertices/{vertex['id']}/metrics"
        names = [m["id"] for m in rest_get(port, base)
                 if ".KafkaSourceReader.topic." in m["id"] and m["id"].endswith(".currentOffset")]
        for start in range(0, len(names), 20):
            query = urllib.parse.quote(",".join(names[start : start + 20]), safe=",")
            for metric in rest_get(port, f"{base}?get={query}"):
                partition = int(metric["id"].rsplit(".partition.", 1)[1].split(".")[0])
                offsets[partition] = max(offsets.get(partition, -1), int(float(metric["value"])))
    return offsets



@dataclass
class MetricHighWater:
    """The highest value an ``ecg.*`` metric of the running job (``job_metrics``: summed over operators and
    subtasks) reached over every ``sample``, e.g. ``records_in`` for the records read so far: a restarted attempt
    counts from its checkpoint again, so the highest seen, not the latest. REST metrics are up to 10 s old
    (Flink's metric fetcher)."""

    port: int
    name: str
    highest: float = 0.0

    def sample(self) -> None:
        try:
            value = job_metrics(self.port).get(self.name)
        except (OSError, AssertionError):  # REST busy, or no RUNNING job (restarting): the next sample has it
            return
        if value is not None:
            self.highest = max(self.highest, value)



def source_drained(port: int, last_offsets: dict[int, int]) -> bool:
    """True once the source has read up to the last record of every partition."""
    try:
        offsets = source_offsets(port)
    except OSError:
        return False
    return all(offsets.get(partition, -1) >= last for partition, last in last_offsets.items())

