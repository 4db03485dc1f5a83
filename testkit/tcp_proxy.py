"""A TCP proxy on 127.0.0.1 whose port can be closed and opened again: a service that is up but refuses
connections, for one test's own port only (no root, no iptables, nothing else on the machine affected).

Put in front of a Kafka broker, the broker must advertise the proxy's port (`LocalStack(ports=
{"kafka_advertised": proxy.port})`), or clients would learn the broker's own address from the metadata and
bypass the proxy."""

from __future__ import annotations

import socket
import struct
import threading

from devstack.processes import free_port


class TcpProxy:
    """Forwards every connection to ``127.0.0.1:<listen port>`` to ``127.0.0.1:<target_port>``.

    ``refuse()`` closes the listening socket and resets every open connection: a client's reconnect gets
    "connection refused", as from a host whose port is closed. ``accept()`` listens on the same port again."""

    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    def accept(self) -> TcpProxy:
        """Listen (again) on the proxy's port."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept_loop, args=(listener,), name="tcp-proxy accept", daemon=True).start()
        return self

    def refuse(self) -> None:
        """Close the port: no new connection, every open one reset."""
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown first: close() alone leaves the socket listening while the accept thread is blocked in
            # accept() (the kernel keeps it open for that call), so the port still took connections (seen once).
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            _reset(connection)

    close = refuse

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # the listener was closed: refuse() or close()
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                if self._listener is not listener:  # refused meanwhile
                    _reset(client)
                    _reset(upstream)
                    return
                self._connections.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), name="tcp-proxy pump", daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._connections.discard(source)
                self._connections.discard(sink)
            _reset(source)
            _reset(sink)


def _reset(connection: socket.socket) -> None:
    """Close with RST (linger 0), as a closed port answers, rather than a polite FIN."""
    try:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    connection.close()
