"""OUTPUT=http end to end: the job POSTs its windows to a local receiver that deduplicates on the
Idempotency-Key and refuses requests for a while mid-run (503, then connections closed without an answer).
The job retries, fails, restarts from its checkpoint and replays; the receiver ends with exactly the
requests of the reference model (same keys, same bodies), each class of every request it received
holding >= k pseudonyms, and the bearer token never in the job's log."""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from connectors.http_output import window_requests
from devstack.simulator import SimConfig, generate_messages, produce
from operators.records import WindowOutput
from testkit.jobs import JobProcess, wait_until
from testkit.reference import anonymized_windows
from tests.integration.support import IsolatedRun

START_MS = 1_763_812_800_000
K = 5
JOB = "http-output-test"
BATCH_POINTS = 4000
TOKEN = "http-output-token-5a4b3c2d1e0f99887766"
ACCEPT_BEFORE_OUTAGE = 6  # distinct requests accepted before the receiver goes down
OUTAGE_SECONDS = 12.0


class DeduplicatingReceiver:
    """Applies each Idempotency-Key once; down (503, then dropped connections) for a while mid-run."""

    def __init__(self) -> None:
        self.bodies: dict[str, dict[str, Any]] = {}
        self.deliveries = 0
        self.refused = 0
        self.small_classes: list[tuple[str, str, int]] = []
        self.bad_auth = 0
        self.outage_until: float | None = None
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                key = self.headers.get("Idempotency-Key", "")
                now = time.monotonic()
                with receiver.lock:
                    if receiver.outage_until is None and len(receiver.bodies) >= ACCEPT_BEFORE_OUTAGE:
                        receiver.outage_until = now + OUTAGE_SECONDS
                    down = receiver.outage_until is not None and now < receiver.outage_until
                    if down:
                        receiver.refused += 1
                        dropped = now > receiver.outage_until - OUTAGE_SECONDS / 2
                    else:
                        receiver.accept(key, json.loads(body), self.headers.get("Authorization", ""))
                if down and dropped:
                    self.close_connection = True  # no answer at all: the client sees a dropped connection
                    return
                self.send_response(503 if down else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/windows"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def accept(self, key: str, body: dict[str, Any], authorization: str) -> None:
        self.deliveries += 1
        self.bad_auth += authorization != f"Bearer {TOKEN}"
        classes: dict[tuple[str, ...], set[str]] = {}
        for point in body["points"]:
            tags = point["tags"]
            labels = tuple(f"{name}={tags[name]}" for name in sorted(tags) if name not in ("pid", "lead"))
            classes.setdefault(labels, set()).add(tags["pid"])
        self.small_classes += [(key, ",".join(c), len(p)) for c, p in classes.items() if len(p) < K]
        if key in self.bodies:
            assert self.bodies[key] == body, f"key {key} replayed with another body"
        self.bodies.setdefault(key, body)

    def points(self) -> int:
        with self.lock:
            return sum(len(body["points"]) for body in self.bodies.values())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_http_output_is_exact_after_an_outage(isolated_run: IsolatedRun, tmp_path: Path) -> None:
    run, stack = isolated_run, isolated_run.stack
    config = SimConfig(patients=20, duration_s=40, start_ms=START_MS, sites=2, partitions=4, seed=5,
                       end_of_stream=True)
    messages = list(generate_messages(config))
    expected = {
        request.key: request.body
        for group, start, result in anonymized_windows(messages, k=K)
        for request in window_requests(JOB, WindowOutput(group, start, start + 5000, result.published, None),
                                       BATCH_POINTS, K)
    }
    expected_points = sum(len(body["points"]) for body in expected.values())
    assert len(expected) > 2 * ACCEPT_BEFORE_OUTAGE and expected_points > 100_000
    assert any(body["parts"] > 1 for body in expected.values())
    # The second half (and the end-of-stream marker) is produced during the outage, as live input: the
    # restored job has records left to read.
    cut = START_MS + 20_000
    first_half = [m for m in messages if m.timestamp_ms < cut]
    report = produce(first_half, stack.kafka_bootstrap, run.raw_topic)
    assert report.errors == 0, report.error_samples

    receiver = DeduplicatingReceiver()
    job = JobProcess(
        run.job_args("--k-anonymity", str(K), "--cardio-branch", "false", "--job-name", JOB,
                     "--output", "http", "--http-output-url", receiver.url,
                     "--http-output-batch-points", str(BATCH_POINTS),
                     "--http-output-attempts", "3", "--http-output-retry-seconds", "0.2",
                     "--restart-attempts", "30", "--restart-max-backoff-seconds", "4"),
        # In the environment: at the task failure Beam logs the workers' environment, which must not hold it.
        tmp_path / "job.log", env={**os.environ, "HTTP_OUTPUT_TOKEN": TOKEN},
    )
    try:
        wait_until(lambda: receiver.refused > 0, 180, "the outage", job=job)
        report = produce(messages[len(first_half):], stack.kafka_bootstrap, run.raw_topic)
        assert report.errors == 0, report.error_samples
        wait_until(lambda: receiver.points() >= expected_points, 300, f"{expected_points} points posted", job=job)
        time.sleep(5)  # more checkpoint intervals: nothing new may arrive
        with receiver.lock:
            received = {key: json.loads(json.dumps(body)) for key, body in receiver.bodies.items()}
            refused, deliveries = receiver.refused, receiver.deliveries
        assert refused > 0, "the outage never happened"
        assert set(received) == set(expected)
        assert received == json.loads(json.dumps(expected))
        assert receiver.small_classes == []
        assert receiver.bad_auth == 0
        assert deliveries >= len(expected)
        assert "switched from state RUNNING to RESTARTING" in job.flink_log_text(), "the outage outlasts the retries"
        assert "'http_output_token': '***'" in job.log_text(), "control: the token was set, and masked"
        assert TOKEN not in job.log_text() and TOKEN not in job.flink_log_text()
        print(f"requests: {len(expected)}, deliveries: {deliveries}, refused: {refused}")
    finally:
        job.stop()
        receiver.close()
