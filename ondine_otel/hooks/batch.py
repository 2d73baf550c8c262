"""Batch-API jobs (`with_execution_mode("provider_batch")`) as traces and metrics, end to end.

ondine's `Pipeline.submit()` calls no observer hook (it runs the front-half stages directly,
uploads, and records the job in its run registry), and its CLI's `ondine status` / `ondine
collect` run no pipeline at all, so these wrappers are the way in:
- `Pipeline.submit`: the `ondine.batch.submit` span (the submit trace's root), with the
  front-half stages' `process` calls as stage spans and `ProviderBatchBackend.submit` as the
  CLIENT `ondine.batch.upload` span; the job's sidecar (see `telemetry.batch_job`) is written
  when ondine's registry has the job.
- the CLI's `status` / `collect` click callbacks: `ondine.batch.status` / `ondine.batch.collect`
  roots, each Linked to the submit root through the sidecar.
- `ProviderBatchBackend.poll` and `.collect` used by hand: `ondine.batch.poll` and
  `ondine.batch.collect` roots (Linked when this process knows the job); inside a command, the
  collect's download is a CLIENT `ondine.batch.download` span.
- `RunRegistry.transition` to a terminal status after a collect in this process: the one place
  the collected tokens, cost and requests are counted, so a repeated collect (which ondine
  refuses at that transition) counts nothing. `RunRegistry.__init__` and `.get` tell where the
  registry (and so the sidecar) lives and what a command read.

Every entry reaches these: the instrumentor's observer, an `OtelObserver` added to the
pipeline, or `with_observer("otel")` in the pipeline's specification decide where a submit
reports; the commands and hand-made polls report where the instrumentor does (zero-code
`opentelemetry-instrument ondine collect ...` included). Telemetry failures are logged once and
never change what ondine returns or raises.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, TraceFlags, Tracer
from wrapt import register_post_import_hook, wrap_function_wrapper

from ondine_otel.config import DEFAULTS, sdk_disabled
from ondine_otel.hooks.host import Host
from ondine_otel.hooks.observer import RunObserver, pipeline_settings
from ondine_otel.telemetry import batch_job, modelname, semconv
from ondine_otel.telemetry.batch_job import BatchJob
from ondine_otel.telemetry.batch_metrics import BatchListener, BatchMetrics, Collected
from ondine_otel.telemetry.guard import quietly, report
from ondine_otel.telemetry.ids import (
    format_traceparent,
    parse_traceparent,
    random_span_id,
    random_trace_id,
    span_id_from_ondine,
    trace_id_from_ondine,
)
from ondine_otel.telemetry.metrics import OndineMetrics
from ondine_otel.telemetry.tracing import (
    parent_context,
    record_error,
    span_attributes,
    start_span_with_ids,
    tracer_for,
)

_PIPELINE = "ondine.api.pipeline"
_BACKEND = "ondine.orchestration.backends.provider_batch"
_REGISTRY = "ondine.orchestration.run_registry"
_CLI = "ondine.cli.main"
#: The front half `submit()` runs: (module, class) of each stage.
_STAGES = (
    ("ondine.stages.data_loader_stage", "DataLoaderStage"),
    ("ondine.stages.prompt_formatter_stage", "PromptFormatterStage"),
    ("ondine.stages.batch_aggregator_stage", "BatchAggregatorStage"),
)
_SITE = "tracing a Batch-API job"


@dataclasses.dataclass(frozen=True)
class _Destination:
    """Where one batch operation reports."""

    tracer: Tracer
    metrics: tuple[BatchMetrics, ...]
    listeners: tuple[BatchListener, ...]
    pipeline_name: str

    def report(self, job: BatchJob, action: Callable[[BatchMetrics], None]) -> None:
        """Account a change of `job` in every metrics, then tell the listeners (pushers)."""
        for metrics in self.metrics:
            action(metrics)
        for listener in self.listeners:
            listener.batch_job_changed(job.pipeline, job.run_id, not job.in_flight)


@dataclasses.dataclass
class _Op:
    """One user-level batch call in progress: submit, or a status/collect command."""

    kind: str
    span: Span | None
    destination: _Destination
    provider: str = "unknown"
    model: str = "unknown"
    job: BatchJob | None = None
    directory: Path | None = None
    handle: Any = None
    stage_index: int = 0
    requests: int = 0
    prompt_chars: int = 0
    reported: bool = False
    #: A submit's root opens at its first stage, with the ids of ondine's context (contract
    #: section 1); until then, where it will join and when the call began.
    parent: otel_context.Context | None = None
    started_ns: int = 0
    attributes: dict[str, Any] = dataclasses.field(default_factory=dict)

    def root(self, ondine_context: Any = None) -> Span:
        """The op's root span, opened now if it is not yet (ondine's ids when given)."""
        if self.span is None:
            trace_id = trace_id_from_ondine(getattr(ondine_context, "trace_id", None))
            span_id = span_id_from_ondine(getattr(ondine_context, "span_id", None))
            self.span = start_span_with_ids(
                self.destination.tracer,
                semconv.SPAN_BATCH_SUBMIT,
                trace_id=trace_id or random_trace_id(),
                span_id=span_id or random_span_id(),
                parent=self.parent if self.parent is not None else otel_context.Context(),
                attributes=self.attributes,
                start_time=self.started_ns or None,
            )
        return self.span


_OP: ContextVar[_Op | None] = ContextVar("ondine_otel_batch_op", default=None)


def _link(job: BatchJob | None) -> list[Link]:
    """A Link to the submit root named in the job's sidecar, if any."""
    parsed = parse_traceparent(job.traceparent) if job is not None else None
    if parsed is None:
        return []
    flags = TraceFlags(TraceFlags.SAMPLED if parsed.sampled else TraceFlags.DEFAULT)
    return [Link(SpanContext(parsed.trace_id, parsed.span_id, True, flags))]


