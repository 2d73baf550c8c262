"""The safety net around `Pipeline.execute()` and StateManager, applied by the first entry.

ondine's hooks alone cannot end a run span exactly once: the KeyboardInterrupt path skips
`on_pipeline_error`, and an exception before the first hook or after the last would leave the
span open and its stage span current on the caller's thread. So while any entry is active,
every execute() call is wrapped: when the call ends, runs still open are finished with the
call's error, observers attached for the call are detached, and checkpoint restores nobody
claimed are forgotten. `Pipeline._execute_stages` is wrapped too: it is where a
`with_observer("otel")` run (whose observer ondine creates inside execute()) gets attached.

Nothing is patched at import: `install()` is called by the instrumentor, by every OtelObserver
and by the `otel` observer ondine creates; `uninstall()` (the instrumentor's `_uninstrument`,
the `instrument()` handle's shutdown) gives ondine back its own function objects.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from ondine_otel.hooks import calls, checkpoints
from ondine_otel.telemetry.active_runs import ACTIVE_RUNS, PENDING_RESTORES, finish_run
from ondine_otel.telemetry.guard import report

if TYPE_CHECKING:
    from ondine_otel.hooks.observer import OtelObserver

#: The observer attached to every execute() call while the instrumentor is on.
auto_observer: OtelObserver | None = None

_PIPELINE = "ondine.api.pipeline"
_STATE = "ondine.orchestration.state_manager"
_installed = False
_install_lock = threading.Lock()


def install() -> None:
    """Wrap execute, _execute_stages and StateManager's save/load (idempotent)."""
    global _installed
    if _installed:
        return
    with _install_lock:
        if _installed:
            return
        wrap_function_wrapper(_PIPELINE, "Pipeline.execute", _execute)
        wrap_function_wrapper(_PIPELINE, "Pipeline._execute_stages", _execute_stages)
        wrap_function_wrapper(_STATE, "StateManager.save_checkpoint", checkpoints.wrap_save)
        wrap_function_wrapper(_STATE, "StateManager.load_checkpoint", checkpoints.wrap_load)
        _installed = True


def uninstall() -> None:
    """Remove every wrapper: ondine holds its own function objects again."""
    global _installed, auto_observer
    with _install_lock:
        auto_observer = None
        if not _installed:
            return
        from ondine.api.pipeline import Pipeline
        from ondine.orchestration.state_manager import StateManager

        unwrap(Pipeline, "execute")
        unwrap(Pipeline, "_execute_stages")
        unwrap(StateManager, "save_checkpoint")
        unwrap(StateManager, "load_checkpoint")
        _installed = False


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


def _execute_stages(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    context = args[0] if args else kwargs.get("context")
    from ondine_otel.hooks import registered

    registered.attach_pending(instance, context)
    try:
        return wrapped(*args, **kwargs)
    except BaseException as error:
        if calls.current() is None and not isinstance(error, Exception):
            # This execute() began before the wrappers existed, so nothing around it will end
            # the run on Ctrl-C: the checkpoint ondine saves next does, after its event.
            run = ACTIVE_RUNS.get(getattr(context, "session_id", None))
            if run is not None:
                run.end_after_checkpoint = error
        raise


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
    from ondine_otel.hooks.observer import ensure_default_observers

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
