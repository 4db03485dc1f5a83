"""testkit.flink_rest.vertex_load (the load profile benchmarks.throughput prints) against a local HTTP server
that answers like Flink's REST API, including the NaN Flink reports while a subtask's busy time cannot be
measured yet (a CI run died on it in the smoke benchmark: `round(nan)`)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from testkit.flink_rest import vertex_load

REPLIES = {
    "/jobs/overview": {"jobs": [{"jid": "j1", "state": "RUNNING"}]},
    "/jobs/j1": {"vertices": [{"id": "v1", "name": "Source: frames"}, {"id": "v2", "name": "anonymize"}]},
    "/jobs/j1/vertices/v1/subtasks/metrics": [{"id": "busyTimeMsPerSecond", "max": "NaN"},
                                              {"id": "backPressuredTimeMsPerSecond", "max": 812.0}],
    "/jobs/j1/vertices/v2/subtasks/metrics": [{"id": "busyTimeMsPerSecond", "max": 990.5},
                                              {"id": "backPressuredTimeMsPerSecond", "max": "NaN"}],
}


class FlinkLikeRest(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(REPLIES[self.path.split("?")[0]]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def rest_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlinkLikeRest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_nan_samples_count_as_zero_and_finite_ones_are_kept(rest_port: int) -> None:
    assert vertex_load(rest_port) == {"Source: frames": (0.0, 812.0), "anonymize": (990.5, 0.0)}
