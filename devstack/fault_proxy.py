"""An HTTP proxy in front of InfluxDB that fails writes on demand (for outage tests).

    with FaultProxy("http://127.0.0.1:8086") as proxy:   # proxy.url -> give it to the job
        proxy.fail_writes_after(5)   # the next 5 write requests pass, then every write gets a 503
        ...
        proxy.recover()              # writes pass again

Only write requests (`/write`, `/api/v2/write`) are failed; queries always pass. Requests are forwarded
whole (body, headers, status), so the job cannot tell the proxy from the server.
"""

from __future__ import annotations

import http.server
import threading
import urllib.error
import urllib.request
from types import TracebackType
from typing import Self

WRITE_PATHS = ("/write", "/api/v2/write")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class FaultProxy:
    def __init__(self, target_url: str, host: str = "127.0.0.1") -> None:
        self.target = target_url.rstrip("/")
        self._lock = threading.Lock()
        self._passes_left: int | None = None  # None = no fault armed
        self.writes_passed = 0
        self.writes_failed = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.path.split("?", 1)[0] in WRITE_PATHS and not proxy._admit_write():
                    reply = b'{"error":"injected fault: service unavailable"}'
                    self.send_response(503)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                    return
                request = urllib.request.Request(
                    proxy.target + self.path, data=body, method=self.command,
                    headers={k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP},
                )
                try:
                    with urllib.request.urlopen(request, timeout=60) as response:
                        status, headers, data = response.status, response.headers.items(), response.read()
                except urllib.error.HTTPError as error:
                    status, headers, data = error.code, error.headers.items(), error.read()
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in _HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_HEAD = _forward

        self._server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    def _admit_write(self) -> bool:
        with self._lock:
            if self._passes_left is None or self._passes_left > 0:
                if self._passes_left is not None:
                    self._passes_left -= 1
                self.writes_passed += 1
                return True
            self.writes_failed += 1
            return False

    def fail_writes_after(self, successes: int) -> None:
        """Let the next `successes` write requests through, then fail every write until recover()."""
        with self._lock:
            self._passes_left = successes

    def recover(self) -> None:
        with self._lock:
            self._passes_left = None

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
