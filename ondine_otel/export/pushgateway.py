"""Pushing a batch job's metrics to a Prometheus Pushgateway.

A batch job may end before Prometheus ever scrapes it, so we push: when each run starts, every
`interval` seconds while runs are active, and once more when each run ends (success or
failure).

Groups (every grouping key also carries the `pushgateway_grouping` labels, e.g. `shard=3`):
- `{job="ondine", pipeline=P, instance=I}`, the process's own group: the pipeline's counters,
  histograms and last-success gauge as this process counts them. `I` is unique per process
  (host, pid and a random part; or the `instance` of `pushgateway_grouping` if set). Why not
  one group per pipeline: successive processes would push into the same series, so a job
  whose predecessor ended at `ondine_runs_total{status="error"} 1` and that fails before the
  next scrape pushes 1 again, and no rule can see the failure. In a group of its own every
  process starts new series: pushed at run start (errors at 0) they grow, and a process that
  fails before its first scrape shows a series born at 1, which the alert rules also count
  (deploy/prometheus/rules/ondine-recording.yml). Parallel workers need no distinct grouping
  for their counters either. Series without a `pipeline` label (the `gen_ai_client_*`
  histograms) go into the group of the process's own pipeline name, so each is pushed once.
- `{job="ondine", pipeline=P}`, shared by the pipeline's processes: only its last-success
  timestamp, replaced (PUT) when this process has a success newer than the last it sent. It
  outlives every process group, so OndineNoRecentSuccess keeps working after the groups of
  dead processes are cleaned.
- `{job="ondine", pipeline=P, run_id=R}` holds the active-run gauges, replaced (PUT) while the
  run is active and deleted when it ends.
- `{job="ondine", pipeline=P, run_id=R}` of a Batch-API job in flight (R is ondine's run
  registry id): its gauges as the last process that looked at it saw them, replaced at each
  change and deleted by the process that collects it. The sweep passes over these groups: a
  job waiting at the provider for hours is not a dead run.

Cleaning up (the Pushgateway never expires anything): the first run of each pipeline in a
process deletes, among the groups of the same pipeline and grouping labels,
- process groups of other processes not pushed to for `STALE_GROUP_AGE_S`: a live process
  pushes every `interval` while it runs, and 10 minutes is the alert rules' counter window, so
  every value of a dead process has been scraped and judged before its group goes;
- run groups it does not own: a killed run cannot delete its group, and with one worker per
  grouping key such a group can only be a dead run's.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import socket
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import (
    basic_auth_handler,
    default_handler,
    delete_from_gateway,
    push_to_gateway,
    pushadd_to_gateway,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

from ondine_otel.config import DEFAULTS
from ondine_otel.export.registry import filtered
from ondine_otel.telemetry import semconv
from ondine_otel.telemetry.guard import report
from ondine_otel.telemetry.registry import RunRegistry
from ondine_otel.telemetry.run import RunTelemetry

JOB = "ondine"
#: Series of a Batch-API job in flight. Its group {job="ondine", pipeline=P, run_id=R} keeps
#: the last state a process saw until a process collects the job (then it is deleted), so the
#: sweep of dead runs' groups passes over groups holding these: a waiting job is not dead.
BATCH_JOB_SERIES_PREFIX = "ondine_batch_job_"
#: The Pushgateway's per-process grouping label (its conventional one).
INSTANCE = "instance"
#: A process group nobody pushed to for this long belongs to a dead process.
STALE_GROUP_AGE_S = 600.0
LAST_SUCCESS = "ondine_last_success_timestamp_seconds"
#: Host, pid (a forked worker differs from its parent) and a random part (pids are reused).
_NONCE = uuid.uuid4().hex[:8]
#: Pause before the one retry of a failed push: long enough for a restarting gateway's socket.
RETRY_DELAY_S = 0.5
#: One failure site for every request to the gateway: a dead gateway is one warning, not three.
_SITE = "pushing to the Pushgateway"


class _Filtered:
    """A read-only view of a registry keeping only the samples `keep` accepts."""

    def __init__(self, source: CollectorRegistry, keep: Callable[[Sample], bool]) -> None:
        self._source = source
        self._keep = keep

    def collect(self) -> Iterator[Metric]:
        return filtered(self._source.collect(), self._keep)


def _view(source: CollectorRegistry, keep: Callable[[Sample], bool]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Filtered(source, keep))
    return registry


class PushgatewayPusher:
    """Pushes one registry's samples, grouped per pipeline and per active run."""

    def __init__(
        self,
        url: str,
        registry: CollectorRegistry,
        *,
        runs: RunRegistry,
        pipeline_label: Callable[[str], str],
        interval: float = DEFAULTS["push_interval"],
        username: str | None = None,
        password: str | None = None,
        timeout: float = 5.0,
        grouping: Mapping[str, str] | None = None,
        home_pipeline: str | None = None,
    ) -> None:
        """`grouping`: extra grouping labels of this worker; `home_pipeline`: the process's
        configured pipeline name, whose group also takes the series without a pipeline label."""
        self.url = url
        self._registry = registry
        self._pipeline_label = pipeline_label
        self._interval = interval
        self._timeout = timeout
        self._username = username
        self._password = password
        self._grouping = dict(grouping or {})
        self._home = None if home_pipeline is None else pipeline_label(home_pipeline)
        self._runs = runs  # the active runs are read from the run registry, never copied
        self._swept: set[str] = set()  # pipelines whose stale run groups were cleaned up
        self._success_sent: dict[str, float] = {}  # pipeline -> last success time pushed
        self._closing = threading.Event()
        self._lock = threading.Lock()
        # Every push happens on one worker, in order: a finished run's final push and delete
        # always come after its last periodic push, and the job's thread never waits on HTTP.
        self._tasks: queue.Queue[tuple[str, str, str] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def _handler(self, url: str, method: str, timeout: float | None, headers: Any, data: bytes
                 ) -> Callable[[], None]:  # fmt: skip
        if self._username is not None:
            return basic_auth_handler(
                url, method, timeout, headers, data, self._username, self._password
            )
        return default_handler(url, method, timeout, headers, data)

    # --- pushes --------------------------------------------------------------------------
    def _key(self, pipeline: str, run_id: str | None = None) -> dict[str, str]:
        key = {**self._grouping, semconv.LABEL_PIPELINE: pipeline}
        if run_id is not None:
            key[semconv.LABEL_RUN_ID] = run_id
        return key

    def _process_key(self, pipeline: str) -> dict[str, str]:
        own = self._grouping.get(INSTANCE) or f"{socket.gethostname()}-{os.getpid()}-{_NONCE}"
        return {**self._key(pipeline), INSTANCE: own}

    def _shared_key(self, pipeline: str) -> dict[str, str]:
        return {k: v for k, v in self._key(pipeline).items() if k != INSTANCE}

    def push_pipeline(self, pipeline: str) -> None:
        """Push-add the pipeline's counters and histograms (no run_id series) to this
        process's group, then a newer last success to the pipeline's shared group."""
        home = pipeline == self._home

        def keep(sample: Sample) -> bool:
            if semconv.LABEL_RUN_ID in sample.labels:
                return False
            own = sample.labels.get(semconv.LABEL_PIPELINE)
            return own == pipeline or (home and own is None)

        pushadd_to_gateway(
            self.url,
            job=JOB,
            registry=_view(self._registry, keep),
            grouping_key=self._process_key(pipeline),
            timeout=self._timeout,
            handler=self._handler,
        )
        self.push_last_success(pipeline)

    def push_last_success(self, pipeline: str) -> None:
        """Replace the shared group with this process's last success, if newer than sent."""

        def keep(sample: Sample) -> bool:
            return (
                sample.name == LAST_SUCCESS
                and sample.labels.get(semconv.LABEL_PIPELINE) == pipeline
                and sample.value > 0
            )

        view = _view(self._registry, keep)
        latest = max((s.value for m in view.collect() for s in m.samples), default=0.0)
        if latest <= self._success_sent.get(pipeline, 0.0):
            return
        push_to_gateway(
            self.url,
            job=JOB,
            registry=view,
            grouping_key=self._shared_key(pipeline),
            timeout=self._timeout,
            handler=self._handler,
        )
        self._success_sent[pipeline] = latest

    def push_run(self, pipeline: str, run_id: str) -> None:
        """Replace the run's group with its current active-run gauges."""

        def keep(sample: Sample) -> bool:
            return sample.labels.get(semconv.LABEL_RUN_ID) == run_id

        push_to_gateway(
            self.url,
            job=JOB,
            registry=_view(self._registry, keep),
            grouping_key=self._key(pipeline, run_id),
            timeout=self._timeout,
            handler=self._handler,
        )

    def delete_run(self, pipeline: str, run_id: str) -> None:
        delete_from_gateway(
            self.url,
            job=JOB,
            grouping_key=self._key(pipeline, run_id),
            timeout=self._timeout,
            handler=self._handler,
        )

    def _groups(self) -> list[dict[str, Any]]:
        """Every group on the gateway (its /api/v1/metrics)."""
        request = urllib.request.Request(self.url.rstrip("/") + "/api/v1/metrics")
        if self._username is not None:
            token = f"{self._username}:{self._password or ''}".encode()
            request.add_header("Authorization", "Basic " + base64.b64encode(token).decode())
        with urllib.request.urlopen(request, timeout=self._timeout) as response:
            groups: list[dict[str, Any]] = json.load(response).get("data") or []
        return groups

    def stale_runs(self, pipeline: str, groups: list[dict[str, Any]] | None = None) -> list[str]:
        """run_ids of this worker's run groups of `pipeline` on the gateway not active here."""
        wanted = {"job": JOB, **self._key(pipeline)}
        active = {run.session_id for run in self._active_runs()}
        stale = []
        for group in self._groups() if groups is None else groups:
            labels = group.get("labels") or {}
            run_id = labels.get(semconv.LABEL_RUN_ID)
            others = {k: v for k, v in labels.items() if k != semconv.LABEL_RUN_ID}
            batch = any(str(name).startswith(BATCH_JOB_SERIES_PREFIX) for name in group)
            if run_id and run_id not in active and others == wanted and not batch:
                stale.append(run_id)
        return stale

    def stale_processes(self, pipeline: str, groups: list[dict[str, Any]]) -> list[str]:
        """`instance`s of other processes' groups of `pipeline` (same grouping labels) that
        nobody pushed to for STALE_GROUP_AGE_S."""
        wanted = {"job": JOB, **self._shared_key(pipeline)}
        own = self._process_key(pipeline)[INSTANCE]
        stale = []
        for group in groups:
            labels = group.get("labels") or {}
            instance = labels.get(INSTANCE)
            if not instance or instance == own or semconv.LABEL_RUN_ID in labels:
                continue
            if {k: v for k, v in labels.items() if k != INSTANCE} != wanted:
                continue
            pushed = (group.get("push_time_seconds") or {}).get("metrics") or [{}]
            if time.time() - float(pushed[0].get("value", 0)) > STALE_GROUP_AGE_S:
                stale.append(instance)
        return stale

    def sweep(self, pipeline: str) -> None:
        """Delete the groups dead processes and killed runs left behind (module docstring)."""
        groups = self._groups()
        for run_id in self.stale_runs(pipeline, groups):
            self.delete_run(pipeline, run_id)
        for instance in self.stale_processes(pipeline, groups):
            delete_from_gateway(
                self.url,
                job=JOB,
                grouping_key={**self._shared_key(pipeline), INSTANCE: instance},
                timeout=self._timeout,
                handler=self._handler,
            )

    def push_active(self) -> None:
        """One round of pushes for every active run (the periodic tick)."""
        active = [(run, self._pipeline_label(run.pipeline_name)) for run in self._active_runs()]
        for pipeline in self._with_home({label for _, label in active}):
            self._guarded(_SITE, self.push_pipeline, pipeline)
        for run, label in active:
            self._guarded(_SITE, self.push_run, label, run.session_id)

    def _with_home(self, pipelines: set[str]) -> list[str]:
        """The pipelines to push, plus the home group while it holds unlabelled series."""
        if self._home is not None and pipelines:
            pipelines = pipelines | {self._home}
        return sorted(pipelines)

    # --- RunListener -----------------------------------------------------------------------
    def _active_runs(self) -> list[RunTelemetry]:
        """The registry's active runs that report to this pusher."""
        return [run for run in self._runs.active() if self in run.listeners]

    def run_started(self, run: RunTelemetry) -> None:
        label = self._pipeline_label(run.pipeline_name)
        with self._lock:
            first = label not in self._swept
            self._swept.add(label)
            if first:
                self._tasks.put(("sweep", label, ""))
            # At once, not after `interval`: the run's series (errors at 0) are on the
            # gateway before a fast failure.
            self._tasks.put(("started", label, run.session_id))
            self._start_worker()

    def batch_job_changed(self, pipeline: str, run_id: str, finished: bool) -> None:
        """Queue a push of the batch job's group (its deletion once collected) and of the
        pipeline's counters; the process's exit flush sends it (BatchListener)."""
        label = self._pipeline_label(pipeline)
        with self._lock:
            self._start_worker()
        self._tasks.put(("batch_finished" if finished else "batch", label, run_id))

    def _start_worker(self) -> None:
        """Start the push worker if it is not running (call with the lock held)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name="ondine-otel-pushgateway", daemon=True
            )
            self._thread.start()

    def run_finished(self, run: RunTelemetry, status: str, duration_s: float) -> None:
        """Queue the run's final push: the worker does it, the job does not wait for it."""
        label = self._pipeline_label(run.pipeline_name)
        self._tasks.put(("finished", label, run.session_id))

    def stage_finished(self, run: RunTelemetry, stage: str, status: str, seconds: float) -> None:
        pass

    def checkpoint_saved(self, run: RunTelemetry, saved: bool) -> None:
        pass

    # --- lifecycle -------------------------------------------------------------------------
    def _loop(self) -> None:
        next_tick = time.monotonic() + self._interval
        while True:
            try:
                task = self._tasks.get(timeout=max(next_tick - time.monotonic(), 0.0))
            except queue.Empty:
                self.push_active()
                next_tick = time.monotonic() + self._interval
                continue
            try:
                if task is None:  # close(): every final push queued before it is done
                    return
                self._do(*task)
            finally:
                self._tasks.task_done()

    def _do(self, kind: str, pipeline: str, run_id: str) -> None:
        if kind == "sweep":
            self._guarded(_SITE, self.sweep, pipeline)
            return
        for group in self._with_home({pipeline}):
            self._guarded(_SITE, self.push_pipeline, group)
        if kind == "started":
            # A run that ended before this task ran has no group to push: pushing it would
            # leave an empty group on the gateway until the run's "finished" task deletes it.
            if run_id in {run.session_id for run in self._active_runs()}:
                self._guarded(_SITE, self.push_run, pipeline, run_id)
            return
        if kind == "batch":  # a batch job in flight
            self._guarded(_SITE, self.push_run, pipeline, run_id)
            return
        self._guarded(_SITE, self.delete_run, pipeline, run_id)  # ended, or collected

    def close(self, timeout: float | None = None) -> None:
        """Send the queued final pushes, then stop; waits at most `timeout` seconds."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._closing.set()
        self._tasks.put(None)
        thread.join(timeout=timeout)

    def flush(self, timeout: float) -> bool:
        """Wait until every queued push is done (at most `timeout` s); True if it was."""
        deadline = time.monotonic() + timeout
        with self._tasks.all_tasks_done:
            while self._tasks.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None:
                    return False
                self._tasks.all_tasks_done.wait(left)
        return True

    def _guarded(self, site: str, push: Callable[..., None], *args: Any) -> None:
        """Push, retry once after a short pause, and report a second failure (once per kind).

        The pause is on the pusher's own thread (the job never waits on it) and is skipped once
        `close()` has begun: the final pushes must fit in the shutdown's time.
        """
        try:
            push(*args)
            return
        except Exception:  # noqa: BLE001 - a dead gateway must not break the job
            pass
        self._closing.wait(RETRY_DELAY_S)
        try:
            push(*args)
        except Exception as error:  # noqa: BLE001
            report(site, error)
