"""A small client of Flink's REST API (urllib only): jobs, checkpoints, savepoints, metrics and job submission
through ``/jars/upload`` + ``/jars/:id/run`` of Flink's Python driver jar."""

from __future__ import annotations

import contextlib
import json
import operator
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

PYTHON_DRIVER = "org.apache.flink.client.python.PythonDriver"
TERMINAL_STATES = frozenset({"FINISHED", "FAILED", "CANCELED"})


class FlinkRestError(RuntimeError):
    """A REST call failed; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def python_driver_jar() -> Path:
    """Flink's Python driver jar (``flink-python-*.jar``) of the pip-installed PyFlink (``pyflink/opt``)."""
    import pyflink

    home = Path(pyflink.__file__).resolve().parent
    for folder in ("opt", "lib"):
        jars = sorted((home / folder).glob("flink-python-*.jar"))
        if jars:
            return jars[-1]
    raise FlinkRestError(f"no flink-python-*.jar under {home}/opt or {home}/lib")


def local_path(location: str) -> str:
    """A ``file:`` URI Flink reports (``file:/a/b`` or ``file:///a/b``) as a path."""
    if location.startswith("file://"):
        return location[len("file://"):]
    return location.removeprefix("file:")


class FlinkRest:
    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None, *, data: bytes | None = None,
                content_type: str = "application/json", timeout: float | None = None) -> Any:
        if body is not None:
            data = json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            text = exc.read()[:4000].decode(errors="replace")
            raise FlinkRestError(f"{method} {path}: HTTP {exc.code}: {text}", exc.code) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise FlinkRestError(f"{method} {path}: {exc} (is the Flink cluster at {self.url} running?)") from exc
        return json.loads(raw) if raw else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    # ---- jobs -----------------------------------------------------------------------------------

    def jobs_overview(self) -> list[dict[str, Any]]:
        return list(self.get("/jobs/overview").get("jobs", []))

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.get(f"/jobs/{job_id}"))

    def job_state(self, job_id: str) -> str | None:
        """The job's state, or None when the cluster does not know the job (e.g. after a restart)."""
        try:
            return str(self.job(job_id)["state"])
        except FlinkRestError as exc:
            if exc.status == 404:
                return None
            raise

    def wait_for_state(self, job_id: str, states: Sequence[str], timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        state: str | None = None
        while time.monotonic() < deadline:
            state = self.job_state(job_id)
            if state is not None and state in states:
                return state
            if state in TERMINAL_STATES:
                raise FlinkRestError(f"job {job_id} is {state}, expected {'/'.join(states)}")
            time.sleep(0.5)
        raise FlinkRestError(f"job {job_id} still {state} after {timeout:.0f} s (expected {'/'.join(states)})")

    def cancel(self, job_id: str) -> None:
        self.request("PATCH", f"/jobs/{job_id}?mode=cancel")

    def checkpoints(self, job_id: str) -> dict[str, Any]:
        return dict(self.get(f"/jobs/{job_id}/checkpoints"))

    def stop_with_savepoint(self, job_id: str, target_directory: str, *, drain: bool = False,
                            timeout: float = 180.0) -> str:
        """``POST /jobs/:id/stop`` (a savepoint, then the job FINISHED), poll the trigger; the savepoint's path."""
        trigger = self.request("POST", f"/jobs/{job_id}/stop",
                               {"targetDirectory": target_directory, "drain": drain, "formatType": "CANONICAL"})
        request_id = trigger["request-id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.get(f"/jobs/{job_id}/savepoints/{request_id}")
            if status.get("status", {}).get("id") == "COMPLETED":
                operation = status.get("operation") or {}
                if "failure-cause" in operation:
                    cause = operation["failure-cause"]
                    text = cause.get("stack-trace", "") or cause.get("class", "")
                    raise FlinkRestError(f"stop with savepoint of {job_id} failed: {text[:2000]}")
                return local_path(str(operation["location"]))
            time.sleep(0.5)
        raise FlinkRestError(f"stop with savepoint of {job_id}: no result after {timeout:.0f} s")

    # ---- metrics --------------------------------------------------------------------------------

    def operator_gauges(self, job_id: str, suffixes: Sequence[str]) -> dict[str, dict[str, float]]:
        """Per suffix, the "max", "min" and "sum" over all subtasks of every vertex of the metrics whose names end
        with it (one walk over the vertices, all three aggregates per request)."""
        combiners: dict[str, Callable[[float, float], float]] = {"max": max, "min": min, "sum": operator.add}
        found: dict[str, dict[str, float]] = {}
        for vertex in self.job(job_id).get("vertices", []):
            base = f"/jobs/{job_id}/vertices/{vertex['id']}/subtasks/metrics"
            names = [m["id"] for m in self.get(base) if m["id"].endswith(tuple(suffixes))]
            if not names:
                continue
            query = urllib.parse.quote(",".join(names), safe=",")
            for metric in self.get(f"{base}?get={query}&agg=max,min,sum"):
                suffix = next(s for s in suffixes if metric["id"].endswith(s))
                seen = found.setdefault(suffix, {})
                for aggregate, combine in combiners.items():
                    with contextlib.suppress(KeyError, TypeError, ValueError):
                        value = float(metric[aggregate])
                        seen[aggregate] = combine(seen[aggregate], value) if aggregate in seen else value
        return found

    # ---- submission -----------------------------------------------------------------------------

    def upload_jar(self, jar: Path) -> str:
        """``POST /jars/upload`` (multipart); the jar id."""
        boundary = "----ecgviews" + uuid.uuid4().hex
        payload = b"".join([
            f"--{boundary}\r\n".encode(),
            f'Content-Disposition: form-data; name="jarfile"; filename="{jar.name}"\r\n'.encode(),
            b"Content-Type: application/x-java-archive\r\n\r\n",
            jar.read_bytes(),
            f"\r\n--{boundary}--\r\n".encode(),
        ])
        answer = self.request("POST", "/jars/upload", data=payload,
                              content_type=f"multipart/form-data; boundary={boundary}", timeout=120)
        return str(answer["filename"]).rsplit("/", 1)[-1]

    def uploaded_jar(self, jar: Path) -> str:
        """The id of an uploaded copy of ``jar`` (uploads it when the cluster has none). ``GET /jars`` answers 404
        on a cluster with web.submit.enable: false (measured; an upload there breaks the connection)."""
        for entry in self.get("/jars").get("files", []):
            if entry.get("name") == jar.name:
                return str(entry["id"])
        return self.upload_jar(jar)

    def run_python(self, job_file: Path, args: Sequence[str], *, savepoint: str | None = None,
                   parallelism: int | None = None, config: Mapping[str, str] | None = None,
                   timeout: float = 300.0) -> str:
        """``POST /jars/:id/run`` of the Python driver with ``-py job_file args``; the job id."""
        jar_id = self.uploaded_jar(python_driver_jar())
        body: dict[str, Any] = {"entryClass": PYTHON_DRIVER, "programArgsList": ["-py", str(job_file), *args]}
        if savepoint:
            body["savepointPath"] = savepoint
            body["allowNonRestoredState"] = False
        if parallelism:
            body["parallelism"] = parallelism
        if config:
            body["flinkConfiguration"] = dict(config)
        answer = self.request("POST", f"/jars/{jar_id}/run", body, timeout=timeout)
        return str(answer["jobid"])
