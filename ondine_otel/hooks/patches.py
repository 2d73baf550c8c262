"""The safety net around `Pipeline.execute()` and StateManager, applied once by the runtime.

ondine's hooks alone cannot end a run span exactly once: the KeyboardInterrupt path skips
`on_pipeline_error`, and an exception before the first hook or after the last would leave the
span open and its stage span current on the caller's thread. So while any entry is active,
every execute() call is wrapped: when the call ends, runs still open are finished with the
call's error, observers attached for the call are detached, and checkpoint restores nobody
claimed are forgotten. `Pipeline._execute_stages` is wrapped too: it is where a
`with_observer("otel")` run (whose observer ondine creates inside execute()) gets attached.

Nothing is patched at import. `remove()` gives ondine back its own function objects.
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from ondine_otel.hooks import execute_call
from ondine_otel.hooks.batch import BatchWrappers
from ondine_otel.hooks.checkpoints import CheckpointWrappers
from ondine_otel.hooks.host import Host
from ondine_otel.hooks.observer import RunObserver, ensure_default_observers
from ondine_otel.telemetry.guard import quietly, report

_PIPELINE = "ondine.api.pipeline"
_STATE = "ondine.orchestration.state_manager"


class Patches:
    """ondine's functions wrapped for one host: applied once, removed once."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self._checkpoints = CheckpointWrappers(host.registry)
        self._batch = BatchWrappers(host)
        self._applied = False
        self._lock = threading.Lock()

    @property
    def applied(self) -> bool:
        return self._applied

    def apply(self) -> None:
        """Wrap execute, _execute_stages and StateManager's save/load (idempotent)."""
        if self._applied:
            return
        with self._lock:
            if self._applied:
                return
            wrap_function_wrapper(_PIPELINE, "Pipeline.execute", self._execute)
            wrap_function_wrapper(_PIPELINE, "Pipeline._execute_stages", self._execute_stages)
            wrap_function_wrapper(_STATE, "StateManager.save_checkpoint", self._checkpoints.save)
            wrap_function_wrapper(_STATE, "StateManager.load_checkpoint", self._checkpoints.load)
            self._batch.apply()  # Batch-API jobs: submit, poll, collect, ondine's CLI
            self._applied = True

    def remove(self) -> None:
        """Remove every wrapper: ondine holds its own function objects again."""
        with self._lock:
            if not self._applied:
                return
            from ondine.api.pipeline import Pipeline
            from ondine.orchestration.state_manager import StateManager

            unwrap(Pipeline, "execute")
            unwrap(Pipeline, "_execute_stages")
            unwrap(StateManager, "save_checkpoint")
            unwrap(StateManager, "load_checkpoint")
            self._batch.remove()
            self._applied = False

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        self._batch.after_fork()

    # --- wrappers ------------------------------------------------------------------------
    def _execute(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        observer = self._host.auto_observer()
        attached = observer is not None and _attach(instance, observer)
        call = execute_call.Call()
        token = execute_call.CURRENT.set(call)
        error: BaseException | None = None
        try:
            return wrapped(*args, **kwargs)
        except BaseException as raised:
            error = raised
            raise
        finally:
            execute_call.CURRENT.reset(token)
            self._settle(call, error)
            if attached and observer is not None:
                _detach(instance, observer)

    def _execute_stages(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        context = args[0] if args else kwargs.get("context")
        registry = self._host.registry
        session_id = getattr(context, "session_id", None)
        waiting = registry.take_waiting(session_id)
        if waiting is not None:  # a with_observer("otel") observer that saw this run begin
            quietly(
                "attaching the with_observer('otel') observer",
                lambda: waiting.attach(instance, context),
            )
        try:
            return wrapped(*args, **kwargs)
        except BaseException as error:
            if execute_call.current() is None and not isinstance(error, Exception):
                # This execute() began before the wrappers existed, so nothing around it will
                # end the run on Ctrl-C: the checkpoint ondine saves next does, after its event.
                run = registry.run(session_id)
                if run is not None:
                    run.end_after_checkpoint = error
            raise

    def _settle(self, call: execute_call.Call, error: BaseException | None) -> None:
        """Finish what ondine left open in this call; never raises."""
        registry = self._host.registry
        for run in call.runs:
            if run.finished:
                continue
            try:
                registry.end(run, error)
            except Exception as failure:  # noqa: BLE001
                report("ending the run span", failure)
        for cleanup in call.cleanups:
            quietly("detaching an observer after the run", cleanup)
        for session_id in call.restored_sessions:
            registry.take_restore(session_id)


def _attach(pipeline: Any, observer: RunObserver) -> bool:
    """Add our observer for this call (keeping ondine's defaults); False if one is there."""
    try:
        observers = pipeline.observers
        if any(isinstance(existing, RunObserver) for existing in observers):
            return False  # the pipeline's own OtelObserver traces it
        ensure_default_observers(pipeline)
        observers.append(observer)
        return True
    except Exception as error:  # noqa: BLE001
        report("attaching the observer to a pipeline", error)
        return False


def _detach(pipeline: Any, observer: RunObserver) -> None:
    try:
        pipeline.observers[:] = [o for o in pipeline.observers if o is not observer]
    except Exception as error:  # noqa: BLE001
        report("detaching the observer from a pipeline", error)
