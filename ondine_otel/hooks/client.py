"""The LLMInvocation stage's client, wrapped for the stage's duration: every call, failed too.

ondine's `llm_call` events come only from its LiteLLM client, only for successful calls, and
cost ~16 µs each to build. Wrapping the client's async call methods (ondine's sync methods call
them through `asyncio.run`, so wrapping both would count twice) sees every call of any client,
for ~1 µs. A client used by one run's stages records into that run directly; one shared by
several runs at once (pipelines in several threads) finds each call's run in the OTel context,
which each row's asyncio task copies from the stage. The methods are
set on the instance and removed again at stage end: the class is never touched. Both the
wrapper and ondine's events build the same `CallRecord`.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Any

from ondine_otel.hooks.llm_events import LLMCallListener
from ondine_otel.telemetry.guard import report
from ondine_otel.telemetry.llm_calls import LLMCalls, timed
from ondine_otel.telemetry.run import current_run

_METHODS = ("ainvoke", "structured_invoke_async")
_MISSING = object()


class _Patch:
    """One wrapped client: the runs whose stages use it, and what its instance had before."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.users: list[LLMCalls] = []
        #: The calls of the one run using the client (its calls need no context lookup),
        #: else None: several runs share it and each call finds its run in the OTel context.
        self.sole: LLMCalls | None = None
        self.saved: dict[str, Any] = {}

    def users_changed(self) -> None:
        first = self.users[0] if self.users else None
        self.sole = first if all(user is first for user in self.users) else None

    def current(self) -> LLMCalls | None:
        """The calls of the run in this call's OTel context, unless it has ended."""
        run = current_run()
        return None if run is None or run.finished else run.llm


class ClientPatches:
    """The LLM clients wrapped right now (ref-counted: stages of several pipelines may share
    one client); owned by the runtime."""

    def __init__(self) -> None:
        self._patches: dict[int, _Patch] = {}
        self._lock = threading.Lock()

    def after_fork(self) -> None:
        self._lock = threading.Lock()

    def wrap(self, client: Any, calls: LLMCalls) -> bool:
        """Wrap `client`'s async call methods for a stage whose run records into `calls`
        (once however many stages share it); False if it cannot be wrapped without touching
        its class."""
        with self._lock:
            patch = self._patches.get(id(client))
            if patch is None or patch.client is not client:
                patch = _Patch(client)
                if not type(client).__dictoffset__:
                    return False  # no instance dict (slots)
                for name in _METHODS:
                    method = getattr(client, name, None)
                    if method is None or not inspect.iscoroutinefunction(method):
                        continue
                    patch.saved[name] = _own(client, name, method)
                    setattr(client, name, timed(method, patch))
                if not patch.saved:
                    return False
                self._patches[id(client)] = patch
            patch.users.append(calls)
            patch.users_changed()
            return True

    def unwrap(self, client: Any, calls: LLMCalls) -> None:
        """Undo one `wrap`; the last user puts the instance back as it was."""
        with self._lock:
            patch = self._patches.get(id(client))
            if patch is None or patch.client is not client:
                return
            if calls in patch.users:
                patch.users.remove(calls)
            patch.users_changed()
            if patch.users:
                return
            del self._patches[id(client)]
            for name, before in patch.saved.items():
                try:
                    if before is _MISSING:
                        delattr(client, name)
                    else:
                        setattr(client, name, before)
                except AttributeError as error:
                    report("unwrapping an LLM client", error)


def _own(client: Any, name: str, found: Any) -> Any:
    """What the instance itself holds under `name` (what unwrapping puts back), else _MISSING.

    Read without the instance's `__dict__`: on CPython 3.11+ reading it turns the instance's
    attribute storage into a dict of its own for good, and every attribute the client's methods
    read then takes the interpreter's slow path (measured: ~3,000 machine instructions a call,
    0.4 % of an instant row). A method found through the class is a bound method of the class's
    function; anything else came from the instance."""
    from_class = getattr(type(client), name, None)
    if inspect.ismethod(found) and found.__self__ is client and found.__func__ is from_class:
        return _MISSING
    return found


def mute_own_events(llm_client: Any) -> Callable[[], None]:
    """Stop ondine building `llm_call` events nobody but us would hear; returns the undo.

    ondine builds an LLMCallEvent per call (~16 µs) whenever its client has a dispatcher, as it
    has for a `with_observer("otel")` pipeline. While the client is wrapped the wrapper records
    each call, so if every listener on that dispatcher is ours it is detached for the stage.
    """
    dispatcher = getattr(llm_client, "_observer_dispatcher", None)
    listeners = getattr(dispatcher, "observers", None)
    if (
        dispatcher is None
        or not isinstance(listeners, list)
        or not listeners
        or not all(isinstance(listener, LLMCallListener) for listener in listeners)
    ):
        return _nothing
    llm_client._observer_dispatcher = None

    def restore() -> None:
        if getattr(llm_client, "_observer_dispatcher", None) is None:
            llm_client._observer_dispatcher = dispatcher

    return restore


def _nothing() -> None:
    pass
