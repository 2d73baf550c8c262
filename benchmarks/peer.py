"""The benchmark's network peers in a process of their own, as a collector and Prometheus are.

A sink, a dead collector or a scraper on the measured interpreter would charge the job for
work it never does in production (parsing export requests, answering retries, reading each
/metrics page) and take the GIL from it while the job runs. Here they live in one child
process (`python -m benchmarks.peer FD`), driven over a pipe: the job's process keeps only
its own side of every exchange (exporting, serving /metrics), which is what a user pays.

The proxies mirror `benchmarks.endpoints`' classes, which do the work in the child.
"""

from __future__ import annotations

import atexit
import itertools
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from benchmarks import endpoints

_ROOT = Path(__file__).resolve().parent.parent
_START_TIMEOUT_S = 60.0
#: Longer than any request takes (closing a hanging endpoint or a scraper joins a thread).
_REPLY_TIMEOUT_S = 60.0


class Peer:
    """The child process and the pipe to it (one per benchmark process: `peer()`)."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        paths = [str(_ROOT), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
        try:
            # Its own session: a Ctrl-C meant for the benchmark does not kill it mid-request
            # (it ends when the benchmark closes the pipe, or dies).
            self._process = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.peer", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                cwd=_ROOT,
                env=env,
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self._lock = threading.Lock()
        self._broken = False
        try:
            self._receive(_START_TIMEOUT_S)  # its "ready"
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        """The peer's process id (a test checks it is not ours)."""
        return self._process.pid

    def request(self, *message: Any) -> Any:
        """Send one request; its answer, or the child's error raised here. Anything going
        wrong between the two (a timeout, an interrupt) breaks the peer for good: a later
        request would otherwise read this one's late answer."""
        with self._lock:
            if self._broken:
                raise RuntimeError("benchmark peer: broken by an earlier failed request")
            try:
                self._conn.send(message)
                status, value = self._receive(_REPLY_TIMEOUT_S)
            except OSError as error:  # the pipe broke: the peer died
                self._broken = True
                raise RuntimeError(
                    f"benchmark peer: {error} (exit code {self._process.poll()})"
                ) from error
            except BaseException:
                self._broken = True
                raise
        if status != "ok":
            raise RuntimeError(f"benchmark peer: {value}")
        return value

    def _receive(self, timeout: float) -> Any:
        if not self._conn.poll(timeout):
            raise RuntimeError(f"benchmark peer: no answer within {timeout:g} s")
        try:
            return self._conn.recv()
        except EOFError:
            raise RuntimeError(
                f"benchmark peer: the process ended (exit code {self._process.poll()})"
            ) from None

    def close(self) -> None:
        try:
            self._conn.close()
        finally:
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


_peer: list[Peer] = []
_peer_lock = threading.Lock()


def peer() -> Peer:
    """The process's peer, started on first use and stopped at exit."""
    with _peer_lock:
        if not _peer:
            _peer.append(Peer())
            atexit.register(_peer[0].close)
        return _peer[0]


class _Remote:
    """One object living in the peer."""

    def __init__(self, kind: str, *args: Any) -> None:
        self._peer = peer()
        self._handle, self.endpoint = self._peer.request("open", kind, args)

    def _call(self, method: str, *args: Any) -> Any:
        return self._peer.request("call", self._handle, method, args)

    def _get(self, name: str) -> Any:
        return self._peer.request("get", self._handle, name)

    def close(self) -> None:
        self._peer.request("close", self._handle)


class RemoteSink(_Remote):
    """`endpoints.OtlpSink` in the peer (``status=503``: an overloaded collector)."""

    endpoint: str

    def __init__(self, status: int = 200) -> None:
        super().__init__("sink", status)

    @property
    def keep_bodies(self) -> bool:
        return bool(self._get("keep_bodies"))

    @keep_bodies.setter
    def keep_bodies(self, keep: bool) -> None:
        self._peer.request("set", self._handle, "keep_bodies", keep)

    def totals(self) -> dict[str, tuple[int, int]]:
        found: dict[str, tuple[int, int]] = self._call("totals")
        return found

    def take_bodies(self) -> dict[str, list[bytes]]:
        found: dict[str, list[bytes]] = self._call("take_bodies")
        return found


