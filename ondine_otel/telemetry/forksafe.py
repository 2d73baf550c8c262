"""Locks that survive `fork()`: a child gets fresh ones instead of copies that may be held.

A worker forked while a scrape or a push held one of the metrics' locks would otherwise hang on
its first LLM call. Objects that register here get a new `_lock` in the child (the SDK does the
same for its own state).
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

_holders: weakref.WeakSet[Any] = weakref.WeakSet()


def track(holder: Any) -> None:
    """Give `holder._lock` a fresh lock in every forked child."""
    _holders.add(holder)


def _after_fork_in_child() -> None:
    for holder in list(_holders):
        holder._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
