"""Pushing a batch job's metrics to a Prometheus Pushgateway.

A batch job may end before Prometheus ever scrapes it, so we push: every `interval` seconds
while runs are active, and once more when each run ends (success or failure).

Two groups per pipeline keep the gateway truthful:
- `{job="ondine", pipeline=P}` holds the counters, histograms and the last-success timestamp,
  pushed with push-add (POST): a failed run's push leaves the previous success time in place.
- `{job="ondine", pipeline=P, run_id=R}` holds the active-run gauges, replaced (PUT) while the
  run is active and deleted when it ends, so finished runs do not linger as stale series.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
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

from ondine_otel.telemetry import semconv
from ondine_otel.telemetry.guard import report
from ondine_otel.telemetry.run import RunTelemetry

JOB = "ondine"


class _Filtered:
    """A read-only view of a registry keeping only the samples `keep` accepts."""

    def __init__(self, source: CollectorRegistry, keep: Callable[[dict[str, str]], bool]) -> None:
        self._source = source
        self._keep = keep

    def collect(self) -> Iterator[Metric]:
        for family in self._source.collect():
            samples = [sample for sample in family.samples if self._keep(sample.labels)]
            if samples:
                kept = Metric(family.name, family.documentation, family.type, family.unit)
                kept.samples = samples
                yield kept


def _view(source: CollectorRegistry, keep: Callable[[dict[str, str]], bool]) -> CollectorRegistry:
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
        pipeline_label: Callable[[str], str],
        interval: float = 15.0,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.url = url
        self._registry = registry
        self._pipeline_label = pipeline_label
        self._interval = interval
        self._timeout = timeout
        self._username = username
        self._password = password
        self._active: dict[str, tuple[RunTelemetry, str]] = {}
        self._lock = threading.Lock()
        # Every push happens on one worker, in order: a finished run's final push and delete
        # always come after its last periodic push, and the job's thread never waits on HTTP.
        self._tasks: queue.Queue[tuple[str, str] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def _handler(self, url: str, method: str, timeout: float | None, headers: Any, data: bytes
                 ) -> Callable[[], None]:  # fmt: skip
        if self._username is not None:
            return basic_auth_handler(
                url, method, timeout, headers, data, self._username, self._password
            )
        return default_handler(url, method, timeout, headers, data)

    # --- pushes --------------------------------------------------------------------------
    def push_pipeline(self, pipeline: str) -> None:
        """Push-add the pipeline's counters and histograms (no run_id series)."""

        def keep(labels: dict[str, str]) -> bool:
            return (
                labels.get(semconv.LABEL_PIPELINE) == pipeline
                and semconv.LABEL_RUN_ID not in labels
            )

        pushadd_to_gateway(
            self.url,
            job=JOB,
            registry=_view(self._registry, keep),
            grouping_key={semconv.LABEL_PIPELINE: pipeline},
            timeout=self._timeout,
            handler=self._handler,
        )

    def push_run(self, pipeline: str, run_id: str) -> None:
        """Replace the run's group with its current active-run gauges."""

        def keep(labels: dict[str, str]) -> bool:
            return labels.get(semconv.LABEL_RUN_ID) == run_id

        push_to_gateway(
            self.url,
            job=JOB,
            registry=_view(self._registry, keep),
            grouping_key={semconv.LABEL_PIPELINE: pipeline, semconv.LABEL_RUN_ID: run_id},
            timeout=self._timeout,
            handler=self._handler,
        )

    def delete_run(self, pipeline: str, run_id: str) -> None:
        delete_from_gateway(
            self.url,
            job=JOB,
            grouping_key={semconv.LABEL_PIPELINE: pipeline, semconv.LABEL_RUN_ID: run_id},
            timeout=self._timeout,
            handler=self._handler,
        )

    def push_active(self) -> None:
        """One round of pushes for every active run (the periodic tick)."""
        with self._lock:
            active = list(self._active.values())
        for pipeline in {label for _, label in active}:
            self._guarded("pushing to the Pushgateway", self.push_pipeline, pipeline)
        for run, label in active:
            self._guarded("pushing to the Pushgateway", self.push_run, label, run.session_id)

    # --- RunListener -----------------------------------------------------------------------
    def run_started(self, run: RunTelemetry) -> None:
        with self._lock:
            self._active[run.session_id] = (run, self._pipeline_label(run.pipeline_name))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="ondine-otel-pushgateway", daemon=True
                )
                self._thread.start()

    def run_finished(self, run: RunTelemetry, status: str, duration_s: float) -> None:
        """Queue the run's final push: the worker does it, the job does not wait for it."""
        with self._lock:
            entry = self._active.pop(run.session_id, None)
        label = entry[1] if entry is not None else self._pipeline_label(run.pipeline_name)
        self._tasks.put((label, run.session_id))

    def stage_finished(self, run: RunTelemetry, stage: str, status: str, seconds: float) -> None:
        pass

    def checkpoint_saved(self, run: RunTelemetry, saved: bool) -> None:
        pass

    def record_llm_call(self, **kwargs: Any) -> None:
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
            if task is None:  # close(): every final push queued before it is done
                return
            pipeline, run_id = task
            self._guarded("pushing to the Pushgateway", self.push_pipeline, pipeline)
            self._guarded(
                "deleting a finished run from the Pushgateway", self.delete_run, pipeline, run_id
            )

    def close(self, timeout: float | None = None) -> None:
        """Send the queued final pushes, then stop; waits at most `timeout` seconds."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._tasks.put(None)
        thread.join(timeout=timeout)

    @staticmethod
    def _guarded(site: str, push: Callable[..., None], *args: Any) -> None:
        try:
            push(*args)
        except Exception as error:  # noqa: BLE001 - a dead gateway must not break the job
            report(site, error)
