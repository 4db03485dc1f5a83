"""The HTTP output client against a real local server: retries, refusals, the token, TLS; and its requests."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from connectors.http_output import (
    HttpBatchClient,
    HttpOutputError,
    HttpOutputOptions,
    HttpOutputRejected,
    idempotency_key,
    window_requests,
)
from connectors.influxdb import class_requests, group_digest
from operators.records import WindowOutput
from privacy.model import PublishedFrame

TOKEN = "tok-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
START_MS = 1_763_812_800_000
BODY = {"points": [{"time_ns": 1, "tags": {"pid": "a"}, "fields": {"ecg_mv": 0.5}}]}


class Receiver:
    """A local endpoint answering each POST with the next status of ``statuses`` (then 200), recording
    requests; replies echo the request headers (as some proxies do) so a leaked token would show."""

    def __init__(self, statuses: list[int], tls: ssl.SSLContext | None = None) -> None:
        self.statuses = list(statuses)
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append((dict(self.headers.items()), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                reply = json.dumps(dict(self.headers.items())).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}/ingest"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory() -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(statuses: list[int], tls: ssl.SSLContext | None = None) -> Receiver:
        started.append(Receiver(statuses, tls))
        return started[-1]

    yield start
    for receiver in started:
        receiver.close()


def options(url: str, **changes: Any) -> HttpOutputOptions:
    base = HttpOutputOptions(url=url, token=TOKEN, ca_file="", batch_points=1000, attempts=4, retry_seconds=0.01,
                             timeout_seconds=5.0)
    return replace(base, **changes)


def test_retries_a_503_then_delivers_with_token_and_key(receiver_factory: Callable[..., Receiver]) -> None:
    receiver = receiver_factory([503, 503])
    HttpBatchClient(options(receiver.url)).post(BODY, "key-1")
    assert len(receiver.requests) == 3
    for headers, body in receiver.requests:
        assert headers["Authorization"] == f"Bearer {TOKEN}"
        assert headers["Idempotency-Key"] == "key-1"
        assert headers["Content-Type"] == "application/json"
        assert json.loads(body) == BODY


def test_gives_up_after_the_attempts_without_the_token(receiver_factory: Callable[..., Receiver]) -> None:
    receiver = receiver_factory([500] * 10)
    with pytest.raises(HttpOutputError) as caught:
        HttpBatchClient(options(receiver.url, attempts=3)).post(BODY, "k")
    assert len(receiver.requests) == 3
    assert "500" in str(caught.value) and receiver.url in str(caught.value)
    assert TOKEN not in str(caught.value) and "***" in str(caught.value)  # the echoed header, redacted


def test_a_400_fails_at_once_naming_status_and_url_never_the_token(
    receiver_factory: Callable[..., Receiver],
) -> None:
    receiver = receiver_factory([400])
    with pytest.raises(HttpOutputRejected) as caught:
        HttpBatchClient(options(receiver.url)).post(BODY, "k")
    assert len(receiver.requests) == 1
    message = str(caught.value)
    assert "400" in message and receiver.url in message
    assert TOKEN not in message and TOKEN not in repr(caught.value)
    assert TOKEN not in repr(options(receiver.url))


def test_429_is_retried(receiver_factory: Callable[..., Receiver]) -> None:
    receiver = receiver_factory([429])
    HttpBatchClient(options(receiver.url)).post(BODY, "k")
    assert len(receiver.requests) == 2


def test_connection_refused_is_retried_then_fails(receiver_factory: Callable[..., Receiver]) -> None:
    receiver = receiver_factory([])
    url = receiver.url
    receiver.close()
    with pytest.raises(HttpOutputError) as caught:
        HttpBatchClient(options(url, attempts=2)).post(BODY, "k")
    assert url in str(caught.value) and "after 2 attempts" in str(caught.value)
    assert not isinstance(caught.value, HttpOutputRejected)


def test_no_authorization_header_without_token(receiver_factory: Callable[..., Receiver]) -> None:
    receiver = receiver_factory([])
    HttpBatchClient(options(receiver.url, token="")).post(BODY, "k")
    assert "Authorization" not in receiver.requests[0][0]


# ---- TLS with a CA made here --------------------------------------------------------------------------------


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(server_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return ca_path, cert_path, key_path


def test_tls_trusts_the_configured_ca_only(receiver_factory: Callable[..., Receiver], tmp_path: Path) -> None:
    ca_path, cert_path, key_path = _certificates(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert_path, key_path)
    receiver = receiver_factory([], tls=server_tls)
    assert receiver.url.startswith("https://")

    HttpBatchClient(options(receiver.url, ca_file=str(ca_path))).post(BODY, "k")
    assert len(receiver.requests) == 1 and receiver.requests[0][0]["Authorization"] == f"Bearer {TOKEN}"

    # Without the CA the server is not trusted: nothing reaches it, and the token is never sent.
    with pytest.raises(HttpOutputError, match="CERTIFICATE_VERIFY_FAILED"):
        HttpBatchClient(options(receiver.url, attempts=1)).post(BODY, "k")
    assert len(receiver.requests) == 1


# ---- the requests of a window -------------------------------------------------------------------------------


def _frame(pid: str, label: str, second: int, samples: int = 4) -> PublishedFrame:
    values = np.linspace(-0.5, 0.5, samples)
    values[1] = np.nan  # a suppressed sample: no point, as in InfluxDB
    return PublishedFrame(pid=pid, lead="II", ts_ms=START_MS + 1000 * second, fs=250.0, level=3,
                          qi={"age": label, "sex": "*", "zip": "1****"}, ecg_mv=values, hr_bpm=70.0,
                          imputed=False)


def _window(group: str = "ward-7 Cardiology") -> WindowOutput:
    frames = [_frame(f"p{i}", "50-54" if i < 6 else "60-64", s) for i in range(12) for s in range(5)]
    return WindowOutput(group=group, window_start_ms=START_MS, window_end_ms=START_MS + 5000, published=frames,
                        metrics=None)


def test_window_requests_cut_as_influxdb_with_stable_distinct_keys() -> None:
    window = _window()
    requests = list(window_requests("job-a", window, max_points=100, k=5))
    lines = list(class_requests(window.published, "m", 100, 5))
    assert [request.points for request in requests] == [len(request) for request in lines]
    assert len(requests) >= 2
    assert [r.key for r in requests] == [idempotency_key("job-a", window.group, START_MS, i)
                                         for i in range(len(requests))]
    assert len({r.key for r in requests}) == len(requests)
    assert [r.key for r in window_requests("job-a", window, 100, 5)] == [r.key for r in requests]  # a replay
    assert {r.key for r in window_requests("job-b", window, 100, 5)}.isdisjoint(r.key for r in requests)
    for request in requests:
        body = request.body
        assert body["group"] == group_digest(window.group) and body["parts"] == len(requests)
        assert (body["window_start_ms"], body["window_end_ms"]) == (START_MS, START_MS + 5000)
        classes: dict[str, set[str]] = {}
        for point in body["points"]:
            tags = point["tags"]
            classes.setdefault(tags["age"], set()).add(tags["pid"])
            assert set(point["fields"]) == {"ecg_mv", "hr_bpm", "imputed"}
            assert set(tags) == {"pid", "lead", "level", "age", "sex", "zip"}
        assert all(len(pids) >= 5 for pids in classes.values())
        text = json.dumps(body)
        assert "ward-7" not in text and "Cardiology" not in text  # the group only as its digest
    first = requests[0].body["points"][0]
    assert first["time_ns"] == START_MS * 1_000_000 and first["fields"]["ecg_mv"] == -0.5
