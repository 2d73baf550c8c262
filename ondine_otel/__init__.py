"""OpenTelemetry traces and metrics for ondine pipelines.

The public surface only; see the README for the entries (instrument(), zero-code, observers).
"""

from ondine_otel.config import ConfigError, TelemetryConfig
from ondine_otel.entries import named
from ondine_otel.entries.instrument import instrument
from ondine_otel.entries.observer import OtelObserver
from ondine_otel.export.sampler import ParentBasedRandomBitsRatioSampler, RandomBitsRatioSampler
from ondine_otel.instrumentor import OndineInstrumentor
from ondine_otel.runtime.handle import Telemetry
from ondine_otel.version import __version__

named.register()  # the only effect of importing: `with_observer("otel", ...)` works, fully

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
