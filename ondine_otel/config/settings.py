"""The settings table: every ondine-otel setting, its environment variable, default and meaning.

Why a table: the argument name, type, environment variable, default and meaning of each
setting live in one row, so parsing, error messages, masking, ``TelemetryConfig`` and the
README table cannot drift apart. The table is the ``Settings`` dataclass, one field per row
(``TelemetryConfig`` inherits its fields, so the names and types are written once and stay
typed); ``SETTINGS`` gives the same rows as ``Setting`` records and ``DEFAULTS`` the defaults.

Conventions:

* Standard ``OTEL_*`` variables keep their spec meaning; ``OTEL_EXPORTER_OTLP_TIMEOUT`` is in
  milliseconds. Per-signal settings (``otlp_traces_*``, ``otlp_metrics_*``) default to ``None``
  and fall back to the generic ones: ``otlp_chain()`` states that rule for every user of it
  (``TelemetryConfig``, its masking and ``ondine-otel check``).
* ``default_text`` overrides the rendered default where the real one is derived from others.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields
from types import MappingProxyType
from typing import Any, Literal

from ondine_otel.config.parsers import (
    Invalid,
    Parser,
    choice,
    exporters,
    grouping,
    integer,
    label,
    number,
    parse_bool,
    parse_file,
    parse_headers,
    parse_host,
    parse_password,
    parse_resource,
    parse_url,
    parse_username,
)

Signal = Literal["traces", "metrics"]

SIGNALS: tuple[Signal, ...] = ("traces", "metrics")
EMPTY: Mapping[str, str] = MappingProxyType({})
ENV_PREFIX = "ONDINE_OTEL_"

OTLP_HTTP_DEFAULT = "http://localhost:4318"
OTLP_GRPC_DEFAULT = "http://localhost:4317"
PROMETHEUS_DEFAULT_PORT = 9464
#: Settings that describe one pipeline's runs rather than the process's exports: a pipeline's
#: own `with_observer("otel", {...})` values for these win over the process-wide set-up.
RUN_SETTINGS = (
    "pipeline_name",
    "progress_interval",
    "llm_span_limit",
    "llm_error_span_limit",
    "llm_span_rate",
    "capture_content",
)
#: Sampler names whose ratio is traces_sampler_arg; the ondine_* names are the entry points
#: ondine-otel registers, accepted here too so one environment serves both set-ups.
RATIO_SAMPLERS = frozenset(
    {
        "traceidratio",
        "parentbased_traceidratio",
        "ondine_traceidratio",
        "ondine_parentbased_traceidratio",
    }
)


@dataclass(frozen=True)
class Setting:
    """One configuration knob: the single source for parsing, errors, docs and masking.

    ``default_text`` overrides the rendered default where the real default is derived from
    other settings; ``secret`` keeps the value out of ``masked()``, ``repr``, errors,
    ``to_dict()`` and ondine's pipeline specification.
    """

    name: str
    env: str
    default: Any
    parse: Parser
    doc: str
    default_text: str | None = None
    secret: bool = False


_OTLP_PROTOCOLS = ("grpc", "http/protobuf")
_REJECTED_PROTOCOLS = {"http/json": "http/json is not supported by ondine-otel"}
_SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
    "ondine_traceidratio",
    "ondine_parentbased_traceidratio",
)
_REJECTED_SAMPLERS = {
    name: f"{name} is not supported by ondine-otel"
    for name in ("jaeger_remote", "parentbased_jaeger_remote", "xray")
}
#: Grouping labels the Pushgateway pusher sets itself.
_RESERVED_GROUPING = ("job", "pipeline", "run_id")

_parse_protocol = choice(_OTLP_PROTOCOLS, _REJECTED_PROTOCOLS)
_parse_compression = choice(("gzip", "none"))
_parse_timeout = integer(0, None, "expected whole milliseconds >= 0")
_parse_port = integer(0, 65535, "expected a port in 1..65535, or 0 to let the OS pick one")


def setting(
    env: str,
    default: Any,
    parse: Parser,
    doc: str,
    *,
    default_text: str | None = None,
    secret: bool = False,
    hashable: bool = True,
) -> Any:
    """One row of the table: a ``Settings`` field carrying its variable, parser and meaning.

    Mapping values cannot be hashed, so those fields stay out of the config's hash.
    """
    row = {
        "env": env,
        "default": default,
        "parse": parse,
        "doc": doc,
        "default_text": default_text,
        "secret": secret,
    }
    if isinstance(default, Mapping):  # mappings are unhashable: a factory, left out of hash
        return field(default_factory=lambda: default, hash=False, metadata={_ROW: row})
    return field(default=default, hash=hashable, metadata={_ROW: row})


def per_signal(generic: object, signal: Signal) -> Any:
    """The ``otlp_<signal>_<option>`` row of a generic ``otlp_<option>`` row: unset by default,
    so it falls back to the generic one (``otlp_chain``).

    ``generic`` is the generic row's name in the class body, which there is still the field
    ``setting()`` made (typed as its value, hence ``object``).
    """
    if not isinstance(generic, Field):
        raise TypeError("per_signal() takes a row defined above it in the Settings class body")
    row = generic.metadata[_ROW]
    option = row["env"].removeprefix(_OTLP_ENV_PREFIX).lower()
    return setting(
        f"{_OTLP_ENV_PREFIX}{signal.upper()}_{option.upper()}",
        None,
        row["parse"],
        f"Like otlp_{option}, for {signal} only.",
        default_text=f"otlp_{option}",
        secret=row["secret"],
        hashable=not isinstance(row["default"], Mapping),
    )


_ROW = "ondine_otel.setting"
_OTLP_ENV_PREFIX = "OTEL_EXPORTER_OTLP_"


@dataclass(frozen=True)
class Settings:
    """The settings table: one field per setting, in the order the README lists them.

    ``TelemetryConfig`` is this class with behaviour added, so the names and types written
    here are the only list of settings; ``SETTINGS`` is the same table as ``Setting`` records.
    """

    disabled: bool = setting(
        "OTEL_SDK_DISABLED",
        False,
        parse_bool,
        "Turn all ondine-otel telemetry off (a no-op observer).",
    )
    service_name: str = setting(
        "OTEL_SERVICE_NAME",
        "ondine",
        label(None),
        "service.name resource attribute.",
        default_text="ondine, or service.name from OTEL_RESOURCE_ATTRIBUTES",
    )
    resource_attributes: Mapping[str, str] = setting(
        "OTEL_RESOURCE_ATTRIBUTES",
        EMPTY,
        parse_resource,
        "Extra resource attributes, k=v,k2=v2 with percent-encoded values.",
    )
    traces_exporter: tuple[str, ...] | None = setting(
        "OTEL_TRACES_EXPORTER",
        None,
        exporters("traces", ("otlp", "console", "none")),
        "Span exporters: comma list of otlp, console, none.",
        default_text="otlp if an OTLP endpoint is set, else none",
    )
    metrics_exporter: tuple[str, ...] | None = setting(
        "OTEL_METRICS_EXPORTER",
        None,
        exporters("metrics", ("otlp", "prometheus", "console", "none")),
        "Metric exporters: comma list of otlp, prometheus, console, none.",
        default_text="otlp if an OTLP endpoint is set, plus prometheus if prometheus_port "
        "is set; else none",
    )
    traces_sampler: str = setting(
        "OTEL_TRACES_SAMPLER",
        "parentbased_always_on",
        choice(_SAMPLERS, _REJECTED_SAMPLERS),
        "Sampler: " + ", ".join(_SAMPLERS) + ".",
    )
    traces_sampler_arg: float | None = setting(
        "OTEL_TRACES_SAMPLER_ARG",
        None,
        number(0.0, True, 1.0, "expected a ratio between 0 and 1"),
        "Sampling ratio for the traceidratio samplers.",
        default_text="1.0 for ratio samplers",
    )
    otlp_endpoint: str | None = setting(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        None,
        parse_url,
        "OTLP base URL; /v1/traces and /v1/metrics are appended for http/protobuf. When "
        f"unset but an exporter is otlp: {OTLP_HTTP_DEFAULT} (http/protobuf) or "
        f"{OTLP_GRPC_DEFAULT} (grpc).",
    )
    otlp_traces_endpoint: str | None = setting(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        None,
        parse_url,
        "Full OTLP URL for traces, used as-is.",
        default_text="otlp_endpoint + /v1/traces (http/protobuf)",
    )
    otlp_metrics_endpoint: str | None = setting(
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        None,
        parse_url,
        "Full OTLP URL for metrics, used as-is.",
        default_text="otlp_endpoint + /v1/metrics (http/protobuf)",
    )
    otlp_protocol: str = setting(
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "http/protobuf",
        _parse_protocol,
        "OTLP transport: grpc or http/protobuf.",
    )
    otlp_traces_protocol: str | None = per_signal(otlp_protocol, "traces")
    otlp_metrics_protocol: str | None = per_signal(otlp_protocol, "metrics")
    otlp_headers: Mapping[str, str] = setting(
        "OTEL_EXPORTER_OTLP_HEADERS",
        EMPTY,
        parse_headers,
        "Headers sent with OTLP requests, k=v,k2=v2 with percent-encoded values.",
        secret=True,
    )
    otlp_traces_headers: Mapping[str, str] | None = per_signal(otlp_headers, "traces")
    otlp_metrics_headers: Mapping[str, str] | None = per_signal(otlp_headers, "metrics")
    otlp_timeout: int = setting(
        "OTEL_EXPORTER_OTLP_TIMEOUT", 10000, _parse_timeout, "OTLP export timeout in milliseconds."
    )
    otlp_traces_timeout: int | None = per_signal(otlp_timeout, "traces")
    otlp_metrics_timeout: int | None = per_signal(otlp_timeout, "metrics")
    otlp_compression: str = setting(
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        "none",
        _parse_compression,
        "OTLP compression: gzip or none.",
    )
    otlp_traces_compression: str | None = per_signal(otlp_compression, "traces")
    otlp_metrics_compression: str | None = per_signal(otlp_compression, "metrics")
    otlp_certificate: str | None = setting(
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
        None,
        parse_file,
        "CA certificate file to verify the OTLP server.",
    )
    otlp_traces_certificate: str | None = per_signal(otlp_certificate, "traces")
    otlp_metrics_certificate: str | None = per_signal(otlp_certificate, "metrics")
    prometheus_host: str = setting(
        "OTEL_EXPORTER_PROMETHEUS_HOST",
        "localhost",
        parse_host,
        "Address the Prometheus scrape endpoint listens on.",
    )
    prometheus_port: int | None = setting(
        "OTEL_EXPORTER_PROMETHEUS_PORT",
        None,
        _parse_port,
        "Port of the Prometheus scrape endpoint; 0 lets the OS pick one.",
        default_text=f"{PROMETHEUS_DEFAULT_PORT} when metrics_exporter includes prometheus",
    )
    prometheus_process_metrics: bool = setting(
        f"{ENV_PREFIX}PROMETHEUS_PROCESS_METRICS",
        False,
        parse_bool,
        "Also expose the process_*/python_* collectors on /metrics and in pushes.",
    )
    pipeline_name: str = setting(
        f"{ENV_PREFIX}PIPELINE_NAME",
        "ondine",
        label(128),
        "Pipeline label on spans and metrics.",
    )
    pushgateway_url: str | None = setting(
        f"{ENV_PREFIX}PUSHGATEWAY_URL",
        None,
        parse_url,
        "Prometheus Pushgateway to push batch metrics to.",
    )
    pushgateway_username: str | None = setting(
        f"{ENV_PREFIX}PUSHGATEWAY_USERNAME",
        None,
        parse_username,
        "Pushgateway basic-auth user (needs the password too).",
        secret=True,
    )
    pushgateway_password: str | None = setting(
        f"{ENV_PREFIX}PUSHGATEWAY_PASSWORD",
        None,
        parse_password,
        "Pushgateway basic-auth password (needs the user too).",
        secret=True,
    )
    pushgateway_grouping: Mapping[str, str] = setting(
        f"{ENV_PREFIX}PUSHGATEWAY_GROUPING",
        EMPTY,
        grouping(_RESERVED_GROUPING),
        "Extra Pushgateway grouping labels, k=v,...: one distinct value per parallel worker "
        "(e.g. shard=3), stable across restarts, or workers overwrite each other's counters.",
        default_text="none: one group per pipeline",
    )
    push_interval: float = setting(
        f"{ENV_PREFIX}PUSH_INTERVAL",
        15.0,
        number(0.0, False, None, "expected a number of seconds > 0"),
        "Seconds between Pushgateway pushes during a run.",
    )
    metric_export_interval: int = setting(
        "OTEL_METRIC_EXPORT_INTERVAL",
        15000,
        integer(1, None, "expected a whole number of milliseconds >= 1"),
        "Milliseconds between OTLP metric exports (the SDK's 60000 is long for batch jobs).",
    )
    handle_signals: bool = setting(
        f"{ENV_PREFIX}HANDLE_SIGNALS",
        True,
        parse_bool,
        "On SIGTERM (and SIGINT when the job has no handler), end active runs as errors, "
        "flush the exports, then run the previous handler or exit with 128+signal.",
    )
    shutdown_timeout: float = setting(
        f"{ENV_PREFIX}SHUTDOWN_TIMEOUT",
        5.0,
        number(0.0, False, None, "expected a number of seconds > 0"),
        "Most seconds spent flushing exports when the process is terminated by a signal.",
    )
    llm_span_limit: int = setting(
        f"{ENV_PREFIX}LLM_SPAN_LIMIT",
        100,
        integer(0, None, "expected a whole number >= 0"),
        "LLM calls of a run that always get a chat span (the first N).",
    )
    llm_error_span_limit: int = setting(
        f"{ENV_PREFIX}LLM_ERROR_SPAN_LIMIT",
        100,
        integer(0, None, "expected a whole number >= 0"),
        "Failed LLM calls per run that get a chat span beyond the first N.",
    )
    llm_span_rate: float = setting(
        f"{ENV_PREFIX}LLM_SPAN_RATE",
        1.0,
        number(0.0, True, None, "expected a number of spans per second >= 0"),
        "Chat spans per second per run for successful calls after the first N (0: none).",
    )
    progress_interval: float = setting(
        f"{ENV_PREFIX}PROGRESS_INTERVAL",
        5.0,
        number(0.0, True, None, "expected a number of seconds >= 0"),
        "Seconds between ondine.progress span events (0: every update).",
    )
    label_limit: int = setting(
        f"{ENV_PREFIX}LABEL_LIMIT",
        100,
        integer(1, None, "expected a whole number >= 1"),
        "Most distinct pipeline/model label values before folding into 'other'.",
    )
    capture_content: bool = setting(
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
        False,
        parse_bool,
        "Record prompts and completions on LLM spans (may contain personal data).",
    )


SETTINGS: tuple[Setting, ...] = tuple(
    Setting(name=f.name, **f.metadata[_ROW]) for f in fields(Settings)
)


BY_NAME: Mapping[str, Setting] = MappingProxyType({s.name: s for s in SETTINGS})
#: Every setting's default, by argument name: the one place defaults are spelled out.
DEFAULTS: Mapping[str, Any] = MappingProxyType({s.name: s.default for s in SETTINGS})
SECRET_SETTINGS = frozenset(s.name for s in SETTINGS if s.secret)
#: The OTLP options that exist generic and per signal (otlp_<option>, otlp_<signal>_<option>).
OTLP_OPTIONS = ("endpoint", "protocol", "headers", "timeout", "compression", "certificate")
EXPORTER_SIGNAL: Mapping[str, Signal] = MappingProxyType(
    {"traces_exporter": "traces", "metrics_exporter": "metrics"}
)


def otlp_chain(signal: Signal, option: str) -> tuple[Setting, Setting]:
    """The OTLP fallback rule, stated once: (per-signal setting, generic setting).

    The per-signal setting applies when it is set; otherwise the generic one, with the generic
    one's default when that is unset too (for the endpoint, the OTLP spec's URL rules follow:
    ``TelemetryConfig.otlp_for``).
    """
    if signal not in SIGNALS or option not in OTLP_OPTIONS:
        raise ValueError(f"no OTLP setting for signal {signal!r} and option {option!r}")
    return BY_NAME[f"otlp_{signal}_{option}"], BY_NAME[f"otlp_{option}"]


def per_signal_option(name: str) -> tuple[Signal, str] | None:
    """(signal, option) when ``name`` is a per-signal OTLP setting, else None."""
    for signal in SIGNALS:
        prefix = f"otlp_{signal}_"
        if name.startswith(prefix) and name[len(prefix) :] in OTLP_OPTIONS:
            return signal, name[len(prefix) :]
    return None


def unrecognized_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """``ONDINE_OTEL_*`` variables that match no setting: likely typos, for ``check``."""
    env = os.environ if environ is None else environ
    known = {s.env for s in SETTINGS}
    return sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in known)


def sdk_disabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether OTEL_SDK_DISABLED turns everything off, read the same way as `disabled`.

    For entries that take no settings (the zero-code instrumentor, a bare OtelObserver): an
    unparsable value is treated as not disabled rather than raising inside a running job.
    """
    env = os.environ if environ is None else environ
    raw = env.get(BY_NAME["disabled"].env, "").strip()
    if not raw:
        return False
    try:
        return parse_bool(raw)
    except Invalid:
        return False
