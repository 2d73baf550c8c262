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

import threading
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

from ondine_otel import semconv
from ondine_otel.guard import report
from ondine_otel.run import RunTelemetry

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
        # Held across a run's final push and delete, so a periodic push cannot resurrect it.
        self._push_lock = threading.RLock()
        self._stop = threading.Event()
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

        with self._push_lock:
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

        with self._push_lock:
            push_to_gateway(
                self.url,
                job=JOB,
                registry=_view(self._registry, keep),
                grouping_key={semconv.LABEL_PIPELINE: pipeline, semconv.LABEL_RUN_ID: run_id},
                timeout=self._timeout,
                handler=self._handler,
            )

    def delete_run(self, pipeline: str, run_id: str) -> None:
        with self._push_lock:
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
            self._guarded("pushing to the Pushgateway", self._push_run_if_active, run, label)

    def _push_run_if_active(self, run: RunTelemetry, pipeline: str) -> None:
        with self._push_lock:
            with self._lock:
                entry = self._active.get(run.session_id)
            if entry is not None and entry[0] is run:
                self.push_run(pipeline, run.session_id)

    # --- RunListener -----------------------------------------------------------------------
    def run_started(self, run: RunTelemetry) -> None:
        with self._lock:
            self._active[run.session_id] = (run, self._pipeline_label(run.pipeline_name))
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._loop, name="ondine-otel-pushgateway", daemon=True
                )
                self._thread.start()

    def run_finished(self, run: RunTelemetry, status: str, duration_s: float) -> None:
        with self._push_lock:
            with self._lock:
                entry = self._active.pop(run.session_id, None)
            label = entry[1] if entry is not None else self._pipeline_label(run.pipeline_name)
            self._guarded("pushing to the Pushgateway", self.push_pipeline, label)
            self._guarded(
                "deleting a finished run from the Pushgateway", self.delete_run, label,
                run.session_id,
            )  # fmt: skip

    def stage_finished(self, run: RunTelemetry, stage: str, status: str, seconds: float) -> None:
        pass

    def checkpoint_saved(self, run: RunTelemetry, saved: bool) -> None:
        pass

    def record_llm_call(self, **kwargs: Any) -> None:
        pass

    # --- lifecycle -------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                if not self._active:
                    self._thread = None
                    return
            self.push_active()

    def close(self) -> None:
        """Stop the periodic pushes (a final push happens at each run's end, not here)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=self._timeout + 1)
        self._thread = None

    @staticmethod
    def _guarded(site: str, push: Callable[..., None], *args: Any) -> None:
        try:
            push(*args)
        except Exception as error:  # noqa: BLE001 - a dead gateway must not break the job
            report(site, error)
