"""OtelObserver: ondine's legacy ExecutionObserver hooks -> RunTelemetry, every hook guarded.

ondine calls these hooks without a try/except (an exception here would kill the user's job), so
each one goes through `guarded`. The observer holds no per-run state of its own: runs live in the
process-wide registry keyed by session id, which also lets several entries (instrumentor,
`add_observer`, `with_observer`) coexist without doubling spans: the first to start a run owns it.
"""

from __future__ import annotations

import os
from typing import Any

from ondine.orchestration.observers import (
    CostTrackingObserver,
    ExecutionObserver,
    LoggingObserver,
    ProgressBarObserver,
)
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from ondine_otel.config import RUN_SETTINGS, TelemetryConfig, sdk_disabled
from ondine_otel.hooks import calls
from ondine_otel.hooks.llm_events import ensure_llm_events
from ondine_otel.telemetry import modelname, semconv
from ondine_otel.telemetry.active_runs import Registry
from ondine_otel.telemetry.guard import guarded, report
from ondine_otel.telemetry.metrics import metrics_for
from ondine_otel.telemetry.run import RestoredCheckpoint, RunListener, RunTelemetry
from ondine_otel.telemetry.semconv import OBSERVER_NAME
from ondine_otel.telemetry.tracing import tracer_for

#: Runs in flight, by session id.
ACTIVE_RUNS: Registry[RunTelemetry] = Registry()
#: Checkpoints just loaded by StateManager, waiting for their resumed run to start.
PENDING_RESTORES: Registry[RestoredCheckpoint] = Registry()


def capture_content_from_env() -> bool:
    """The GenAI instrumentations' standard opt-in for recording prompt/completion text."""
    value = os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "")
    return value.strip().lower() == "true"


def pipeline_settings(pipeline: Any) -> dict[str, Any]:
    """The run settings a pipeline chose itself with `with_observer("otel", {...})`.

    Whichever entry traces the run (instrumentor, added observer), these win: two pipelines
    in one process keep their own names even though they share one set-up.
    """
    metadata = getattr(getattr(pipeline, "specifications", None), "metadata", None)
    entries = metadata.get("observers") if isinstance(metadata, dict) else None
    for entry in entries if isinstance(entries, list) else ():
        if isinstance(entry, (tuple, list)) and len(entry) == 2 and entry[0] == OBSERVER_NAME:
            chosen = {k: v for k, v in dict(entry[1] or {}).items() if k in RUN_SETTINGS}
            if chosen:
                config = TelemetryConfig.from_dict(chosen)
                return {name: getattr(config, name) for name in chosen}
    return {}


def ensure_default_observers(pipeline: Any) -> None:
    """Give the pipeline ondine's own default observers if telemetry is all it has.

    ondine installs its progress bar and logging observers only when a pipeline has none, so
    merely attaching ours would silence them; turning telemetry on must not change what the job
    shows.
    """
    observers = getattr(pipeline, "observers", None)
    if not isinstance(observers, list):
        return
    if all(isinstance(existing, OtelObserver) for existing in observers):
        observers.extend([ProgressBarObserver(), LoggingObserver(), CostTrackingObserver()])


class OtelObserver(ExecutionObserver):
    """Turns one pipeline's execution hooks into a trace (and, with a listener, metrics)."""

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        *,
        pipeline_name: str = semconv.DEFAULT_PIPELINE_NAME,
        progress_interval: float = 5.0,
        llm_span_limit: int = 1000,
        capture_content: bool | None = None,
        label_limit: int = 100,
        listener: RunListener | None = None,
    ) -> None:
        """Providers default to the global ones, looked up when a run starts (not before, so
        an application may install its providers after creating the observer)."""
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self.pipeline_name = pipeline_name
        self.progress_interval = progress_interval
        self.llm_span_limit = llm_span_limit
        self.capture_content = (
            capture_content if capture_content is not None else capture_content_from_env()
        )
        self.label_limit = label_limit
        self._listener = listener
        self._disabled = sdk_disabled()

    @property
    def listener(self) -> RunListener:
        """Where run events go besides spans: the metrics of our MeterProvider by default."""
        if self._listener is None:
            self._listener = metrics_for(self._meter_provider, label_limit=self.label_limit)
        return self._listener

    def _run(self, context: Any) -> RunTelemetry | None:
        """The run this observer owns for `context`, if any."""
        run = ACTIVE_RUNS.get(getattr(context, "session_id", None))
        return run if run is not None and run.owner is self else None

    @guarded("on_pipeline_start")
    def on_pipeline_start(self, pipeline: Any, context: Any) -> None:
        if self._disabled:
            return
        session_id = getattr(context, "session_id", None)
        existing = ACTIVE_RUNS.get(session_id)
        if existing is not None and not existing.finished:
            return  # another entry already traces this run
        ensure_default_observers(pipeline)
        provider, model = modelname.from_pipeline(pipeline)
        own = pipeline_settings(pipeline)
        run = RunTelemetry(
            context,
            tracer_for(self._tracer_provider),
            owner=self,
            pipeline_name=own.get("pipeline_name", self.pipeline_name),
            provider=provider,
            model=model,
            progress_interval=own.get("progress_interval", self.progress_interval),
            llm_span_limit=own.get("llm_span_limit", self.llm_span_limit),
            capture_content=own.get("capture_content", self.capture_content),
            listener=self.listener,
            restored=PENDING_RESTORES.pop(session_id),
        )
        ACTIVE_RUNS.put(session_id, run)
        call = calls.current()
        if call is not None:
            call.runs.append(run)  # the safety net ends it if ondine does not
        self.listener.run_started(run)
        try:
            ensure_llm_events(context)
        except Exception as error:  # noqa: BLE001 - the run is traced without its LLM calls
            report("asking ondine for llm_call events", error)

    @guarded("on_stage_start")
    def on_stage_start(self, stage: Any, context: Any) -> None:
        run = self._run(context)
        if run is not None:
            run.stage_started(_stage_name(stage))

    @guarded("on_stage_complete")
    def on_stage_complete(self, stage: Any, context: Any, result: Any) -> None:
        run = self._run(context)
        if run is not None:
            run.stage_ended(_stage_name(stage))

    @guarded("on_stage_error")
    def on_stage_error(self, stage: Any, context: Any, error: Exception) -> None:
        run = self._run(context)
        if run is not None:
            run.stage_ended(_stage_name(stage), error)

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
            run.progress()

    def finish(self, context: Any, error: BaseException | None = None) -> None:
        """End this observer's run for `context` (idempotent) and forget it."""
        run = self._run(context)
        if run is not None:
            finish_run(run, error)


def finish_run(run: RunTelemetry, error: BaseException | None = None) -> None:
    """End a run found outside its observer (the execute wrapper's safety net)."""
    run.finish(error)
    ACTIVE_RUNS.remove(run.session_id, run)


def _stage_name(stage: Any) -> str:
    name = getattr(stage, "name", None)
    return str(name) if name else type(stage).__name__
