"""The network ends of a benchmark run: an OTLP sink, dead collectors (refused, hanging, 503 or
gRPC UNAVAILABLE), a scraper.

All on 127.0.0.1, OS-chosen ports. The benchmark runs them in a peer process of their own
(`benchmarks.peer`), where a collector and Prometheus would be; the tests also use them
directly. The sink is deliberately minimal (read the body, count it, answer 200): decoding
and storing every export, as the test receiver does, is a collector's work, not a
benchmark's. Bodies are kept only when asked (the untimed coverage runs decode them
afterwards).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import urllib.request
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_SIGNALS = {"/v1/traces": "traces", "/v1/metrics": "metrics"}


@dataclass
class SignalCount:
    requests: int = 0
    size: int = 0  # bytes
    bodies: list[bytes] = field(default_factory=list)


class OtlpSink:
    """An OTLP/HTTP protobuf receiver that accepts every export and only counts it.

    With ``status=503`` it is an overloaded collector instead: it counts every export and
    answers 503 Service Unavailable, which OTLP exporters retry until their timeout.
    """

    def __init__(self, status: int = 200) -> None:
        self._lock = threading.Lock()
        self.keep_bodies = False
        self.counts = {signal: SignalCount() for signal in _SIGNALS.values()}
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                signal = _SIGNALS.get(self.path.split("?", 1)[0])
                if signal is not None:
                    sink._record(signal, body)
                # An empty body is a valid, empty Export*ServiceResponse.
                self.send_response(status if signal else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """No access log on the benchmark's output."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="bench-otlp-sink", daemon=True
        )
        self._thread.start()

    def _record(self, signal: str, body: bytes) -> None:
        with self._lock:
            count = self.counts[signal]
            count.requests += 1
            count.size += len(body)
            if self.keep_bodies:
                count.bodies.append(body)

    def totals(self) -> dict[str, tuple[int, int]]:
        """(requests, bytes) received so far, per signal."""
        with self._lock:
            return {name: (c.requests, c.size) for name, c in self.counts.items()}

    def take_bodies(self) -> dict[str, list[bytes]]:
        """The kept bodies per signal, forgotten here."""
        with self._lock:
            taken = {name: c.bodies for name, c in self.counts.items()}
            for c in self.counts.values():
                c.bodies = []
            return taken

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class HangingEndpoint:
    """Accepts TCP connections and never answers: a collector that is up but stuck."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._held: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="bench-hanging", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._held.append(conn)  # read nothing, answer nothing

    @property
    def connections(self) -> int:
        return len(self._held)

    def close(self) -> None:
        """Stop listening and drop the held connections: stuck exporters then fail fast."""
        self._closed.set()
        # Wakes the accept() blocked in the thread (close() alone does not).
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for conn in self._held:
            conn.close()
        self._held.clear()
        self._thread.join(timeout=5)


class GrpcUnavailable:
    """An OTLP/gRPC collector that answers every export with UNAVAILABLE (it is overloaded),
    the status OTLP exporters retry with backoff until their timeout."""

    def __init__(self) -> None:
        import grpc  # the OTLP gRPC exporter's own dependency

        def unavailable(request: bytes, context: grpc.ServicerContext) -> bytes:
            with self._lock:
                self.requests += 1
            context.abort(grpc.StatusCode.UNAVAILABLE, "collector overloaded")
            return b""  # not reached: abort() raises

        class Handler(grpc.GenericRpcHandler):
            def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
                return grpc.unary_unary_rpc_method_handler(unavailable)

        self._lock = threading.Lock()
        self.requests = 0
        self._pool = futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="bench-grpc")
        self._server = grpc.server(self._pool)
        self._server.add_generic_rpc_handlers((Handler(),))
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"http://127.0.0.1:{port}"
        self._server.start()

    def close(self) -> None:
        self._server.stop(grace=None).wait(timeout=5)
        self._pool.shutdown(wait=True)


def refused_endpoint() -> str:
    """A 127.0.0.1 URL with nothing listening (the port was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class Scraper(threading.Thread):
    """Scrapes /metrics over HTTP like Prometheus would, so collection runs while the job does."""

    def __init__(self, port: int, interval: float) -> None:
        super().__init__(name="bench-scraper", daemon=True)
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.interval = interval
        self.scrapes = 0
        self.failures = 0
        self._done = threading.Event()  # not _stop: Thread has a private method of that name

    def run(self) -> None:
        while not self._done.wait(self.interval):
            self.scrape_once()

    def scrape_once(self) -> None:
        """One scrape now, counted (the thread's own, or one a caller times itself)."""
        try:
            scrape(self.url)
            self.scrapes += 1
        except OSError:
            self.failures += 1

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=10)


def scrape(url: str) -> bytes:
    """One GET of a /metrics page, the whole body read."""
    with urllib.request.urlopen(url, timeout=10) as reply:
        body: bytes = reply.read()
    return body
