"""The safety net around `Pipeline.execute()` and StateManager, applied once by the runtime.

ondine's hooks alone cannot end a run span exactly once: the KeyboardInterrupt path skips
`on_pipeline_error`, and an exception before the first hook or after the last would leave the
span open and its stage span current on the caller's thread. So while any entry is active,
every execute() call is wrapped: when the call ends, runs still open are finished with the
call's error, observers attached for the call are detached, and checkpoint restores nobody
claimed are forgotten. `Pipeline._execute_stages` is wrapped too: it is where a
`with_observer("otel")` run (whose observer ondine creates inside execute()) gets attached.

Nothing here is patched at import (importing ondine_otel only wraps the builder's
`with_observer`, so that naming "otel" applies these before the pipeline's first call).
`remove()` gives ondine back its own function objects.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from ondine_otel.hooks import execute_call
from ondine_otel.hooks.batch import BatchWrappers
from ondine_otel.hooks.checkpoints import CheckpointWrappers
from ondine_otel.hooks.groups import COMPOSITION, GroupWrappers, HandedOver
from ondine_otel.hooks.host import Host
from ondine_otel.hooks.observer import RunObserver, ensure_default_observers
from ondine_otel.telemetry.guard import quietly, report

_PIPELINE = "ondine.api.pipeline"
_COMPOSER = "ondine.api.pipeline_composer"
_STATE = "ondine.orchestration.state_manager"
#: (module, attribute) of everything wrapped, in the order it is wrapped.
_TARGETS = (
    (_PIPELINE, "Pipeline.execute"),
    (_PIPELINE, "Pipeline._execute_stages"),
    (_PIPELINE, "Pipeline.execute_async"),
    (_PIPELINE, "Pipeline.execute_stream"),
    (_PIPELINE, "Pipeline.execute_stream_async"),
    (_PIPELINE, "Pipeline.execute_stream_pipelined"),
    (_PIPELINE, "Pipeline._process_chunk_async"),
    (_COMPOSER, "PipelineComposer.execute"),
    (_STATE, "StateManager.save_checkpoint"),
    (_STATE, "StateManager.load_checkpoint"),
)


class Patches:
    """ondine's functions wrapped for one host: applied once, removed once."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self._checkpoints = CheckpointWrappers(host.registry)
        self._groups = GroupWrappers(host)
        self._batch = BatchWrappers(host)
        self._applied = False
        self._lock = threading.Lock()

    @property
    def applied(self) -> bool:
        return self._applied

    def _wrappers(self) -> tuple[Any, ...]:
        """The wrapper of each of `_TARGETS`, in order."""
        groups = self._groups
        return (
            self._execute,
            self._execute_stages,
            groups.execute_async,
            groups.execute_stream,
            groups.execute_stream_async,
            groups.execute_stream_pipelined,
            groups.process_chunk,
            groups.compose,
            self._checkpoints.save,
            self._checkpoints.load,
        )

    def apply(self) -> None:
        """Wrap ondine's entry points and StateManager's save/load (idempotent)."""
        if self._applied:
            return
        with self._lock:
            if self._applied:
                return
            for (module, name), wrapper in zip(_TARGETS, self._wrappers(), strict=True):
                wrap_function_wrapper(module, name, wrapper)
            self._batch.apply()  # Batch-API jobs: submit, poll, collect, ondine's CLI
            self._applied = True

    def remove(self) -> None:
        """Remove every wrapper: ondine holds its own function objects again."""
        with self._lock:
            if not self._applied:
                return
            for module, name in _TARGETS:
                owner_name, attribute = name.split(".")
                unwrap(getattr(importlib.import_module(module), owner_name), attribute)
            self._batch.remove()
            self._applied = False

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        self._batch.after_fork()

    # --- wrappers ------------------------------------------------------------------------
    def _execute(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        handed: HandedOver | None = self._host.handovers.get("execute", instance)
        composition = COMPOSITION.get()
        call = execute_call.Call(
            stream=handed.stream if handed is not None else None,
            chunk=handed.chunk if handed is not None else None,
            composition=composition,
            column=None if composition is None else composition.columns.get(id(instance)),
        )
        # execute_async() and stream chunks run here on another thread: take the caller's
        # OpenTelemetry context along, unless this thread has a span of its own.
        joined = None
        if handed is not None and not trace.get_current_span().get_span_context().is_valid:
            joined = otel_context.attach(handed.context)
        stream_observer = call.stream.observer if call.stream is not None else None
        observer = stream_observer or self._host.auto_observer()
        attached = observer is not None and _attach(instance, observer)
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
            if joined is not None:
                otel_context.detach(joined)

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
        for run, context in call.parts:
            try:
                if run.end_part(context, error):
                    registry.end(run, error)
                session_id = str(getattr(context, "session_id", ""))
                if session_id != run.session_id:  # a stream's later chunk
                    registry.release(session_id, run)
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