def _job_attributes(job: BatchJob) -> dict[str, Any]:
    return span_attributes(
        {
            semconv.ATTR_BATCH_RUN_ID: job.run_id,
            semconv.ATTR_BATCH_PROVIDER_JOB_ID: job.provider_job_id or None,
            semconv.ATTR_PIPELINE_NAME: job.pipeline or None,
            semconv.ATTR_LLM_PROVIDER: job.provider,
            semconv.ATTR_LLM_MODEL: job.model,
            semconv.OPENINFERENCE_SPAN_KIND: semconv.KIND_CHAIN,
        }
    )


def _names_otel(pipeline: Any) -> bool:
    """Whether the pipeline asked for ondine-otel with `with_observer("otel", ...)`."""
    metadata = getattr(getattr(pipeline, "specifications", None), "metadata", None)
    entries = metadata.get("observers") if isinstance(metadata, dict) else None
    return any(
        isinstance(entry, (tuple, list)) and entry and entry[0] == semconv.OBSERVER_NAME
        for entry in (entries if isinstance(entries, list) else ())
    )


def _failed(error: BaseException, *spans: Span | None) -> None:
    """Mark spans failed; never raises (the job's own error is what propagates)."""
    for span in spans:
        if span is not None:
            try:
                record_error(span, error)
            except Exception as failure:  # noqa: BLE001
                report(_SITE, failure)


def _count_prompts(prompts: Any) -> tuple[int, int]:
    """(requests, characters) of the PromptBatches a submit uploads."""
    requests = chars = 0
    for batch in prompts or ():
        for text in getattr(batch, "prompts", ()):
            requests += 1
            chars += len(text) if isinstance(text, str) else 0
    return requests, chars


def _iso_to_unix(text: Any) -> float:
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except (TypeError, ValueError):
        return 0.0


def _job_from_handle(handle: Any, pipeline: str) -> BatchJob:
    """A job submitted without telemetry, as far as ondine's registry describes it."""
    snapshot = getattr(handle, "spec_snapshot", None) or {}
    provider, model = modelname.split_route(
        str(snapshot.get("model") or "unknown"), str(snapshot.get("provider") or "unknown")
    )
    return BatchJob(
        str(handle.run_id),
        str(handle.provider_job_id or ""),
        pipeline=pipeline,
        provider=provider or "unknown",
        model=model,
        requests=int(snapshot.get("total_prompts") or 0),
        submitted_at=_iso_to_unix(getattr(handle, "created_at", None)),
        status=str(getattr(handle.status, "value", handle.status)),
    )