class RemoteHanging(_Remote):
    """`endpoints.HangingEndpoint` in the peer."""

    endpoint: str

    def __init__(self) -> None:
        super().__init__("hanging")

    @property
    def connections(self) -> int:
        return int(self._get("connections"))


class RemoteUnavailable(_Remote):
    """`endpoints.GrpcUnavailable` in the peer."""

    endpoint: str

    def __init__(self) -> None:
        super().__init__("unavailable")

    @property
    def requests(self) -> int:
        return int(self._get("requests"))


class RemoteScraper(_Remote):
    """`endpoints.Scraper` in the peer: scrapes the job's /metrics from outside its process.
    `stop()` also releases it there, keeping its final counts here."""

    def __init__(self, port: int, interval: float) -> None:
        super().__init__("scraper", port, interval)
        self._final: tuple[int, int] | None = None

    def start(self) -> None:
        self._call("start")

    def scrape_once(self) -> None:
        """One scrape, answered before this returns (the thread need not run)."""
        self._call("scrape_once")

    def is_alive(self) -> bool:
        return self._final is None and bool(self._call("is_alive"))

    def stop(self) -> None:
        """Stop it if it runs, keep its counts, release it in the peer (once)."""
        if self._final is None:
            if self._call("is_alive"):
                self._call("stop")
            self._final = (int(self._get("scrapes")), int(self._get("failures")))
            super().close()

    def close(self) -> None:
        self.stop()

    @property
    def scrapes(self) -> int:
        return self._final[0] if self._final is not None else int(self._get("scrapes"))

    @property
    def failures(self) -> int:
        return self._final[1] if self._final is not None else int(self._get("failures"))


_KINDS: dict[str, Any] = {
    "sink": endpoints.OtlpSink,
    "hanging": endpoints.HangingEndpoint,
    "unavailable": endpoints.GrpcUnavailable,
    "scraper": endpoints.Scraper,
}


def _serve(conn: Connection) -> None:
    """The child's loop: one request, one answer, until the parent closes the pipe."""
    objects: dict[int, Any] = {}
    handles = itertools.count(1)
    conn.send(("ok", "ready"))
    while True:
        try:
            op, *args = conn.recv()
        except (EOFError, OSError):
            break
        try:
            reply = ("ok", _handle(objects, handles, op, args))
        except Exception as error:  # noqa: BLE001 - reported to the parent, which raises it
            reply = ("error", f"{op} {args[:2]!r}: {type(error).__name__}: {error}")
        try:
            conn.send(reply)
        except OSError:  # the benchmark is gone
            break
    for obj in objects.values():
        _close(obj)


def _handle(objects: dict[int, Any], handles: Iterator[int], op: str, args: list[Any]) -> Any:
    """One request: open an endpoint, call or read or set one of its attributes, close it."""
    if op == "open":
        kind, params = args
        obj = _KINDS[kind](*params)
        handle = next(handles)
        objects[handle] = obj
        return handle, getattr(obj, "endpoint", None)
    obj = objects[args[0]]
    if op == "call":
        return getattr(obj, args[1])(*args[2])
    if op == "get":
        return getattr(obj, args[1])
    if op == "set":
        setattr(obj, args[1], args[2])
        return None
    if op == "close":
        _close(objects.pop(args[0]))
        return None
    raise ValueError(f"unknown request {op!r}")


def _close(obj: Any) -> None:
    """Stop an endpoint (a scraper is a thread: stopped only if it was started)."""
    if isinstance(obj, endpoints.Scraper):
        if obj.is_alive():
            obj.stop()
    else:
        obj.close()


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
