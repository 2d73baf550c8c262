"""RunObserver: ondine's legacy ExecutionObserver hooks -> RunTelemetry, every hook guarded.

ondine calls these hooks without a try/except (an exception here would kill the user's job), so
each one goes through `guarded`. The observer holds no per-run state of its own: runs live in
the host's registry keyed by session id, which also lets several entries (instrumentor,
`add_observer`, `with_observer`) coexist without doubling spans: the first to start a run owns
it. The LLMInvocation stage's client is wrapped while the stage runs (see `hooks.client`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from ondine.orchestration.observers import (
    CostTrackingObserver,
    ExecutionObserver,
    LoggingObserver,
    ProgressBarObserver,
)
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from ondine_otel.config import DEFAULTS, RUN_SETTINGS, TelemetryConfig, sdk_disabled
from ondine_otel.hooks import execute_call
from ondine_otel.hooks.client import mute_own_events
from ondine_otel.hooks.host import Host
from ondine_otel.hooks.llm_events import listen_to_llm_events
from ondine_otel.telemetry import modelname, semconv
from ondine_otel.telemetry.guard import guarded, report
from ondine_otel.telemetry.llm_calls import request_attributes
from ondine_otel.telemetry.run import RunListener, RunTelemetry
from ondine_otel.telemetry.tracing import tracer_for


def pipeline_settings(pipeline: Any) -> dict[str, Any]:
    """The run settings a pipeline chose itself with `with_observer("otel", {...})`.

    Whichever entry traces the run (instrumentor, added observer), these win: two pipelines
    in one process keep their own names even though they share one set-up.
    """
    metadata = getattr(getattr(pipeline, "specifications", None), "metadata", None)
    entries = metadata.get("observers") if isinstance(metadata, dict) else None
    for entry in entries if isinstance(entries, list) else ():
        if (
            isinstance(entry, (tuple, list))
            and len(entry) == 2
            and entry[0] == semconv.OBSERVER_NAME
        ):
            chosen = {k: v for k, v in dict(entry[1] or {}).items() if k in RUN_SETTINGS}
            if chosen:
                config = TelemetryConfig.from_dict(chosen)
                return {name: getattr(config, name) for name in chosen}
    return {}


def pipeline_budget(pipeline: Any) -> float | None:
    """ondine's `with_max_budget` of the pipeline in USD, if it has one."""
    processing = getattr(getattr(pipeline, "specifications", None), "processing", None)
    budget = getattr(processing, "max_budget", None)
    try:
        return None if budget is None else float(budget)
    except (TypeError, ValueError):
        return None


def ensure_default_observers(pipeline: Any) -> None:
    """Give the pipeline ondine's own default observers if telemetry is all it has.

    ondine installs its progress bar and logging observers only when a pipeline has none, so
    merely attaching ours would silence them; turning telemetry on must not change what the job
    shows.
    """
    observers = getattr(pipeline, "observers", None)
    if not isinstance(observers, list):
        return
    if all(isinstance(existing, RunObserver) for existing in observers):
        observers.extend([ProgressBarObserver(), LoggingObserver(), CostTrackingObserver()])