class BatchWrappers:
    """The Batch-API wrappers of one host; applied and removed by its Patches."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self._lock = threading.Lock()
        self._directories: weakref.WeakKeyDictionary[Any, Path] = weakref.WeakKeyDictionary()
        # Every registry directory this process opened, kept after its RunRegistry is gone:
        # where a poll or collect by hand looks up the job it names (an ordered set).
        self._opened: dict[Path, None] = {}
        # By provider job id: the last poll (a collect's own check), a finished collect
        # waiting for its terminal transition, and the jobs this process submitted or read.
        self._progress: dict[str, Any] = {}
        self._collected: dict[str, tuple[Collected, _Destination]] = {}
        self._jobs: dict[str, tuple[BatchJob, Path | None]] = {}
        # ondine's CLI (click, yaml: 35 modules, ~20 ms) is wrapped when something imports it,
        # not imported by every instrumented job (the hook stays on wrapt's list once added).
        self._cli_wanted = self._cli_wrapped = self._cli_hooked = False

    def apply(self) -> None:
        wrap_function_wrapper(_PIPELINE, "Pipeline.submit", self._submit)
        for module, name in _STAGES:
            wrap_function_wrapper(module, f"{name}.process", self._stage)
        wrap_function_wrapper(_BACKEND, "ProviderBatchBackend.submit", self._upload)
        wrap_function_wrapper(_BACKEND, "ProviderBatchBackend.poll", self._poll)
        wrap_function_wrapper(_BACKEND, "ProviderBatchBackend.collect", self._collect)
        wrap_function_wrapper(_REGISTRY, "RunRegistry.__init__", self._registry_opened)
        wrap_function_wrapper(_REGISTRY, "RunRegistry.get", self._registry_read)
        wrap_function_wrapper(_REGISTRY, "RunRegistry.transition", self._transition)
        with self._lock:
            self._cli_wanted = True
            hook = not self._cli_hooked
            self._cli_hooked = True
        if hook:  # runs at once if the CLI is imported already, else when it is
            register_post_import_hook(self._wrap_cli, _CLI)
        elif _CLI in sys.modules:
            self._wrap_cli(sys.modules[_CLI])

    def _wrap_cli(self, module: Any) -> None:
        """Wrap the `status` and `collect` commands, if the wrappers are still applied."""
        with self._lock:  # against a concurrent remove(); wrapping imports nothing
            if not self._cli_wanted or self._cli_wrapped:
                return
            wrap_function_wrapper(module, "status.callback", self._status_command)
            wrap_function_wrapper(module, "collect.callback", self._collect_command)
            self._cli_wrapped = True

    def remove(self) -> None:
        import importlib

        from ondine.api.pipeline import Pipeline
        from ondine.orchestration.backends.provider_batch import ProviderBatchBackend
        from ondine.orchestration.run_registry import RunRegistry

        unwrap(Pipeline, "submit")
        for module, name in _STAGES:
            unwrap(getattr(importlib.import_module(module), name), "process")
        for method in ("submit", "poll", "collect"):
            unwrap(ProviderBatchBackend, method)
        for method in ("__init__", "get", "transition"):
            unwrap(RunRegistry, method)
        with self._lock:
            self._cli_wanted = False
            if self._cli_wrapped:
                cli = sys.modules[_CLI]
                unwrap(cli.status, "callback")
                unwrap(cli.collect, "callback")
                self._cli_wrapped = False

    def after_fork(self) -> None:
        self._lock = threading.Lock()

    # --- where a call reports ------------------------------------------------------------
    def _destination(self, pipeline: Any = None) -> _Destination | None:
        """The entry tracing this call: the pipeline's own OtelObserver or with_observer
        settings, else the instrumentor's observer; None when nothing traces it."""
        if sdk_disabled():
            return None
        observers = getattr(pipeline, "observers", None) if pipeline is not None else None
        observer = next((o for o in observers or () if isinstance(o, RunObserver)), None)
        if observer is None:
            observer = self._host.auto_observer()
        own = pipeline_settings(pipeline) if pipeline is not None else {}
        if isinstance(observer, RunObserver) and not observer.disabled:
            tracer_provider, listeners = observer.destinations()
            name = own.get("pipeline_name", observer.pipeline_name)
        elif pipeline is not None and _names_otel(pipeline):
            limit = own.get("label_limit", DEFAULTS["label_limit"])
            tracer_provider, listeners = self._host.destinations(None, None, limit)
            name = own.get("pipeline_name", DEFAULTS["pipeline_name"])
        else:
            return None
        return _Destination(
            tracer_for(tracer_provider),
            tuple(each.batch for each in listeners if isinstance(each, OndineMetrics)),
            tuple(each for each in listeners if isinstance(each, BatchListener)),
            str(name),
        )

    def _safe_destination(self, pipeline: Any = None) -> _Destination | None:
        try:
            return self._destination(pipeline)
        except Exception as error:  # noqa: BLE001
            report(_SITE, error)
            return None

    def _directory_of(self, registry: Any) -> Path | None:
        found = self._directories.get(registry)
        if found is None:
            path = getattr(registry, "_db_path", None)  # opened before we were applied
            found = None if path is None else Path(path).parent
        return found

    # --- one user-level call ---------------------------------------------------------------
    def _run(self, op: _Op, call: Callable[[], Any]) -> Any:
        """Run `call` with `op` current (its span the active span), then settle the op."""
        token = _OP.set(op)
        # A command's root is current while it runs (a submit's opens later, at its first stage,
        # whose span is then current).
        attached = (
            None if op.span is None else otel_context.attach(trace.set_span_in_context(op.span))
        )
        result: Any = None
        error: BaseException | None = None
        try:
            result = call()
            return result
        except BaseException as raised:
            error = raised
            raise
        finally:
            if attached is not None:
                otel_context.detach(attached)
            _OP.reset(token)
            quietly(_SITE, lambda: self._settle(op, result, error))

    def _settle(self, op: _Op, result: Any, error: BaseException | None) -> None:
        failed = error is not None and not (
            isinstance(error, SystemExit) and error.code in (0, None)
        )
        span = op.root()
        try:
            if failed and error is not None:
                record_error(span, error)
            if op.kind == "submit":
                if not failed:
                    self._submitted(op, result)
            else:
                self._looked(op)
        finally:
            span.end()
        if op.job is not None:
            job = op.job
            op.destination.report(job, lambda metrics: metrics.seen(job))

    def _child(self, op: _Op, name: str, kind: SpanKind, attributes: dict[str, Any]) -> Span:
        return op.destination.tracer.start_span(
            name,
            context=trace.set_span_in_context(op.root()),
            kind=kind,
            attributes=span_attributes(
                {semconv.OPENINFERENCE_SPAN_KIND: semconv.KIND_CHAIN, **attributes}
            ),
        )

    # --- submit ------------------------------------------------------------------------------
    def _submit(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        destination = self._safe_destination(instance) if _OP.get() is None else None
        if destination is None:
            return wrapped(*args, **kwargs)
        provider, model = modelname.from_pipeline(instance)
        op = _Op(
            "submit",
            None,
            destination,
            provider=provider or "unknown",
            model=model or "unknown",
            parent=parent_context(),
            started_ns=time.time_ns(),
            attributes={
                semconv.ATTR_PIPELINE_NAME: destination.pipeline_name,
                semconv.ATTR_LLM_PROVIDER: provider or "unknown",
                semconv.ATTR_LLM_MODEL: model or "unknown",
                semconv.OPENINFERENCE_SPAN_KIND: semconv.KIND_CHAIN,
            },
        )
        return self._run(op, lambda: wrapped(*args, **kwargs))

    def _submitted(self, op: _Op, handle: Any) -> None:
        """The job exists in ondine's registry: describe it, keep its sidecar, count it."""
        now = time.time()
        span = op.root()
        context = span.get_span_context()
        snapshot = getattr(handle, "spec_snapshot", None) or {}
        job = BatchJob(
            str(handle.run_id),
            str(handle.provider_job_id or ""),
            pipeline=op.destination.pipeline_name,
            provider=op.provider,
            model=op.model,
            requests=int(snapshot.get("total_prompts") or op.requests),
            submitted_at=now,
            estimated_cost_usd=batch_job.estimated_cost(op.provider, op.model, op.prompt_chars),
            traceparent=format_traceparent(
                context.trace_id, context.span_id, context.trace_flags.sampled
            ),
            status=str(getattr(handle.status, "value", handle.status)),
            checked_at=now,
        )
        span.set_attributes(
            {
                **_job_attributes(job),
                semconv.ATTR_BATCH_REQUESTS: job.requests,
                semconv.ATTR_BATCH_ESTIMATED_COST_USD: job.estimated_cost_usd,
            }
        )
        if op.directory is not None:
            batch_job.save(op.directory, job)
        with self._lock:
            self._jobs[job.provider_job_id] = (job, op.directory)
        op.destination.report(job, lambda metrics: metrics.submitted(job))
        # reported: `_settle` must not report the same job again
        op.job = None

    def _stage(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        op = _OP.get()
        if op is None or op.kind != "submit":
            return wrapped(*args, **kwargs)
        name = str(getattr(instance, "name", None) or type(instance).__name__)
        try:
            op.root(args[1] if len(args) > 1 else kwargs.get("context"))
            span = self._child(
                op,
                f"{semconv.SPAN_STAGE_PREFIX} {name}",
                SpanKind.INTERNAL,
                {semconv.ATTR_STAGE_NAME: name, semconv.ATTR_STAGE_INDEX: op.stage_index},
            )
            op.stage_index += 1
        except Exception as error:  # noqa: BLE001
            report(_SITE, error)
            return wrapped(*args, **kwargs)
        with trace.use_span(span, end_on_exit=True):
            result = wrapped(*args, **kwargs)
            if name == "DataLoader" and hasattr(result, "__len__"):
                op.root().set_attribute(semconv.ATTR_ROWS_TOTAL, len(result))
            return result

    def _upload(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        op = _OP.get()
        if op is None or op.kind != "submit":
            return wrapped(*args, **kwargs)
        try:
            requests, chars = _count_prompts(args[0] if args else kwargs.get("prompts"))
            op.requests, op.prompt_chars = requests, chars
            span = self._child(
                op,
                semconv.SPAN_BATCH_UPLOAD,
                SpanKind.CLIENT,
                {
                    semconv.ATTR_LLM_PROVIDER: op.provider,
                    semconv.ATTR_LLM_MODEL: op.model,
                    semconv.ATTR_BATCH_REQUESTS: requests,
                },
            )
        except Exception as error:  # noqa: BLE001
            report(_SITE, error)
            return wrapped(*args, **kwargs)
        with trace.use_span(span, end_on_exit=True):
            job_id = wrapped(*args, **kwargs)
            span.set_attribute(semconv.ATTR_BATCH_PROVIDER_JOB_ID, str(job_id))
            return job_id

    # --- ondine's run registry ---------------------------------------------------------------
    def _registry_opened(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        wrapped(*args, **kwargs)
        path = args[0] if args else kwargs.get("path")
        if path is not None:
            directory = batch_job.registry_dir(path)
            quietly(_SITE, lambda: self._directories.__setitem__(instance, directory))
            with self._lock:
                self._opened[directory] = None

    def _registry_read(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        handle = wrapped(*args, **kwargs)
        op = _OP.get()
        if op is not None and op.kind != "submit" and handle is not None:
            op.handle = handle
        return handle

    def _transition(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        handle = wrapped(*args, **kwargs)
        quietly(_SITE, lambda: self._transitioned(instance, handle))
        return handle

    def _transitioned(self, registry: Any, handle: Any) -> None:
        status = str(getattr(handle.status, "value", handle.status))
        op = _OP.get()
        if op is not None and op.kind == "submit":
            op.directory = self._directory_of(registry)
            return
        if status not in batch_job.TERMINAL_REGISTRY_STATUSES:
            return
        job_id = str(handle.provider_job_id or "")
        with self._lock:
            waiting = self._collected.pop(job_id, None)
            self._jobs.pop(job_id, None)
        if waiting is None:
            return  # no collect in this process (or it was counted already)
        collected, destination = waiting
        directory = self._directory_of(registry)
        run_id = str(handle.run_id)
        job = (batch_job.load(directory, run_id) if directory is not None else None) or (
            _job_from_handle(handle, destination.pipeline_name)
        )
        job.status, job.checked_at = status, time.time()
        job.completed, job.failed = collected.completed, collected.failed
        if directory is not None:
            batch_job.save(directory, job)
        destination.report(job, lambda metrics: metrics.finished(job, collected))
        if op is not None:
            op.reported = True  # counted here, once

    # --- poll and collect ----------------------------------------------------------------
    def _known(self, job_id: str) -> tuple[BatchJob | None, Path | None]:
        """The job submitted in this process, else its record in a registry this process
        opened (a poll or collect by hand in a later process: the normal case)."""
        with self._lock:
            found = self._jobs.get(job_id)
            opened = list(self._opened)
        if found is not None:
            return found
        try:  # a bad record must not break the poll
            for directory in opened:
                job = batch_job.find(directory, job_id)
                if job is not None:
                    with self._lock:
                        self._jobs.setdefault(job_id, (job, directory))
                    return job, directory
        except Exception as error:  # noqa: BLE001
            report(_SITE, error)
        return None, None

    def _poll(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        job_id = str(args[0] if args else kwargs.get("provider_job_id"))
        destination = None if _OP.get() is not None else self._safe_destination()
        if destination is None:  # a command's own check (collect polls first) or untraced
            progress = wrapped(*args, **kwargs)
            with self._lock:
                self._progress[job_id] = progress
            return progress
        job, directory = self._known(job_id)
        span = destination.tracer.start_span(
            semconv.SPAN_BATCH_POLL,
            context=parent_context(),
            kind=SpanKind.CLIENT,
            attributes={
                **(_job_attributes(job) if job else {}),
                semconv.ATTR_BATCH_PROVIDER_JOB_ID: job_id,
                semconv.OPENINFERENCE_SPAN_KIND: semconv.KIND_CHAIN,
            },
            links=_link(job),
        )
        with trace.use_span(span, end_on_exit=True):
            progress = wrapped(*args, **kwargs)
            with self._lock:
                self._progress[job_id] = progress
            quietly(_SITE, lambda: self._polled(span, progress, job, directory, destination))
            return progress

    def _polled(
        self,
        span: Span,
        progress: Any,
        job: BatchJob | None,
        directory: Path | None,
        destination: _Destination,
    ) -> None:
        span.set_attributes(
            {
                semconv.ATTR_BATCH_STATUS: str(progress.status),
                semconv.ATTR_BATCH_REQUESTS: int(progress.total),
                semconv.ATTR_BATCH_REQUESTS_COMPLETED: int(progress.completed),
                semconv.ATTR_BATCH_REQUESTS_FAILED: int(progress.failed),
            }
        )
        if job is None:
            return
        job.completed, job.failed = int(progress.completed), int(progress.failed)
        job.requests = int(progress.total) or job.requests
        job.checked_at = time.time()
        if directory is not None:
            batch_job.save(directory, job)
        destination.report(job, lambda metrics: metrics.seen(job))

    def _collect(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        op = _OP.get()
        destination = op.destination if op is not None else self._safe_destination()
        if destination is None:
            return wrapped(*args, **kwargs)
        job_id = str(args[0] if args else kwargs.get("provider_job_id"))
        return self._collecting(wrapped(*args, **kwargs), instance, job_id, op, destination)

    def _collecting(
        self,
        results: Iterator[Any],
        backend: Any,
        job_id: str,
        op: _Op | None,
        destination: _Destination,
    ) -> Iterator[Any]:
        """ondine's collect generator, counted as it is consumed (it runs at the first next)."""
        own: Span | None = None
        if op is None or op.kind != "collect":
            job, _ = self._known(job_id)
            own = destination.tracer.start_span(
                semconv.SPAN_BATCH_COLLECT,
                context=parent_context(),
                attributes={
                    **(_job_attributes(job) if job else {}),
                    semconv.ATTR_BATCH_PROVIDER_JOB_ID: job_id,
                    semconv.OPENINFERENCE_SPAN_KIND: semconv.KIND_CHAIN,
                },
                links=_link(job),
            )
        parent = own if own is not None else op.root() if op is not None else None
        download = destination.tracer.start_span(
            semconv.SPAN_BATCH_DOWNLOAD,
            context=trace.set_span_in_context(parent) if parent is not None else None,
            kind=SpanKind.CLIENT,
            attributes={
                semconv.ATTR_BATCH_PROVIDER_JOB_ID: job_id,
                semconv.OPENINFERENCE_SPAN_KIND: semconv.KIND_CHAIN,
            },
        )
        totals = [0, 0, 0, 0.0]  # responses, input tokens, output tokens, ondine's cost
        done = False
        try:
            for response in results:
                totals[0] += 1
                totals[1] += int(getattr(response, "tokens_in", 0) or 0)
                totals[2] += int(getattr(response, "tokens_out", 0) or 0)
                totals[3] += float(getattr(response, "cost", 0) or 0)
                yield response
            done = True
        except Exception as error:
            _failed(error, download, own)
            raise
        finally:
            quietly(
                _SITE,
                lambda: self._collect_ended(backend, job_id, done, totals, parent, destination),
            )
            download.end()
            if own is not None:
                own.end()

    def _collect_ended(
        self,
        backend: Any,
        job_id: str,
        done: bool,
        totals: list[Any],
        span: Span | None,
        destination: _Destination,
    ) -> None:
        with self._lock:
            progress = self._progress.pop(job_id, None)
        if not done:
            return  # stopped early: nothing collected yet
        responses, tokens_in, tokens_out, ondine_cost = totals
        provider, model = modelname.from_spec(getattr(backend, "llm_spec", None))
        provider, model = provider or "unknown", model or "unknown"
        completed = int(progress.completed) if progress is not None else responses
        failed = int(progress.failed) if progress is not None else 0
        cost = float(ondine_cost)
        if cost <= 0:  # ondine prices nothing when its CLI rebuilds the backend
            input_price, output_price = batch_job.batch_prices(provider, model)
            cost = tokens_in * input_price + tokens_out * output_price
        collected = Collected(
            batch_job.final_status(getattr(progress, "status", None), completed, failed),
            completed,
            failed,
            tokens_in,
            tokens_out,
            cost,
        )
        if span is not None:
            span.set_attributes(
                {
                    semconv.ATTR_BATCH_PROVIDER_JOB_ID: job_id,
                    semconv.ATTR_BATCH_STATUS: collected.status,
                    semconv.ATTR_BATCH_REQUESTS_COMPLETED: completed,
                    semconv.ATTR_BATCH_REQUESTS_FAILED: failed,
                    semconv.ATTR_TOKENS_INPUT: tokens_in,
                    semconv.ATTR_TOKENS_OUTPUT: tokens_out,
                    semconv.ATTR_TOKENS_TOTAL: tokens_in + tokens_out,
                    semconv.ATTR_COST_USD: cost,
                }
            )
        with self._lock:
            self._collected[job_id] = (collected, destination)

    # --- ondine's CLI ------------------------------------------------------------------------
    def _status_command(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return self._command("status", semconv.SPAN_BATCH_STATUS, wrapped, args, kwargs)

    def _collect_command(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        return self._command("collect", semconv.SPAN_BATCH_COLLECT, wrapped, args, kwargs)

    def _command(self, kind: str, name: str, wrapped: Any, args: Any, kwargs: Any) -> Any:
        destination = self._safe_destination() if _OP.get() is None else None
        if destination is None:
            return wrapped(*args, **kwargs)
        try:
            op = self._command_op(kind, name, destination, kwargs)
        except Exception as error:  # noqa: BLE001
            report(_SITE, error)
            return wrapped(*args, **kwargs)
        return self._run(op, lambda: wrapped(*args, **kwargs))

    def _command_op(
        self, kind: str, name: str, destination: _Destination, kwargs: dict[str, Any]
    ) -> _Op:
        """The command's span, Linked to the submit root when the job's sidecar names it."""
        run_id = str(kwargs.get("run_id") or "")
        directory = batch_job.registry_dir(kwargs.get("checkpoint_dir") or ".checkpoints")
        job = None
        try:
            run_id = str(uuid.UUID(run_id))  # never a path taken from the command line
            job = batch_job.load(directory, run_id)
        except ValueError:
            pass
        if job is not None and job.pipeline:
            destination = dataclasses.replace(destination, pipeline_name=job.pipeline)
        span = destination.tracer.start_span(
            name,
            context=parent_context(),
            attributes={
                **(_job_attributes(job) if job else {}),
                semconv.ATTR_BATCH_RUN_ID: run_id,
                semconv.OPENINFERENCE_SPAN_KIND: semconv.KIND_CHAIN,
            },
            links=_link(job),
        )
        return _Op(kind, span, destination, job=job, directory=directory)

    def _looked(self, op: _Op) -> None:
        """A command read the job: its status on the span, its sidecar and gauges updated."""
        handle = op.handle
        if handle is None:
            op.job = None  # an unknown run: nothing to report
            return
        job = op.job or _job_from_handle(handle, op.destination.pipeline_name)
        attributes = {
            **_job_attributes(job),
            semconv.ATTR_BATCH_PROVIDER_JOB_ID: str(handle.provider_job_id or ""),
        }
        if op.reported:  # collected and counted at the transition: the span says so already
            op.root().set_attributes(attributes)
            op.job = None
            return
        job.status = str(getattr(handle.status, "value", handle.status))
        op.root().set_attributes({**attributes, semconv.ATTR_BATCH_STATUS: job.status})
        job.checked_at = time.time()
        if op.directory is not None:
            batch_job.save(op.directory, job)
        op.job = job
