"""The observer ondine knows by name: `builder.with_observer("otel", {...})`.

ondine 2.1.1 sends named observers only pipeline start/end, errors and `llm_call` events, never
stage events, so on its own this entry could not draw a run's trace. When a run starts it
therefore finds the running pipeline (the `Pipeline.execute` frame that dispatched the event,
matched by session id) and attaches an OtelObserver to it for that run; ondine then calls the
stage hooks on it like on any observer. LLM calls reach RunTelemetry through the OTel context.

Its config dict takes the `TelemetryConfig` argument names and is validated when
`with_observer` is called, so a bad value fails while the pipeline is built, not mid-job.
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

from ondine.api.pipeline_builder import PipelineBuilder
from ondine.observability.registry import ObserverRegistry, observer
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from wrapt import wrap_function_wrapper

from ondine_otel.config import RUN_SETTINGS, TelemetryConfig, sdk_disabled
from ondine_otel.export import setup as telemetry
from ondine_otel.hooks import calls
from ondine_otel.hooks.llm_events import LLMCallListener
from ondine_otel.hooks.observer import ACTIVE_RUNS, OtelObserver
from ondine_otel.telemetry import semconv
from ondine_otel.telemetry.guard import guarded

_FRAMES_TO_SEARCH = 12


def _running_pipeline(session_id: Any) -> Any:
    """The Pipeline whose `execute` frame is running the run `session_id`, if found."""
    frame: FrameType | None = sys._getframe(1)
    for _ in range(_FRAMES_TO_SEARCH):
        if frame is None:
            return None
        local = frame.f_locals
        context = local.get("context")
        pipeline = local.get("self")
        if (
            frame.f_code.co_name == "execute"
            and context is not None
            and str(getattr(context, "session_id", None)) == str(session_id)
            and isinstance(getattr(pipeline, "observers", None), list)
        ):
            return pipeline
        frame = frame.f_back
    return None


def _observer_for(config: TelemetryConfig, settings: dict[str, Any]) -> OtelObserver:
    """An OtelObserver on the active set-up, setting one up from `settings` if there is none."""
    handle = telemetry.current()
    if handle is None and not isinstance(trace.get_tracer_provider(), SdkTracerProvider):
        # Nothing exports yet: set up what instrument() would, minus this pipeline's own run
        # settings, which must not become every other pipeline's defaults.
        shared = {k: v for k, v in settings.items() if k not in RUN_SETTINGS}
        handle = telemetry.instrument(**shared)
    if handle is not None and handle.enabled:
        return handle.new_observer()
    return OtelObserver(**config.observer_settings())


class NamedOtelObserver(LLMCallListener):
    """What ondine instantiates, once per run, for `with_observer("otel", config)`."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self._settings = dict(config or {})
        self._attached: tuple[Any, OtelObserver] | None = None

    @guarded("with_observer('otel') pipeline start")
    def on_pipeline_start(self, event: Any) -> None:
        if sdk_disabled():
            return
        session_id = getattr(event, "run_id", None)
        if ACTIVE_RUNS.get(session_id) is not None:
            return  # the instrumentor (or an added OtelObserver) already traces this run
        config = TelemetryConfig.from_settings(**self._settings)
        if config.disabled:
            return
        pipeline = _running_pipeline(session_id)
        if pipeline is None or any(isinstance(o, OtelObserver) for o in pipeline.observers):
            return
        attached = _observer_for(config, self._settings)
        # Appended before ondine notifies its legacy observers, so ours hears the start too.
        pipeline.observers.append(attached)
        self._attached = (pipeline, attached)
        call = calls.current()
        if call is not None:  # ondine skips close() on KeyboardInterrupt: detach then too
            call.cleanups.append(self.close)

    @guarded("with_observer('otel') close")
    def close(self) -> None:
        """ondine closes named observers after success and failure: detach ours again."""
        if self._attached is not None:
            pipeline, attached = self._attached
            self._attached = None
            pipeline.observers[:] = [o for o in pipeline.observers if o is not attached]


def _validate_with_observer(
    wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Check the `otel` config while the pipeline is being built (bad values fail here)."""
    name = args[0] if args else kwargs.get("name")
    config = args[1] if len(args) > 1 else kwargs.get("config")
    if name == semconv.OBSERVER_NAME:
        TelemetryConfig.from_settings(**dict(config or {}))
    return wrapped(*args, **kwargs)


_registered = False


def register() -> None:
    """Register `otel` with ondine (idempotent: the package may be imported twice)."""
    global _registered
    if _registered:
        return
    if not ObserverRegistry.is_registered(semconv.OBSERVER_NAME):
        observer(semconv.OBSERVER_NAME)(NamedOtelObserver)
    wrap_function_wrapper(PipelineBuilder, "with_observer", _validate_with_observer)
    _registered = True
