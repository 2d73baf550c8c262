"""Does ondine hold its own functions again? A snapshot of them, compared and put back.

An entry that patches ondine (wrappers around `Pipeline.execute` and friends) must not stay
applied into the bare runs that follow it in the same process. The snapshot covers every
function-like attribute of every loaded ``ondine`` module and of the classes they define, so
it does not depend on which functions ondine-otel chooses to wrap.
"""

from __future__ import annotations

import sys
from typing import Any

Snapshot = dict[tuple[int, str], tuple[Any, Any]]  # (owner id, name): (owner, value)


def _function_like(value: Any) -> bool:
    return callable(value) or isinstance(value, (classmethod, staticmethod, property))


def _owners() -> list[Any]:
    owners: list[Any] = []
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "ondine" or name.startswith("ondine.")):
            continue
        owners.append(module)
        owners += [
            value
            for value in vars(module).values()
            if isinstance(value, type) and getattr(value, "__module__", "") == name
        ]
    return owners


def snapshot() -> Snapshot:
    """ondine's function-like attributes now (modules and the classes they define)."""
    taken: Snapshot = {}
    for owner in _owners():
        for name, value in list(vars(owner).items()):
            if _function_like(value):
                taken[(id(owner), name)] = (owner, value)
    return taken


def changed(before: Snapshot) -> list[str]:
    """The attributes that are no longer what they were in `before` (e.g. wrapped)."""
    return sorted(
        f"{getattr(owner, '__qualname__', owner.__name__)}.{name}"
        for (_, name), (owner, value) in before.items()
        if vars(owner).get(name) is not value
    )


def restore(before: Snapshot) -> list[str]:
    """Put back every attribute that changed since `before`; the names of those that had."""
    found = changed(before)
    for (_, name), (owner, value) in before.items():
        if vars(owner).get(name) is not value:
            setattr(owner, name, value)
    return found
