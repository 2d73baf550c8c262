"""The process-wide OpenTelemetry providers, as an application installs them, one run at a time.

An application sets its global tracer, meter and logger providers once, at start-up; the API
then refuses every later `set_*_provider()`. The benchmark runs many set-ups in one process
(interleaved with bare runs, see runner.py), so a variant that plays such an application
installs its providers as the globals for its run and the previous globals come back after.
This touches the API's set-once guards (module attributes), the way OpenTelemetry's own test
utilities reset them; nothing of ondine-otel is involved, so what it sees during the run is
exactly what it would see in a process whose application installed those providers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from opentelemetry import trace
from opentelemetry._logs import _internal as logs_api
from opentelemetry.metrics import _internal as metrics_api
from opentelemetry.util._once import Once

# Per signal: the module holding the global, the provider attribute, its set-once guard.
_GLOBALS: tuple[tuple[ModuleType, str, str], ...] = (
    (trace, "_TRACER_PROVIDER", "_TRACER_PROVIDER_SET_ONCE"),
    (metrics_api, "_METER_PROVIDER", "_METER_PROVIDER_SET_ONCE"),
    (logs_api, "_LOGGER_PROVIDER", "_LOGGER_PROVIDER_SET_ONCE"),
)


@contextmanager
def fresh() -> Iterator[None]:
    """No global provider is set inside (as at a process's start); the old ones come back after.

    Whatever the block installs (`trace.set_tracer_provider(...)`, a configurator) becomes the
    global for its duration.
    """
    saved: list[tuple[ModuleType, str, str, Any, Any]] = [
        (module, attr, once, getattr(module, attr), getattr(module, once))
        for module, attr, once in _GLOBALS
    ]
    for module, attr, once, _, _ in saved:
        setattr(module, attr, None)
        setattr(module, once, Once())
    try:
        yield
    finally:
        for module, attr, once, provider, guard in saved:
            setattr(module, attr, provider)
            setattr(module, once, guard)
