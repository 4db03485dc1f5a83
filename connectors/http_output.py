"""HTTP output: each anonymized window's classes POSTed as JSON batches (OUTPUT=http; body in docs/contract.md).

Requests are cut exactly as the InfluxDB sink cuts its writes (connectors.influxdb.class_batches): whole
equivalence classes, a class too large for one request in parts of at least k patients. Each request
carries an ``Idempotency-Key``, a digest of (job name, group digest, window start, part index): a
window replayed after a restore sends the same requests under the same keys, so a receiver that
deduplicates on the key applies each once. 5xx, 408, 429 and connection errors are retried with
exponential backoff; any other 4xx fails at once (``HttpOutputRejected``) and the job restarts.
Errors name the status and URL, never the token. Standard library only (urllib, ssl).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import math
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from connectors.config import Settings, options_from_settings
from connectors.influxdb import class_batches, frame_tags, group_digest, sample_timestamps_ns

log = logging.getLogger(__name__)

# Statuses worth a retry: the server is busy or failed, not the request.
RETRYABLE_4XX = (408, 429)
MAX_RETRY_DELAY_SECONDS = 10.0
BODY_VERSION = 1


class HttpOutputError(RuntimeError):
    """A batch the endpoint did not accept after every attempt (5xx, connection); the message has no secret."""


class HttpOutputRejected(HttpOutputError):
    """A batch the endpoint refused for good (4xx): sending the same request again cannot succeed."""


@dataclass(frozen=True)
class HttpOutputOptions:
    """The HTTP_OUTPUT_* settings (field ``url`` = ``HTTP_OUTPUT_URL``); picklable, the token out of its repr."""

    SETTINGS_PREFIX: ClassVar[str] = "http_output_"

    url: str
    token: str = field(repr=False)
    ca_file: str
    batch_points: int
    attempts: int
    retry_seconds: float
    timeout_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpOutputOptions:
        return options_from_settings(cls, settings)


def frame_points(frames: list[Any]) -> list[dict[str, Any]]:
    """The JSON points of frames: one per finite sample, the tags and fields of its InfluxDB line."""
    points: list[dict[str, Any]] = []
    for frame in frames:
        tags = frame_tags(frame)
        fields_base: dict[str, Any] = {"imputed": bool(frame.imputed)}
        if math.isfinite(float(frame.hr_bpm)):
            fields_base["hr_bpm"] = float(frame.hr_bpm)
        values = np.asarray(frame.ecg_mv, dtype=np.float64)
        stamps = sample_timestamps_ns(int(frame.ts_ms), frame.fs, len(values)).tolist()
        for value, stamp in zip(values.tolist(), stamps, strict=True):
            if math.isfinite(value):
                points.append({"time_ns": stamp, "tags": tags, "fields": {"ecg_mv": value, **fields_base}})
    return points


def idempotency_key(job: str, group: str, window_start_ms: int, part: int) -> str:
    """The request's key: the same for the same request of a replayed window, different for any other."""
    text = f"{job}\x1f{group_digest(group)}\x1f{int(window_start_ms)}\x1f{int(part)}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class WindowRequest:
    key: str
    body: dict[str, Any]

    @property
    def points(self) -> int:
        return len(self.body["points"])


def window_requests(job: str, window: Any, max_points: int, k: int) -> Iterator[WindowRequest]:
    """The requests of one window (operators.records.WindowOutput): its classes, cut as for InfluxDB."""
    batches = list(class_batches(window.published, frame_points, max_points, k))
    digest = group_digest(window.group)
    for part, points in enumerate(batches):
        body = {
            "version": BODY_VERSION,
            "job": job,
            "group": digest,
            "window_start_ms": int(window.window_start_ms),
            "window_end_ms": int(window.window_end_ms),
            "part": part,
            "parts": len(batches),
            "points": points,
        }
        yield WindowRequest(idempotency_key(job, window.group, window.window_start_ms, part), body)


def _ssl_context(ca_file: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file or None)


class HttpBatchClient:
    """POSTs JSON bodies to one endpoint, with retries; one instance per operator (not thread-safe)."""

    def __init__(self, options: HttpOutputOptions) -> None:
        self._options = options
        self._context = _ssl_context(options.ca_file) if options.url.startswith("https://") else None
        self._headers = {"Content-Type": "application/json"}
        if options.token:
            self._headers["Authorization"] = f"Bearer {options.token}"

    def _redact(self, text: str) -> str:
        return text.replace(self._options.token, "***") if self._options.token else text

    def _post_once(self, body: bytes, key: str) -> None:
        request = urllib.request.Request(
            self._options.url, data=body, headers={**self._headers, "Idempotency-Key": key}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self._options.timeout_seconds,
                                        context=self._context) as response:
                response.read()
        except urllib.error.HTTPError as error:
            detail = self._redact(error.read().decode("utf-8", "replace")[:300])
            message = f"HTTP output POST {self._options.url} answered {error.code}: {detail}"
            if 400 <= error.code < 500 and error.code not in RETRYABLE_4XX:
                raise HttpOutputRejected(message) from None
            raise HttpOutputError(message) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            # Connection refused, resets, TLS failures, timeouts, a cut-off answer; no header in the text.
            reason = getattr(error, "reason", error)
            raise HttpOutputError(
                f"HTTP output POST {self._options.url} failed: {self._redact(str(reason))}"
            ) from None

    def post(self, body: dict[str, Any], key: str) -> None:
        """POST one batch; raises HttpOutputRejected at once on a 4xx, HttpOutputError after the last attempt."""
        data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")
        delay = self._options.retry_seconds
        for attempt in range(1, self._options.attempts + 1):
            try:
                self._post_once(data, key)
                return
            except HttpOutputRejected:
                raise
            except HttpOutputError as error:
                if attempt == self._options.attempts:
                    raise HttpOutputError(f"{error} (after {attempt} attempts)") from None
                log.warning("%s (attempt %d/%d); retrying in %.1f s", error, attempt, self._options.attempts, delay)
                time.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_DELAY_SECONDS)
