"""The safety net around `Pipeline.execute()` and StateManager, installed at import.

ondine's hooks alone cannot end a run span exactly once: the KeyboardInterrupt path skips
`on_pipeline_error`, and an exception before the first hook or after the last would leave the
span open and its stage span current on the caller's thread. So every execute() call is
wrapped, whichever entry traces the run (instrumentor, added observer, `with_observer`): when
the call ends, runs still open are finished with the call's error, observers attached for the
call are detached, and checkpoint restores nobody claimed are forgotten. Without telemetry the
wrappers do nothing but this bookkeeping.

The instrumentor's only job is then to set `auto_observer`, attached to every call.
"""

from __future__ import annotations

import threading
from typing import Any

from wrapt import wrap_function_wrapper

from ondine_otel.hooks import calls, checkpoints
from ondine_otel.hooks.observer import (
    PENDING_RESTORES,
    OtelObserver,
    ensure_default_observers,
    finish_run,
)
from ondine_otel.telemetry.guard import report

#: The observer attached to every execute() call while the instrumentor is on.
auto_observer: OtelObserver | None = None

_installed = False
_install_lock = threading.Lock()


def install() -> None:
    """Wrap `Pipeline.execute` and StateManager's checkpoint save/load, once per process."""
    global _installed
    with _install_lock:
        if _installed:
            return
        wrap_function_wrapper("ondine.api.pipeline", "Pipeline.execute", _execute)
        state = "ondine.orchestration.state_manager"
        wrap_function_wrapper(state, "StateManager.save_checkpoint", checkpoints.wrap_save)
        wrap_function_wrapper(state, "StateManager.load_checkpoint", checkpoints.wrap_load)
        _installed = True


def _execute(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    observer = auto_observer
    attached = observer is not None and _attach(instance, observer)
    call = calls.Call()
    token = calls.CURRENT.set(call)
    error: BaseException | None = None
    try:
        return wrapped(*args, **kwargs)
    except BaseException as raised:
        error = raised
        raise
    finally:
        calls.CURRENT.reset(token)
        _settle(call, error)
        if attached and observer is not None:
            _detach(instance, observer)


def _settle(call: calls.Call, error: BaseException | None) -> None:
    """Finish what ondine left open in this call; never raises."""
    for run in call.runs:
        if not run.finished:
            try:
                finish_run(run, error)
            except Exception as failure:  # noqa: BLE001
                report("ending the run span", failure)
    for cleanup in call.cleanups:
        try:
            cleanup()
        except Exception as failure:  # noqa: BLE001
            report("detaching an observer after the run", failure)
    for session_id in call.restored_sessions:
        PENDING_RESTORES.pop(session_id)


def _attach(pipeline: Any, observer: OtelObserver) -> bool:
    """Add our observer for this call (keeping ondine's defaults); False if already there."""
    try:
        observers = pipeline.observers
        if any(existing is observer for existing in observers):
            return False
        ensure_default_observers(pipeline)
        observers.append(observer)
        return True
    except Exception as error:  # noqa: BLE001
        report("attaching the observer to a pipeline", error)
        return False


def _detach(pipeline: Any, observer: OtelObserver) -> None:
    try:
        pipeline.observers[:] = [o for o in pipeline.observers if o is not observer]
    except Exception as error:  # noqa: BLE001
        report("detaching the observer from a pipeline", error)
