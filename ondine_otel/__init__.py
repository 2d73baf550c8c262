"""OpenTelemetry traces and metrics for ondine pipelines.

The public surface only; see the README for the entries (instrument(), zero-code, observers).
"""

from ondine_otel.config import ConfigError, TelemetryConfig
from ondine_otel.export.sampler import ParentBasedRandomBitsRatioSampler, RandomBitsRatioSampler
from ondine_otel.export.setup import Telemetry, instrument
from ondine_otel.hooks import registered
from ondine_otel.hooks.observer import OtelObserver
from ondine_otel.instrumentor import OndineInstrumentor
from ondine_otel.version import __version__

registered.register()  # the only effect of importing: `with_observer("otel", ...)` works

__all__ = [
    "ConfigError",
    "OndineInstrumentor",
    "OtelObserver",
    "ParentBasedRandomBitsRatioSampler",
    "RandomBitsRatioSampler",
    "Telemetry",
    "TelemetryConfig",
    "__version__",
    "instrument",
]
