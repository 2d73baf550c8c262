"""Runtime: the one owner of ondine-otel's state in a process.

It owns the run registry (one map, one lock: hooks, readers, the Pushgateway and the signal
handler all read the runs there), the set-up `instrument()` built (providers, readers,
endpoint, pusher), the metrics of each MeterProvider an observer reports to, the ondine
patches (applied once, removed once), the wrapped LLM clients, the observer the instrumentor
attaches to every run, the log filters that keep failures to one line, and signal and fork
handling. The four entries (`instrument()`, `OndineInstrumentor`, `OtelObserver`,
`with_observer("otel")`) are thin adapters: they find the runtime with `get()` and hand it their
settings. This module holds the only mutable module-level state of the package: the runtime.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider, NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.trace import TracerProvider

from ondine_otel.config import DEFAULTS, ConfigError, TelemetryConfig
from ondine_otel.export.exports import Exports, bind_metrics
from ondine_otel.export.quiet_logs import OncePerLogger, quiet_export_logs
from ondine_otel.hooks.client import ClientPatches
from ondine_otel.hooks.handovers import Handovers
from ondine_otel.hooks.observer import RunObserver
from ondine_otel.hooks.patches import Patches
from ondine_otel.hooks.router import router_logger
from ondine_otel.runtime import signals
from ondine_otel.runtime.handle import Telemetry
from ondine_otel.telemetry.guard import OnceFilter, quietly, report
from ondine_otel.telemetry.metrics import OndineMetrics
from ondine_otel.telemetry.registry import RunRegistry
from ondine_otel.telemetry.run import RunListener, RunTelemetry

logger = logging.getLogger("ondine_otel")


class _FlushAfterRun:
    """In a forked worker's set-up: flush (bounded) as each run ends."""

    def __init__(self, handle: Telemetry) -> None:
        self._handle = handle

    def run_started(self, run: RunTelemetry) -> None:
        pass

    def run_finished(self, run: RunTelemetry, status: str, duration_s: float) -> None:
        if not self._handle.closed:
            self._handle.exports.flush(self._handle.config.shutdown_timeout)

    def stage_finished(self, run: RunTelemetry, stage: str, status: str, seconds: float) -> None:
        pass

    def checkpoint_saved(self, run: RunTelemetry, saved: bool) -> None:
        pass


def _placeholder(provider: MeterProvider) -> bool:
    """The API's stand-in for a MeterProvider nobody installed yet (or a no-op one).

    Nothing is bound to it: its instruments would start forwarding to the SDK provider the
    application installs later, where they would shadow the instruments of that provider's
    own binding (the SDK keeps the first instrument registered under a name), so later runs'
    numbers would never show.
    """
    return isinstance(provider, NoOpMeterProvider) or type(provider).__name__ in (
        "_ProxyMeterProvider",
        "ProxyMeterProvider",
    )


