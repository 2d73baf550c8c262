"""The observer ondine knows by name: `builder.with_observer("otel", {...})`.

ondine 2.1.1 sends named observers only pipeline start/end, errors and `llm_call` events, never
stage events, so on its own this entry could not draw a run's trace. ondine creates it inside
`execute()`; creating it applies the runtime's safety net, whose `_execute_stages` wrapper then
hands the running pipeline to `attach` (the observer waits in the run registry until then),
which adds an observer for that run; ondine calls the stage hooks on it like on any observer.

Its config dict takes the `TelemetryConfig` argument names. ondine stores that dict in the
pipeline's specification and sends it in `pipeline_start` to every observer, so secret settings
are refused: they are removed from the dict before ondine sends it, and reported once naming the
environment variable to use. `TelemetryConfig(...).to_dict()` builds a checked dict while the
pipeline is built; a bad value in a hand-written dict fails when the run starts (ondine logs it
and runs without this observer).
"""

from __future__ import annotations

import functools
from typing import Any

from ondine.api.pipeline_builder import PipelineBuilder
from ondine.observability.registry import ObserverRegistry, observer
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

from ondine_otel.config import (
    RUN_SETTINGS,
    SECRET_SETTINGS,
    ConfigError,
    TelemetryConfig,
    observer_config,
    sdk_disabled,
)
from ondine_otel.entries.instrument import instrument
from ondine_otel.hooks import execute_call
from ondine_otel.hooks.llm_events import LLMCallListener
from ondine_otel.hooks.observer import RunObserver
from ondine_otel.runtime import runtime
from ondine_otel.telemetry import semconv
from ondine_otel.telemetry.guard import guarded, report


def _observer_for(config: TelemetryConfig, settings: dict[str, Any]) -> RunObserver:
    """An observer on the active set-up, setting one up from `settings` if there is none."""
    found = runtime.get()
    handle = found.handle
    if handle is None and not isinstance(trace.get_tracer_provider(), SdkTracerProvider):
        # Nothing exports yet: set up what instrument() would, minus this pipeline's own run
        # settings, which must not become every other pipeline's defaults.
        shared = {k: v for k, v in settings.items() if k not in RUN_SETTINGS}
        handle = instrument(**shared)
    if handle is not None and handle.enabled:
        return handle.new_observer()
    return RunObserver(found, **config.observer_settings())


def _without_secrets(config: dict[str, Any] | None) -> dict[str, Any]:
    """Remove secret settings from ondine's stored dict itself, before ondine forwards it."""
    if not isinstance(config, dict):
        return dict(config or {})
    for name in [key for key in config if key in SECRET_SETTINGS]:
        try:
            observer_config({name: config[name]})
        except ConfigError as refused:
            report("with_observer('otel') settings", refused)
        del config[name]
    return dict(config)


class NamedOtelObserver(LLMCallListener):
    """What ondine instantiates, once per run, for `with_observer("otel", config)`."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        settings = _without_secrets(config)
        self._config = observer_config(settings)  # a bad value: ondine logs it, job runs on
        super().__init__(settings)
        self._settings = settings
        self._attached: tuple[Any, RunObserver] | None = None
        if not (sdk_disabled() or self._config.disabled):
            runtime.get().ensure_patched()

    @guarded("with_observer('otel') pipeline start")
    def on_pipeline_start(self, event: Any) -> None:
        if sdk_disabled() or self._config.disabled:
            return
        runtime.get().registry.hold_waiting(getattr(event, "run_id", None), self)

    def attach(self, pipeline: Any, context: Any) -> None:
        """Trace this run through an observer on the pipeline, unless one already does."""
        if runtime.get().registry.run(getattr(context, "session_id", None)) is not None:
            return  # the instrumentor (or an added OtelObserver) already traces this run
        if any(isinstance(o, RunObserver) for o in getattr(pipeline, "observers", ())):
            return
        attached = _observer_for(self._config, self._settings)
        pipeline.observers.append(attached)
        self._attached = (pipeline, attached)
        call = execute_call.current()
        if call is not None:  # ondine skips close() on KeyboardInterrupt: detach then too
            call.cleanups.append(self.close)
        attached.on_pipeline_start(pipeline, context)  # ondine's start hooks already ran

    @guarded("with_observer('otel') close")
    def close(self) -> None:
        """ondine closes named observers after success and failure: detach ours again."""
        if self._attached is not None:
            pipeline, attached = self._attached
            self._attached = None
            pipeline.observers[:] = [o for o in pipeline.observers if o is not attached]


#: Marks the builder method that already prepares the runtime (register() is idempotent).
_PREPARES = "__ondine_otel_prepares__"


def register() -> None:
    """Register `otel` with ondine and have `with_observer("otel")` prepare the runtime
    (idempotent); the only things importing ondine_otel does.

    ondine creates a named observer only inside each run's `execute()`. A stream's chunks,
    a composed call's columns and `execute_async()` run inside a call around it, which ondine-
    otel must already be wrapping when it starts (one trace, one run, the caller's context):
    so the builder call that names the observer applies the runtime's wrappers, before the
    pipeline's first call.
    """
    if not ObserverRegistry.is_registered(semconv.OBSERVER_NAME):
        observer(semconv.OBSERVER_NAME)(NamedOtelObserver)
    original = PipelineBuilder.with_observer
    if getattr(original, _PREPARES, False):
        return

    @functools.wraps(original)
    def with_observer(
        self: PipelineBuilder, name: str, config: dict[str, Any] | None = None
    ) -> PipelineBuilder:
        builder = original(self, name, config)
        if name == semconv.OBSERVER_NAME:
            _prepare(config)
        return builder

    setattr(with_observer, _PREPARES, True)
    PipelineBuilder.with_observer = with_observer


@guarded("with_observer('otel') set-up")
def _prepare(config: dict[str, Any] | None) -> None:
    """Apply the runtime's wrappers unless this observer is off; a bad setting is left to the
    run, which reports it (ondine then runs without the observer)."""
    try:
        disabled = sdk_disabled() or observer_config(_without_secrets(config)).disabled
    except ConfigError:
        return
    if not disabled:
        runtime.get().ensure_patched()
