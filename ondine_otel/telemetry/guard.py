"""Keep telemetry failures away from the job: catch, log once, carry on.

ondine does not catch exceptions raised by legacy observers (one kills the pipeline), and a
broken exporter would otherwise log on every row. So each failure site logs the first time a
given (site, error type) pair fails, and never again.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

logger = logging.getLogger("ondine_otel")

_seen: set[tuple[str, type[BaseException]]] = set()
_seen_lock = threading.Lock()

F = TypeVar("F", bound=Callable[..., Any])


def report(site: str, error: Exception) -> None:
    """Log `error` from `site` once per error type; later repeats are dropped."""
    key = (site, type(error))
    with _seen_lock:
        if key in _seen:
            return
        _seen.add(key)
    logger.warning(
        "ondine-otel: %s failed (%s: %s); telemetry for this part is skipped, the job goes on. "
        "Further %s errors here are not logged.",
        site,
        type(error).__name__,
        error,
        type(error).__name__,
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
