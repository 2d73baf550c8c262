"""The runs in flight in this process, keyed by ondine's session id.

Hooks arrive from different places (legacy observer, llm_call events, StateManager wrappers,
metric readers on their own threads); this registry is how each finds the run it belongs to.
Runs whose checkpoint is waiting to be resumed are kept here too, until the resumed run starts.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from ondine_otel.telemetry.run import RestoredCheckpoint, RunTelemetry

T = TypeVar("T")


class Registry(Generic[T]):
    """A small thread-safe map from session id (as text) to a value."""

    def __init__(self) -> None:
        self._items: dict[str, T] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(session_id: Any) -> str:
        return str(session_id)

    def put(self, session_id: Any, value: T) -> None:
        with self._lock:
            self._items[self.key(session_id)] = value

    def get(self, session_id: Any) -> T | None:
        with self._lock:
            return self._items.get(self.key(session_id))

    def pop(self, session_id: Any) -> T | None:
        with self._lock:
            return self._items.pop(self.key(session_id), None)

    def remove(self, session_id: Any, value: T) -> None:
        """Remove the entry only if it is still `value` (a newer run may have replaced it)."""
        with self._lock:
            if self._items.get(self.key(session_id)) is value:
                del self._items[self.key(session_id)]

    def values(self) -> list[T]:
        with self._lock:
            return list(self._items.values())


#: Runs in flight, by session id.
ACTIVE_RUNS: Registry[RunTelemetry] = Registry()
#: Checkpoints just loaded by StateManager, waiting for their resumed run to start.
PENDING_RESTORES: Registry[RestoredCheckpoint] = Registry()


def finish_run(run: RunTelemetry, error: BaseException | None = None) -> None:
    """End a run (idempotent) and forget it, whoever notices the end first."""
    run.finish(error)
    ACTIVE_RUNS.remove(run.session_id, run)
