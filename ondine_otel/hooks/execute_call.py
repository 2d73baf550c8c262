"""What happened inside the current `Pipeline.execute()` call, for the safety net to settle.

Runs started, checkpoints restored and observers attached during one call are noted here (a
ContextVar: calls in other threads or nested calls keep their own), so that whatever ondine
leaves undone when the call ends, by success, error or KeyboardInterrupt, is finished once.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Call:
    """One execute() call's loose ends."""

    runs: list[Any] = field(default_factory=list)
    restored_sessions: list[Any] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)


CURRENT: ContextVar[Call | None] = ContextVar("ondine_otel_call", default=None)


def current() -> Call | None:
    """The execute() call running here, if any."""
    return CURRENT.get()
