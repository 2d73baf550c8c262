"""Real fault servers on 127.0.0.1 for the reliability suite.

Each one is a genuine network peer the exporters talk to, not a patched client: a port that
refuses connections, a TCP server that accepts and never answers (for HTTP and gRPC alike), an
HTTP server that answers a fixed status, slowly if asked, a real gRPC server that returns a
status code (UNAVAILABLE) or answers slowly, a TCP proxy that makes a real server answer late,
and a TLS front with a self-signed certificate. They count what they saw, so tests can tell one
retry from one per batch.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses every connection: bound (so nobody takes it), not listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@contextmanager
def busy_port() -> Iterator[int]:
    """A loopback port another server already listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


_Listener = TypeVar("_Listener", bound="_TcpListener")


class _TcpListener:
    """A listening socket on 127.0.0.1 whose accepted connections go to `_handle` threads."""

    scheme = "http"

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self.port = int(self._sock.getsockname()[1])
        self.endpoint = f"{self.scheme}://127.0.0.1:{self.port}"
        self.connections = 0
        self._open: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=type(self).__name__, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.connections += 1
            self._open.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._open:
            conn.close()
        self._sock.close()

    def __enter__(self: _Listener) -> _Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HangingServer(_TcpListener):
    """Accepts TCP connections, reads what arrives and never answers (HTTP or gRPC alike)."""

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        while not self._stop.is_set():
            try:
                if not conn.recv(65536):
                    return
            except TimeoutError:
                continue
            except OSError:
                return


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class HttpFaultServer:
    """Answers every request with `status` after `delay` seconds, and records it.

    A 200 with an empty body is a valid OTLP/HTTP and Pushgateway reply, so `status=200,
    delay=2` is a slow but healthy peer; `status=503` an overloaded one.
    """

    def __init__(self, status: int = 503, delay: float = 0.0) -> None:
        self.status = status
        self.delay = delay
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with server._lock:
                    server._requests.append(
                        Request(
                            self.command,
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                        )
                    )
                if server.delay:
                    time.sleep(server.delay)
                self.send_response(server.status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, format: str, *args: Any) -> None:
                """No access log in the test output."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def requests(self, method: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self._requests if method is None or r.method == method]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> HttpFaultServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GrpcFaultServer:
    """A real gRPC OTLP server: each Export waits `delay` s, then fails with `code` or succeeds."""

    def __init__(self, code: grpc.StatusCode | None = grpc.StatusCode.UNAVAILABLE,
                 delay: float = 0.0) -> None:  # fmt: skip
        self.code = code
        self.delay = delay
        self.calls = 0
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        fault = self

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
                fault._answer(context)
                return trace_service_pb2.ExportTraceServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
                fault._answer(context)
                return metrics_service_pb2.ExportMetricsServiceResponse()

        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self._server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server.start()

    def _answer(self, context: grpc.ServicerContext) -> None:
        with self._lock:
            self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        if self.code is not None:
            context.abort(self.code, "injected fault")

    def close(self) -> None:
        self._server.stop(grace=None).wait(timeout=5)

    def __enter__(self) -> GrpcFaultServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for 127.0.0.1 (it is its own CA) and its key, as PEM files."""

    cert: Path
    key: Path

    def pem(self) -> bytes:
        return self.cert.read_bytes()


def self_signed_certificate(directory: Path, name: str) -> Certificate:
    """Make a fresh self-signed certificate valid for IP 127.0.0.1 with the openssl CLI."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
            "-days", "2", "-subj", f"/CN={name}",
            "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return Certificate(cert, key)


class TlsTerminator(_TcpListener):
    """A TLS front for a plain local server (HTTP or gRPC): decrypts and forwards the bytes.

    Exporters then talk real TLS (certificate checks, ALPN h2 for gRPC) to 127.0.0.1 while the
    OTLP receiver behind it stays the plain one tests already read from.
    """

    scheme = "https"

    def __init__(self, certificate: Certificate, upstream_port: int) -> None:
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(str(certificate.cert), str(certificate.key))
        self._context.set_alpn_protocols(["h2", "http/1.1"])
        self._upstream = upstream_port
        self.handshake_failures = 0
        super().__init__()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            tls = self._context.wrap_socket(conn, server_side=True)
        except OSError:  # the client rejected our certificate (or spoke no TLS)
            self.handshake_failures += 1
            conn.close()
            return
        _forward(tls, self._upstream)


def _forward(client: socket.socket, upstream_port: int) -> None:
    """Pump bytes both ways between `client` and a new connection to the upstream port."""
    upstream = socket.create_connection(("127.0.0.1", upstream_port), timeout=10)
    for source, target in ((client, upstream), (upstream, client)):
        threading.Thread(target=_pump, args=(source, target), daemon=True).start()


def _pump(source: socket.socket, target: socket.socket) -> None:
    source.settimeout(None)
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class DelayingProxy(_TcpListener):
    """Forwards TCP connections to a real local server, each after `delay` seconds.

    HTTP clients such as the Pushgateway pusher open one connection per request, so this is a
    real server that answers `delay` seconds late, with its real replies.
    """

    def __init__(self, upstream_port: int, delay: float) -> None:
        self._upstream = upstream_port
        self.delay = delay
        super().__init__()

    def _handle(self, conn: socket.socket) -> None:
        if self._stop.wait(self.delay):
            conn.close()
            return
        _forward(conn, self._upstream)
