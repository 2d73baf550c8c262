"""Keep telemetry failures away from the job: catch, log once, carry on.

ondine does not catch exceptions raised by legacy observers (one kills the pipeline), and a
broken exporter would otherwise log on every row. Each failure is logged with its site and
error type as the record's `once` key; `OnceFilter`, which the runtime puts on the `ondine_otel`
logger, lets the first record of each key through and drops the repeats.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

logger = logging.getLogger("ondine_otel")

F = TypeVar("F", bound=Callable[..., Any])
#: The LogRecord attribute holding a record's once-key (records without one always pass).
ONCE_KEY = "ondine_otel_once"


class OnceFilter(logging.Filter):
    """Passes the first record of each `once` key (site, error type); later ones are dropped."""

    def __init__(self) -> None:
        super().__init__("ondine_otel.guard")
        self._seen: set[object] = set()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = getattr(record, ONCE_KEY, None)
        if key is None:
            return True
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
        return True

    def after_fork(self) -> None:
        self._lock = threading.Lock()


def report(site: str, error: BaseException) -> None:
    """Log `error` from `site`, once per (site, error type); the job goes on."""
    logger.warning(
        "ondine-otel: %s failed (%s: %s); telemetry for this part is skipped, the job goes on. "
        "Further %s errors here are not logged.",
        site,
        type(error).__name__,
        error,
        type(error).__name__,
        extra={ONCE_KEY: (site, type(error))},
    )


def guarded(site: str) -> Callable[[F], F]:
    """Decorator: run the function, but turn any Exception into a one-time log line."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except Exception as error:  # noqa: BLE001
                report(site, error)
                return None

        return wrapper  # type: ignore[return-value]

    return decorate


def quietly(site: str, action: Callable[[], Any]) -> None:
    """Run `action`; a failure is reported, never raised (cleanups and shutdowns must finish)."""
    try:
        action()
    except Exception as error:  # noqa: BLE001
        report(site, error)