class RunObserver(ExecutionObserver):
    """Turns one pipeline's execution hooks into a trace and metrics, on its host's runs."""

    def __init__(
        self,
        host: Host,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        *,
        pipeline_name: str = DEFAULTS["pipeline_name"],
        progress_interval: float = DEFAULTS["progress_interval"],
        llm_span_limit: int = DEFAULTS["llm_span_limit"],
        llm_error_span_limit: int = DEFAULTS["llm_error_span_limit"],
        llm_span_rate: float = DEFAULTS["llm_span_rate"],
        capture_content: bool | None = None,
        label_limit: int = DEFAULTS["label_limit"],
        listeners: Sequence[RunListener] | None = None,
    ) -> None:
        """Providers default to the global ones, looked up when a run starts (not before, so
        an application may install its providers after creating the observer)."""
        self._host = host
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self.pipeline_name = pipeline_name
        self.progress_interval = progress_interval
        self.llm_span_limit = llm_span_limit
        self.llm_error_span_limit = llm_error_span_limit
        self.llm_span_rate = llm_span_rate
        self.capture_content = (
            capture_content
            if capture_content is not None
            else TelemetryConfig.from_settings().capture_content
        )
        self.label_limit = label_limit
        self._listeners = None if listeners is None else tuple(listeners)
        self._disabled = sdk_disabled()
        if not self._disabled:
            host.ensure_patched()  # the safety net around this observer's runs

    @property
    def disabled(self) -> bool:
        return self._disabled

    def destinations(self) -> tuple[TracerProvider | None, Sequence[RunListener]]:
        """Where this observer's runs (and batch jobs) report: tracer provider, listeners."""
        if self._listeners is not None:
            return self._tracer_provider, self._listeners
        return self._host.destinations(
            self._tracer_provider, self._meter_provider, self.label_limit
        )

    def _run(self, context: Any) -> RunTelemetry | None:
        """The run this observer drives `context`'s part of, if any."""
        run = self._host.registry.run(getattr(context, "session_id", None))
        return run if run is not None and run.owns(context, self) else None

    @guarded("on_pipeline_start")
    def on_pipeline_start(self, pipeline: Any, context: Any) -> None:
        if self._disabled:
            return
        registry = self._host.registry
        session_id = getattr(context, "session_id", None)
        if registry.run(session_id) is not None:
            return  # another entry already traces this run
        self._host.ensure_patched()  # uninstrument() may have removed it since
        ensure_default_observers(pipeline)
        call = execute_call.current()
        stream = call.stream if call is not None else None
        if stream is None:
            self._start(pipeline, context, call)
            return
        with stream.lock:  # a pipelined stream starts two chunks at once
            stream.chunks += 1
            chunk = call.chunk if call is not None and call.chunk is not None else 0
            if stream.run is None:
                stream.run = self._start(pipeline, context, call)
                return
            run = stream.run
        run.join(context, self, chunk, stream.row_offset(chunk))
        registry.begin(run, session_id)
        if call is not None:
            call.parts.append((run, context))

    def _start(self, pipeline: Any, context: Any, call: execute_call.Call | None) -> RunTelemetry:
        """A new run for `context` (a plain run, a stream's first chunk, a composed column)."""
        registry = self._host.registry
        tracer_provider, listeners = self.destinations()
        tracer = tracer_for(tracer_provider)
        group = call if call is not None else execute_call.Call()
        stream, composition = group.stream, group.composition
        extra: dict[str, Any] = {}
        parent = None
        if composition is not None:
            parent = composition.parent_for(context, tracer)
            extra[semconv.ATTR_COLUMN] = group.column
        if stream is not None:
            extra[semconv.ATTR_STREAM_METHOD] = stream.method
        provider, model = modelname.from_pipeline(pipeline)
        own = pipeline_settings(pipeline)
        session_id = getattr(context, "session_id", None)
        run = RunTelemetry(
            context,
            tracer,
            owner=self,
            pipeline_name=own.get("pipeline_name", self.pipeline_name),
            provider=provider,
            model=model,
            progress_interval=own.get("progress_interval", self.progress_interval),
            llm_span_limit=own.get("llm_span_limit", self.llm_span_limit),
            llm_error_span_limit=own.get("llm_error_span_limit", self.llm_error_span_limit),
            llm_span_rate=own.get("llm_span_rate", self.llm_span_rate),
            capture_content=own.get("capture_content", self.capture_content),
            listeners=listeners,
            restored=registry.take_restore(session_id),
            budget_usd=pipeline_budget(pipeline),
            parent=parent,
            chunk=None if stream is None else group.chunk or 0,
            expected_rows=None if stream is None else stream.expected_rows,
            attributes=extra,
        )
        if composition is not None:
            composition.runs.append(run)
        registry.begin(run)
        if call is not None:
            call.parts.append((run, context))  # the safety net ends it if ondine does not
        run.announce()
        return run

    @guarded("on_stage_start")
    def on_stage_start(self, stage: Any, context: Any) -> None:
        run = self._run(context)
        if run is None:
            return
        run.stage_started(context, _stage_name(stage))
        llm_client = getattr(stage, "llm_client", None)
        if llm_client is not None:
            self._watch_client(run, (id(context), id(llm_client)), llm_client)

    @guarded("on_stage_complete")
    def on_stage_complete(self, stage: Any, context: Any, result: Any) -> None:
        self._stage_ended(stage, context, None)

    @guarded("on_stage_error")
    def on_stage_error(self, stage: Any, context: Any, error: Exception) -> None:
        self._stage_ended(stage, context, error)

    def _stage_ended(self, stage: Any, context: Any, error: Exception | None) -> None:
        run = self._run(context)
        if run is None:
            return
        llm_client = getattr(stage, "llm_client", None)
        if llm_client is not None:
            run.run_cleanup((id(context), id(llm_client)))
        run.stage_ended(context, _stage_name(stage), error)

    @guarded("on_pipeline_complete")
    def on_pipeline_complete(self, context: Any, result: Any) -> None:
        self.finish(context)

    @guarded("on_pipeline_error")
    def on_pipeline_error(self, context: Any, error: Exception) -> None:
        self.finish(context, error)

    @guarded("on_progress_update")
    def on_progress_update(self, context: Any) -> None:
        run = self._run(context)
        if run is not None:
            run.progress(context)

    def finish(self, context: Any, error: BaseException | None = None) -> None:
        """End this observer's run for `context` (idempotent) and forget it."""
        run = self._run(context)
        if run is not None and run.end_part(context, error):
            self._host.registry.end(run, error)

    def _watch_client(self, run: RunTelemetry, key: object, llm_client: Any) -> None:
        """Record the stage's calls: through a wrapped client, else ondine's llm_call events."""
        if "litellm.integrations.custom_logger" in sys.modules:  # litellm is in use (and
            self._host.ensure_router_logger()  # fully imported): a Router's attempts
        clients = self._host.clients
        try:
            wrapped = clients.wrap(llm_client, run.llm)
        except Exception as error:  # noqa: BLE001
            report("wrapping the LLM client", error)
            wrapped = False
        if not wrapped:
            listen_to_llm_events(llm_client)
            return
        run.llm.reporting(+1)
        run.llm.request = request_attributes(getattr(llm_client, "spec", None))
        restore_events = mute_own_events(llm_client)

        def unwatch() -> None:
            clients.unwrap(llm_client, run.llm)
            restore_events()
            run.llm.reporting(-1)

        run.add_cleanup(key, unwatch)


def _stage_name(stage: Any) -> str:
    name = getattr(stage, "name", None)
    return str(name) if name else type(stage).__name__
