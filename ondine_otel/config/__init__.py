"""Configuration, one concept per module.

``settings`` (the table: names, variables, defaults), ``parsers`` (value parsers), ``masking``
(how values are shown), ``model`` (``TelemetryConfig``), ``errors`` (``ConfigError``). Import
public names from here; the module layout is not part of the API.
"""

from ondine_otel.config.errors import ConfigError
from ondine_otel.config.masking import settings_table
from ondine_otel.config.model import OtlpSettings, Source, TelemetryConfig, observer_config
from ondine_otel.config.settings import (
    BY_NAME,
    DEFAULTS,
    OTLP_GRPC_DEFAULT,
    OTLP_HTTP_DEFAULT,
    PROMETHEUS_DEFAULT_PORT,
    RATIO_SAMPLERS,
    RUN_SETTINGS,
    SECRET_SETTINGS,
    SETTINGS,
    Setting,
    Signal,
    otlp_chain,
    per_signal_option,
    sdk_disabled,
    unrecognized_environment,
)

__all__ = [
    "BY_NAME",
    "DEFAULTS",
    "OTLP_GRPC_DEFAULT",
    "OTLP_HTTP_DEFAULT",
    "PROMETHEUS_DEFAULT_PORT",
    "RATIO_SAMPLERS",
    "RUN_SETTINGS",
    "SECRET_SETTINGS",
    "SETTINGS",
    "ConfigError",
    "OtlpSettings",
    "Setting",
    "Signal",
    "Source",
    "TelemetryConfig",
    "observer_config",
    "otlp_chain",
    "per_signal_option",
    "sdk_disabled",
    "settings_table",
    "unrecognized_environment",
]
