"""Calls handed from one thread to another: ondine runs a stream's chunks and execute_async()'s
execute() on threads that carry no context of the caller's, so the call is passed by the
pipeline object that will run it."""

from __future__ import annotations

import threading
from typing import Any


class Handovers:
    """Calls handed from one thread to another, keyed by (kind, id(pipeline)); runtime-owned."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, int], Any] = {}
        self._lock = threading.Lock()

    def put(self, kind: str, pipeline: Any, value: Any) -> None:
        with self._lock:
            self._items[(kind, id(pipeline))] = value

    def get(self, kind: str, pipeline: Any) -> Any:
        with self._lock:
            return self._items.get((kind, id(pipeline)))

    def drop(self, kind: str, pipeline: Any, value: Any) -> None:
        """Forget the entry if it is still `value`."""
        with self._lock:
            if self._items.get((kind, id(pipeline))) is value:
                del self._items[(kind, id(pipeline))]

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        self._items = {}