class Runtime:
    """ondine-otel's process state (see the module docstring)."""

    def __init__(self) -> None:
        self.registry = RunRegistry()
        self.clients = ClientPatches()
        self.handovers = Handovers()
        self.patches = Patches(self)
        self.handle: Telemetry | None = None
        self._auto: RunObserver | None = None
        self._metrics: list[tuple[MeterProvider, OndineMetrics]] = []
        # Providers we installed as the global ones: after our shutdown they are dead.
        self._ours: set[int] = set()
        self._warned_unexported = False
        self._router_logger: Any = None
        # Re-entrant: set_up holds it across check, build and publish, and may release the
        # previous handle (which takes it too) on the way.
        self._lock = threading.RLock()
        self.failures = OnceFilter()
        self.export_logs = OncePerLogger()
        logger.addFilter(self.failures)

    # --- what the hooks ask (hooks.host.Host) ----------------------------------------------
    def auto_observer(self) -> RunObserver | None:
        return self._auto

    def ensure_patched(self) -> None:
        self.patches.apply()

    def ensure_router_logger(self) -> None:
        """litellm copies its callback list on first use and never sees removals: one logger
        per process, registered once (as a run's stage starts, before its first call) and
        left in place (it is inert outside a run). Only where litellm is already imported:
        it costs a job that does not use it over 100 MB."""
        litellm = sys.modules.get("litellm")
        if self._router_logger is None and litellm is not None:
            self._router_logger = router_logger()
            litellm.callbacks.append(self._router_logger)

    def destinations(
        self,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
        label_limit: int = DEFAULTS["label_limit"],
    ) -> tuple[TracerProvider | None, Sequence[RunListener]]:
        """Where a run reports: the `instrument()` set-up when the observer names no providers
        of its own, else the given (or global) providers."""
        handle = self.handle
        if handle is not None and handle.enabled and tracer_provider is meter_provider is None:
            return handle.tracer_provider, handle.exports.listeners
        self._warn_if_unexported(tracer_provider, meter_provider)
        return tracer_provider, (self.metrics_for(meter_provider, label_limit),)

    def metrics_for(
        self, meter_provider: MeterProvider | None, label_limit: int = DEFAULTS["label_limit"]
    ) -> OndineMetrics:
        """The metrics reporting to `meter_provider` (the global one when None); made and
        bound once per provider (its label cap is the first one asked for)."""
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        with self._lock:
            for bound, found in self._metrics:
                if bound is provider:
                    return found
            made = OndineMetrics(self.registry, label_limit=label_limit)
            if not _placeholder(provider):
                bind_metrics(made, provider)
            self._metrics.append((provider, made))
            return made

    def _warn_if_unexported(
        self, tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None
    ) -> None:
        if self._warned_unexported:
            return
        tracer = tracer_provider or trace.get_tracer_provider()
        meter = meter_provider or metrics.get_meter_provider()
        missing = [
            kind
            for kind, provider, sdk in (
                ("TracerProvider", tracer, SdkTracerProvider),
                ("MeterProvider", meter, SdkMeterProvider),
            )
            if not isinstance(provider, sdk)
        ]
        if not missing:
            return
        self._warned_unexported = True
        logger.warning(
            "ondine-otel: no OpenTelemetry SDK %s is set up, so this run's %s go nowhere. "
            "Call ondine_otel.instrument() before the run (it reads the OTEL_* settings), "
            "install SDK providers globally (trace.set_tracer_provider / "
            "metrics.set_meter_provider), or pass them: OtelObserver(tracer_provider, "
            "meter_provider).",
            " or ".join(missing),
            " and ".join("spans" if kind == "TracerProvider" else "metrics" for kind in missing),
        )

    # --- the instrumentor's observer -------------------------------------------------------
    def start_auto(
        self,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
        listeners: Sequence[RunListener] | None,
        settings: dict[str, Any],
    ) -> RunObserver:
        """Attach an observer with these settings to every execute() from now on."""
        observer = RunObserver(
            self, tracer_provider, meter_provider, listeners=listeners, **settings
        )
        self.patches.apply()
        self._auto = observer
        return observer

    def stop_auto(self) -> None:
        """Stop attaching the observer and give ondine its functions back."""
        self._auto = None
        self.patches.remove()

    # --- instrument() ----------------------------------------------------------------------
    def set_up(
        self,
        config: TelemetryConfig,
        *,
        explicit: bool,
        reconfigure: bool,
        on_built: Callable[[Telemetry], None],
    ) -> Telemetry:
        """The set-up for `config`: the current one if it matches (or nothing was asked for),
        else a new one; different settings need `reconfigure=True` (two set-ups at once would
        double every span and series). `on_built` starts the new set-up's instrumentor."""
        with self._lock:
            current = self.handle
            if current is not None:
                if current.config == config or not (explicit or reconfigure):
                    return current
                if not reconfigure:
                    raise ConfigError(
                        "instrument",
                        None,
                        "the same settings, or reconfigure=True",
                        message="ondine-otel is already instrumented with different settings: "
                        "call shutdown() on the first handle, or pass reconfigure=True",
                    )
                current.shutdown()
            handle = self._build(config, on_built, forked=False)
            self.handle = handle
            return handle

    def _build(
        self, config: TelemetryConfig, on_built: Callable[[Telemetry], None], *, forked: bool
    ) -> Telemetry:
        exports = Exports(config, self.registry, self.export_logs.reason)
        handle = Telemetry(self, exports)
        if config.disabled:
            return handle
        try:
            exports.start(self.registry, self._ours)
            quiet_export_logs(self.export_logs)  # the exporters are imported by now
            if forked:
                handle.forked = True
                exports.listeners = (*exports.listeners, _FlushAfterRun(handle))
            handle.on_built = on_built
            on_built(handle)
        except BaseException:
            self.release(handle, timeout=1.0)
            raise
        atexit.register(handle.at_exit)
        if config.handle_signals:  # SIGTERM: end runs, flush, chain
            handle.signals = signals.install(
                self.registry, handle.flush_or_shutdown, config.shutdown_timeout
            )
        return handle

    def release(self, handle: Telemetry, timeout: float) -> None:
        """Stop a set-up: instrumentation off, final pushes and exports within `timeout`."""
        with self._lock:
            if handle.closed:
                return
            handle.closed = True
            if self.handle is handle:
                self.handle = None
        atexit.unregister(handle.at_exit)
        if handle.signals is not None:
            handle.signals.uninstall()
        if handle.instrumentor is not None:
            quietly("uninstrumenting ondine", handle.instrumentor.uninstrument)
        handle.exports.shutdown(timeout)

    # --- fork --------------------------------------------------------------------------------
    def after_fork_in_child(self) -> None:
        """A forked worker gets fresh locks and a set-up of its own: fresh providers and metric
        state and its own service.instance.id, so its numbers add to the parent's."""
        self._lock = threading.RLock()
        self.registry.after_fork()
        self.clients.after_fork()
        self.handovers.after_fork()
        self.patches.after_fork()
        self.failures.after_fork()
        for _, each in self._metrics:
            each.after_fork()
        parent = self.handle
        if parent is None or parent.closed or not parent.enabled:
            return
        self.handle = None
        try:
            parent.closed = True
            atexit.unregister(parent.at_exit)
            if parent.signals is not None:
                parent.signals.uninstall()
            parent.exports.abandon()
            config = parent.config
            if config.prometheus_port:  # the parent serves it: the worker takes a free one
                config = dataclasses.replace(config, prometheus_port=0)
            if parent.on_built is not None:
                self.handle = self._build(config, parent.on_built, forked=True)
        except Exception as error:  # noqa: BLE001 - the worker runs on without telemetry
            report("setting telemetry up again in a forked worker", error)


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get() -> Runtime:
    """The process's runtime, made on first use (importing ondine_otel makes none)."""
    global _runtime
    found = _runtime
    if found is not None:
        return found
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime()
        return _runtime


def current() -> Runtime | None:
    """The runtime if anything made it."""
    return _runtime


def _after_fork_in_child() -> None:
    global _runtime_lock
    _runtime_lock = threading.Lock()
    if _runtime is not None:
        quietly("resetting ondine-otel in a forked worker", _runtime.after_fork_in_child)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
