"""OndineInstrumentor: trace every `Pipeline.execute()` without touching the job's code.

It attaches one shared OtelObserver to each pipeline for the duration of `execute()`, and wraps
`execute` itself because ondine's hooks alone cannot end a run span exactly once: the
KeyboardInterrupt path skips `on_pipeline_error`, and an exception before the first hook or
after the last would leave the span open. It also wraps StateManager's checkpoint save/load.
"""

from __future__ import annotations

from collections.abc import Collection
from contextvars import ContextVar
from typing import Any

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from ondine_otel import checkpoints, semconv
from ondine_otel.config import sdk_disabled
from ondine_otel.guard import report
from ondine_otel.observer import OtelObserver, ensure_default_observers, finish_run
from ondine_otel.package import _instruments
from ondine_otel.run import RunListener, RunTelemetry

_PIPELINE_MODULE = "ondine.api.pipeline"
_STATE_MODULE = "ondine.orchestration.state_manager"

# Runs started inside the current `execute()` call; lets the wrapper end what ondine left open.
_CALL_RUNS: ContextVar[list[RunTelemetry] | None] = ContextVar("ondine_otel_call", default=None)


def _note_run(run: RunTelemetry) -> None:
    runs = _CALL_RUNS.get()
    if runs is not None:
        runs.append(run)


class OndineInstrumentor(BaseInstrumentor):
    """`OndineInstrumentor().instrument(tracer_provider=..., meter_provider=...)`."""

    _observer: OtelObserver | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        if sdk_disabled():
            return  # OTEL_SDK_DISABLED=true: every entry is a no-op
        listener: RunListener | None = kwargs.get("listener")
        self._observer = OtelObserver(
            kwargs.get("tracer_provider"),
            kwargs.get("meter_provider"),
            pipeline_name=kwargs.get("pipeline_name") or semconv.DEFAULT_PIPELINE_NAME,
            progress_interval=float(kwargs.get("progress_interval", 5.0)),
            llm_span_limit=int(kwargs.get("llm_span_limit", 1000)),
            capture_content=kwargs.get("capture_content"),
            label_limit=int(kwargs.get("label_limit", 100)),
            listener=listener,
            on_run_started=_note_run,
        )
        wrap_function_wrapper(_PIPELINE_MODULE, "Pipeline.execute", self._wrap_execute)
        wrap_function_wrapper(_STATE_MODULE, "StateManager.save_checkpoint", checkpoints.wrap_save)
        wrap_function_wrapper(_STATE_MODULE, "StateManager.load_checkpoint", checkpoints.wrap_load)

    def _uninstrument(self, **kwargs: Any) -> None:
        from ondine.api.pipeline import Pipeline
        from ondine.orchestration.state_manager import StateManager

        unwrap(Pipeline, "execute")
        unwrap(StateManager, "save_checkpoint")
        unwrap(StateManager, "load_checkpoint")
        self._observer = None

    @property
    def observer(self) -> OtelObserver | None:
        """The observer attached to pipelines while instrumented."""
        return self._observer

    def _wrap_execute(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        observer = self._observer
        attached = observer is not None and _attach(instance, observer)
        runs: list[RunTelemetry] = []
        token = _CALL_RUNS.set(runs)
        error: BaseException | None = None
        try:
            return wrapped(*args, **kwargs)
        except BaseException as raised:
            error = raised
            raise
        finally:
            _CALL_RUNS.reset(token)
            for run in runs:
                if not run.finished:
                    try:
                        finish_run(run, error)
                    except Exception as failure:  # noqa: BLE001
                        report("ending the run span", failure)
            if attached and observer is not None:
                _detach(instance, observer)


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
