"""What happened inside the current `Pipeline.execute()` call, for the safety net to settle.

Runs started, checkpoints restored and observers attached during one call are noted here (a
ContextVar: calls in other threads or nested calls keep their own), so that whatever ondine
leaves undone when the call ends, by success, error or KeyboardInterrupt, is finished once.
The call also says which group it belongs to: a stream's chunk, or a composed call's column.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from ondine_otel.telemetry.groups import Composition, Stream


@dataclass
class Call:
    """One execute() call's loose ends, and the group it is part of."""

    #: (run, ondine context) of each run part started in this call.
    parts: list[tuple[Any, Any]] = field(default_factory=list)
    restored_sessions: list[Any] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    stream: Stream | None = None
    chunk: int | None = None
    composition: Composition | None = None
    column: str | None = None


CURRENT: ContextVar[Call | None] = ContextVar("ondine_otel_call", default=None)


def current() -> Call | None:
    """The execute() call running here, if any."""
    return CURRENT.get()
