"""Polling helpers, so tests wait for conditions instead of sleeping fixed amounts."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition not met",
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that value.

    Exceptions from the predicate count as "not yet" (a service that is still
    starting refuses connections) but the last one is chained into the
    AssertionError so a timeout explains itself. ``message`` may be a callable
    so expensive diagnostics (log tails) are only built on failure.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
        except Exception as exc:  # noqa: BLE001 - any failure just means "not yet"
            last_exc = exc
        else:
            if value:
                return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout:.1f}s: {text}") from last_exc
        time.sleep(interval)


def free_port() -> int:
    """Return a loopback TCP port the OS just reported free.

    Only for programs that must be told a port up front (Prometheus,
    Pushgateway); in-process servers should bind port 0 themselves, which
    has no window for another process to grab the port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
