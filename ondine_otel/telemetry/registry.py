"""The runs of this process, and what waits for one, keyed by ondine's session id.

Hooks arrive from different places (legacy observer, `llm_call` events, StateManager wrappers,
metric readers and the Pushgateway on their own threads); this registry is how each finds the
run it belongs to, and the one place that knows which runs are active. One map and one lock:
an entry holds the active run of a session, the checkpoint restored for it until the resumed
run starts, and a `with_observer("otel")` observer waiting for the run's stages to begin. A
stream's chunks are sessions of their own that all lead to the stream's one run.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from ondine_otel.telemetry.run import RestoredCheckpoint, RunTelemetry


@dataclass
class _Entry:
    run: RunTelemetry | None = None
    restored: RestoredCheckpoint | None = None
    waiting: Any = None

    @property
    def empty(self) -> bool:
        return self.run is None and self.restored is None and self.waiting is None


class RunRegistry:
    """Thread-safe: session id (as text) -> the run and what waits for it."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def _change(self, session_id: Any, field: str, value: Any) -> Any:
        """Set one field of a session's entry; returns what it held (entries never linger)."""
        key = str(session_id)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
            previous = getattr(entry, field)
            setattr(entry, field, value)
            if entry.empty:
                del self._entries[key]
            return previous

    # --- runs --------------------------------------------------------------------------
    def run(self, session_id: Any) -> RunTelemetry | None:
        """The active (unfinished) run of a session, if any."""
        with self._lock:
            entry = self._entries.get(str(session_id))
        run = entry.run if entry is not None else None
        return run if run is not None and not run.finished else None

    def runs(self) -> list[RunTelemetry]:
        """Every run in the registry, once each, those still finishing included (a collection
        counts a run as active until its metrics have moved its totals to the finished ones)."""
        with self._lock:
            found = {id(e.run): e.run for e in self._entries.values() if e.run is not None}
        return list(found.values())

    def active(self) -> list[RunTelemetry]:
        return [run for run in self.runs() if not run.finished]

    def begin(self, run: RunTelemetry, session_id: Any = None) -> None:
        """`run` is the active run of `session_id` (default: its own; a stream's later chunks
        are further sessions of the same run)."""
        self._change(run.session_id if session_id is None else session_id, "run", run)

    def end(self, run: RunTelemetry, error: BaseException | None = None) -> bool:
        """End `run` (idempotent) and forget it under every session, whoever notices first."""
        ended = run.finish(error)
        with self._lock:
            for key, entry in list(self._entries.items()):
                if entry.run is run:
                    entry.run = None
                    if entry.empty:
                        del self._entries[key]
        return ended

    def release(self, session_id: Any, run: RunTelemetry) -> None:
        """Forget `session_id` (a stream chunk that ended) if it still leads to `run`."""
        key = str(session_id)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.run is run:
                entry.run = None
                if entry.empty:
                    del self._entries[key]

    # --- what waits for a run -------------------------------------------------------------
    def hold_restore(self, session_id: Any, restored: RestoredCheckpoint) -> None:
        self._change(session_id, "restored", restored)

    def take_restore(self, session_id: Any) -> RestoredCheckpoint | None:
        restored: RestoredCheckpoint | None = self._change(session_id, "restored", None)
        return restored

    def hold_waiting(self, session_id: Any, waiting: Any) -> None:
        self._change(session_id, "waiting", waiting)

    def take_waiting(self, session_id: Any) -> Any:
        return self._change(session_id, "waiting", None)

    def after_fork(self) -> None:
        """In a forked child: a fresh lock, and none of the parent's runs (they are not ours)."""
        self._lock = threading.Lock()
        self._entries = {}
