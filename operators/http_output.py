"""The job's main output with OUTPUT=http: each anonymized window POSTed as JSON batches (connectors.http_output).

Synchronous: a window's requests are all accepted before ``process_element`` returns, so a completed
checkpoint never has an unsent window; after a restore the replayed windows send the same requests
under the same idempotency keys. A request that fails for good fails the job, which restarts.
"""

from __future__ import annotations

from pyflink.datastream import ProcessFunction, RuntimeContext

from connectors.http_output import HttpBatchClient, HttpOutputOptions, window_requests
from operators.k_anonymity import WindowOptions
from operators.records import WindowOutput


class PostWindows(ProcessFunction):
    """POSTs each anonymized window's classes, whole classes per request, part by part."""

    def __init__(self, options: HttpOutputOptions, windows: WindowOptions, job: str) -> None:
        self._options = options
        self._k = windows.k_anonymity
        self._job = job
        self._client: HttpBatchClient | None = None

    def open(self, runtime_context: RuntimeContext) -> None:
        self._client = HttpBatchClient(self._options)
        metrics = runtime_context.get_metrics_group().add_group("ecg")
        self._points_posted = metrics.counter("http_points_posted")
        self._requests_posted = metrics.counter("http_requests_posted")
        self._windows = metrics.counter("windows")

    def process_element(self, value: WindowOutput, ctx: ProcessFunction.Context):  # type: ignore[no-untyped-def]
        assert self._client is not None
        for request in window_requests(self._job, value, self._options.batch_points, self._k):
            self._client.post(request.body, request.key)
            self._points_posted.inc(request.points)
            self._requests_posted.inc(1)
        self._windows.inc(1)
        return iter(())
