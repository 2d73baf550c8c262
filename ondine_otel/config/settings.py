"""All ondine-otel settings, parsed and validated once into an immutable ``TelemetryConfig``.

Why one object: the observer, the CLI ``check`` command and ondine's
``with_observer("otel", config_dict)`` must agree on what is configured, and a bad value must
fail before a long batch run starts rather than as telemetry that never arrives.

Why a table (``SETTINGS``): the argument name, environment variable, default and meaning of
each setting live in one record, so parsing, error messages, ``masked()`` and the README table
(``settings_table()``) cannot drift apart.

Precedence is keyword argument > environment variable > default. Conventions:

* An empty environment variable counts as unset (OpenTelemetry spec).
* A keyword argument of ``None`` counts as not given, so wrappers can forward optional
  parameters and still let the environment apply. An empty string argument for a setting
  whose default is unset means "explicitly unset" and beats the environment.
* Standard ``OTEL_*`` variables keep their spec meaning; ``OTEL_EXPORTER_OTLP_TIMEOUT`` is in
  milliseconds. Per-signal settings (``otlp_traces_*``, ``otlp_metrics_*``) fall back to the
  generic ones; ``otlp_for()`` applies that and the spec's endpoint URL rules.
* Exporters default from what is configured: traces use ``otlp`` when an OTLP endpoint for
  traces (generic or per-signal) is set, else none; metrics likewise, plus ``prometheus`` when
  ``prometheus_port`` is set. ``disabled`` overrides everything.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal, cast
from urllib.parse import unquote, urlsplit

from ondine_otel.config.errors import ConfigError

__all__ = [
    "OTLP_GRPC_DEFAULT",
    "OTLP_HTTP_DEFAULT",
    "PROMETHEUS_DEFAULT_PORT",
    "RATIO_SAMPLERS",
    "SETTINGS",
    "OtlpSettings",
    "Setting",
    "Signal",
    "Source",
    "TelemetryConfig",
    "settings_table",
    "unrecognized_environment",
]

Signal = Literal["traces", "metrics"]
Source = Literal["argument", "environment", "default"]
Parser = Callable[[Any], Any]

_SIGNALS: tuple[Signal, ...] = ("traces", "metrics")
_EMPTY: Mapping[str, str] = MappingProxyType({})
_MASK = "***"
_UNSET_TEXT = "unset"
_ENV_PREFIX = "ONDINE_OTEL_"

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
RATIO_SAMPLERS = frozenset({"traceidratio", "parentbased_traceidratio"})


@dataclass(frozen=True)
class Setting:
    """One configuration knob: the single source for parsing, errors, docs and masking.

    ``default_text`` overrides the rendered default where the real default is derived from
    other settings; ``secret`` keeps the value out of ``masked()``, ``repr`` and errors.
    """

    name: str
    env: str
    default: Any
    parse: Parser
    doc: str
    default_text: str | None = None
    secret: bool = False


class _Invalid(Exception):
    """Raised by parsers; turned into ConfigError by the caller, which knows the names."""

    def __init__(self, expected: str, reason: str | None = None, shown: object = None) -> None:
        super().__init__(expected)
        self.expected = expected
        self.reason = reason
        self.shown = shown  # replaces the raw value in the message when it must not be echoed


# --- parsers ------------------------------------------------------------------------------
# Each parser accepts the environment's text and the natural Python type of a keyword
# argument, and is idempotent on its own output so that direct construction re-validates.


def _text(raw: object, expected: str) -> str:
    if not isinstance(raw, str):
        raise _Invalid(expected, f"got {type(raw).__name__}, not text")
    return raw.strip()


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def _parse_bool(raw: object) -> bool:
    expected = "expected true or false (1/0 and yes/no also accepted)"
    if isinstance(raw, bool):
        return raw
    text = _text(raw, expected).lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _Invalid(expected)


def _label(limit: int | None) -> Parser:
    size = f"1..{limit} characters" if limit else "a non-empty name"
    expected = f"expected {size} without control characters"

    def parse(raw: object) -> str:
        text = _text(raw, expected)
        if not text:
            raise _Invalid(expected, "it is blank")
        if limit is not None and len(text) > limit:
            raise _Invalid(expected, f"it has {len(text)} characters")
        if _has_control(text):
            raise _Invalid(expected, "it contains control characters")
        return text

    return parse


def _choice(options: tuple[str, ...], rejected: Mapping[str, str] | None = None) -> Parser:
    expected = "expected " + _or_list(options)

    def parse(raw: object) -> str:
        text = _text(raw, expected).lower()
        if rejected and text in rejected:
            raise _Invalid(expected, rejected[text])
        if text not in options:
            raise _Invalid(expected)
        return text

    return parse


def _or_list(options: Iterable[str]) -> str:
    items = list(options)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _integer(low: int, high: int | None, expected: str) -> Parser:
    def parse(raw: object) -> int:
        if isinstance(raw, bool):
            raise _Invalid(expected, "got a bool")
        if isinstance(raw, int):
            value = raw
        else:
            text = _text(raw, expected)
            if not re.fullmatch(r"\+?[0-9]+", text):
                raise _Invalid(expected)
            value = int(text)
        if value < low or (high is not None and value > high):
            raise _Invalid(expected)
        return value

    return parse


def _number(low: float, low_inclusive: bool, high: float | None, expected: str) -> Parser:
    def parse(raw: object) -> float:
        if isinstance(raw, bool):
            raise _Invalid(expected, "got a bool")
        if isinstance(raw, (int, float)):
            value = float(raw)
        else:
            try:
                value = float(_text(raw, expected))
            except ValueError:
                raise _Invalid(expected) from None
        too_low = value < low or (value == low and not low_inclusive)
        if not math.isfinite(value) or too_low or (high is not None and value > high):
            raise _Invalid(expected)
        return value

    return parse


_URL_EXPECTED = "expected an http:// or https:// URL like http://host:4318[/path]"
_HOST_RE = re.compile(r"[\w.-]+")


def _parse_url(raw: object) -> str:
    text = _text(raw, _URL_EXPECTED)
    if not text or any(ch.isspace() for ch in text) or _has_control(text):
        raise _Invalid(_URL_EXPECTED, "it is empty or contains whitespace")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise _Invalid(_URL_EXPECTED, "the host or port is malformed") from None
    if "@" in parts.netloc:
        # Never echo embedded credentials back into logs.
        shown = text.replace(parts.netloc, "***@" + parts.netloc.rpartition("@")[2], 1)
        raise _Invalid(_URL_EXPECTED, "credentials in the URL are not accepted", shown=shown)
    if parts.scheme.lower() not in ("http", "https"):
        reason = "the scheme is missing" if "://" not in text else "the scheme is not http(s)"
        raise _Invalid(_URL_EXPECTED, reason)
    host = parts.hostname or ""
    if not host or not (parts.netloc.startswith("[") or _HOST_RE.fullmatch(host)):
        raise _Invalid(_URL_EXPECTED, "the host is missing or malformed")
    if port == 0:
        raise _Invalid(_URL_EXPECTED, "port 0 is not a port to connect to")
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise _Invalid(_URL_EXPECTED, "query strings and fragments are not accepted")
    return text


_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 header field name


def _pairs(raw: object, expected: str) -> list[tuple[str, str]]:
    """Split ``k=v,k2=v2`` (values percent-decoded) or take a mapping's items literally."""
    if isinstance(raw, Mapping):
        items = []
        for key, value in raw.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise _Invalid(expected, "keys and values must be strings")
            items.append((key.strip(), value.strip()))
        return items
    text = _text(raw, expected)
    items = []
    for number, entry in enumerate(text.split(","), 1):
        if not entry.strip():
            continue  # tolerate trailing or doubled commas
        key, sep, value = entry.partition("=")
        if not sep:
            hint = " (write key=value, not key: value)" if ":" in entry else ""
            raise _Invalid(expected, f"entry {number} has no '='{hint}")
        items.append((key.strip(), unquote(value.strip())))
    return items


def _parse_resource(raw: object) -> Mapping[str, str]:
    expected = "expected comma-separated key=value pairs with percent-encoded values"
    result: dict[str, str] = {}
    for key, value in _pairs(raw, expected):
        if not key or any(ch.isspace() or ch in ",=" for ch in key) or _has_control(key):
            raise _Invalid(expected, f"key {key!r} is empty or malformed")
        result[key] = value
    return MappingProxyType(result)


def _parse_headers(raw: object) -> Mapping[str, str]:
    expected = "expected comma-separated key=value pairs with percent-encoded values"
    result: dict[str, str] = {}
    for key, value in _pairs(raw, expected):
        if not _TOKEN_RE.fullmatch(key):
            raise _Invalid(expected, f"{key!r} is not a valid header name")
        if any(ch in value for ch in "\r\n\0"):
            raise _Invalid(expected, f"the value of {key!r} contains a line break")
        # gRPC metadata keys must be lowercase and HTTP names are case-insensitive.
        result[key.lower()] = value
    return MappingProxyType(result)


def _exporters(signal: str, options: tuple[str, ...]) -> Parser:
    expected = f"expected a comma-separated list of {_or_list(options)}"

    def parse(raw: object) -> tuple[str, ...]:
        if isinstance(raw, str):
            names = raw.split(",")
        elif isinstance(raw, (list, tuple)) and all(isinstance(n, str) for n in raw):
            if not raw:
                return ()
            names = list(raw)
        else:
            raise _Invalid(expected, f"got {type(raw).__name__}")
        names = [n.strip().lower() for n in names if n.strip()]
        if not names:
            raise _Invalid(expected, "no exporter named")
        for name in names:
            if name == "prometheus" and signal == "traces":
                raise _Invalid(expected, "prometheus exports metrics only")
            if name not in options:
                raise _Invalid(expected, f"unknown exporter {name!r}")
        if "none" in names:
            if len(set(names)) > 1:
                raise _Invalid(expected, "'none' cannot be combined with other exporters")
            return ()
        return tuple(dict.fromkeys(names))

    return parse


def _parse_file(raw: object) -> str:
    expected = "expected the path of an existing, readable file"
    if isinstance(raw, os.PathLike):
        raw = os.fspath(raw)
    path = _text(raw, expected)
    if not os.path.isfile(path):
        reason = "it is not a regular file" if os.path.exists(path) else "no such file"
        raise _Invalid(expected, reason)
    if not os.access(path, os.R_OK):
        raise _Invalid(expected, "it is not readable")
    return path


def _parse_host(raw: object) -> str:
    expected = "expected a host name or address to listen on, like localhost or 0.0.0.0"
    text = _text(raw, expected)
    if not text or any(ch.isspace() or ch == "/" for ch in text) or _has_control(text):
        raise _Invalid(expected, "give a host, not a URL" if "/" in text else None)
    return text


def _parse_username(raw: object) -> str:
    expected = "expected a non-empty user name without ':'"
    text = _text(raw, expected)
    if not text or ":" in text or _has_control(text):
        raise _Invalid(expected)
    return text


def _parse_password(raw: object) -> str:
    expected = "expected a non-empty password"
    if not isinstance(raw, str) or not raw:
        raise _Invalid(expected)
    return raw  # not stripped: whitespace may be part of a password


_OTLP_PROTOCOLS = ("grpc", "http/protobuf")
_REJECTED_PROTOCOLS = {"http/json": "http/json is not supported by ondine-otel"}
_SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
_REJECTED_SAMPLERS = {
    name: f"{name} is not supported by ondine-otel"
    for name in ("jaeger_remote", "parentbased_jaeger_remote", "xray")
}

_parse_protocol = _choice(_OTLP_PROTOCOLS, _REJECTED_PROTOCOLS)
_parse_compression = _choice(("gzip", "none"))
_parse_timeout = _integer(0, None, "expected whole milliseconds >= 0")
_parse_port = _integer(0, 65535, "expected a port in 1..65535, or 0 to let the OS pick one")


def _otlp_variants(
    suffix: str,
    parse: Parser,
    default: Any,
    doc: str,
    secret: bool = False,
) -> tuple[Setting, ...]:
    """The generic OTLP setting plus its per-signal variants, which fall back to it."""
    generic = Setting(
        f"otlp_{suffix}",
        f"OTEL_EXPORTER_OTLP_{suffix.upper()}",
        default,
        parse,
        doc,
        secret=secret,
    )
    variants = tuple(
        Setting(
            f"otlp_{signal}_{suffix}",
            f"OTEL_EXPORTER_OTLP_{signal.upper()}_{suffix.upper()}",
            None,
            parse,
            f"Like otlp_{suffix}, for {signal} only.",
            default_text=f"otlp_{suffix}",
            secret=secret,
        )
        for signal in _SIGNALS
    )
    return (generic, *variants)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "disabled",
        "OTEL_SDK_DISABLED",
        False,
        _parse_bool,
        "Turn all ondine-otel telemetry off (a no-op observer).",
    ),
    Setting(
        "service_name",
        "OTEL_SERVICE_NAME",
        "ondine",
        _label(None),
        "service.name resource attribute.",
        default_text="ondine, or service.name from OTEL_RESOURCE_ATTRIBUTES",
    ),
    Setting(
        "resource_attributes",
        "OTEL_RESOURCE_ATTRIBUTES",
        _EMPTY,
        _parse_resource,
        "Extra resource attributes, k=v,k2=v2 with percent-encoded values.",
    ),
    Setting(
        "traces_exporter",
        "OTEL_TRACES_EXPORTER",
        None,
        _exporters("traces", ("otlp", "console", "none")),
        "Span exporters: comma list of otlp, console, none.",
        default_text="otlp if an OTLP endpoint is set, else none",
    ),
    Setting(
        "metrics_exporter",
        "OTEL_METRICS_EXPORTER",
        None,
        _exporters("metrics", ("otlp", "prometheus", "console", "none")),
        "Metric exporters: comma list of otlp, prometheus, console, none.",
        default_text="otlp if an OTLP endpoint is set, plus prometheus if prometheus_port "
        "is set; else none",
    ),
    Setting(
        "traces_sampler",
        "OTEL_TRACES_SAMPLER",
        "parentbased_always_on",
        _choice(_SAMPLERS, _REJECTED_SAMPLERS),
        "Sampler: " + ", ".join(_SAMPLERS) + ".",
    ),
    Setting(
        "traces_sampler_arg",
        "OTEL_TRACES_SAMPLER_ARG",
        None,
        _number(0.0, True, 1.0, "expected a ratio between 0 and 1"),
        "Sampling ratio for the traceidratio samplers.",
        default_text="1.0 for ratio samplers",
    ),
    Setting(
        "otlp_endpoint",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        None,
        _parse_url,
        "OTLP base URL; /v1/traces and /v1/metrics are appended for http/protobuf. When "
        f"unset but an exporter is otlp: {OTLP_HTTP_DEFAULT} (http/protobuf) or "
        f"{OTLP_GRPC_DEFAULT} (grpc).",
    ),
    *(
        Setting(
            f"otlp_{signal}_endpoint",
            f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT",
            None,
            _parse_url,
            f"Full OTLP URL for {signal}, used as-is.",
            default_text=f"otlp_endpoint + /v1/{signal} (http/protobuf)",
        )
        for signal in _SIGNALS
    ),
    *_otlp_variants(
        "protocol", _parse_protocol, "http/protobuf", "OTLP transport: grpc or http/protobuf."
    ),
    *_otlp_variants(
        "headers",
        _parse_headers,
        _EMPTY,
        "Headers sent with OTLP requests, k=v,k2=v2 with percent-encoded values.",
        secret=True,
    ),
    *_otlp_variants("timeout", _parse_timeout, 10000, "OTLP export timeout in milliseconds."),
    *_otlp_variants("compression", _parse_compression, "none", "OTLP compression: gzip or none."),
    *_otlp_variants(
        "certificate", _parse_file, None, "CA certificate file to verify the OTLP server."
    ),
    Setting(
        "prometheus_host",
        "OTEL_EXPORTER_PROMETHEUS_HOST",
        "localhost",
        _parse_host,
        "Address the Prometheus scrape endpoint listens on.",
    ),
    Setting(
        "prometheus_port",
        "OTEL_EXPORTER_PROMETHEUS_PORT",
        None,
        _parse_port,
        "Port of the Prometheus scrape endpoint; 0 lets the OS pick one.",
        default_text=f"{PROMETHEUS_DEFAULT_PORT} when metrics_exporter includes prometheus",
    ),
    Setting(
        "prometheus_process_metrics",
        f"{_ENV_PREFIX}PROMETHEUS_PROCESS_METRICS",
        False,
        _parse_bool,
        "Also expose the process_*/python_* collectors on /metrics and in pushes.",
    ),
    Setting(
        "pipeline_name",
        f"{_ENV_PREFIX}PIPELINE_NAME",
        "ondine",
        _label(128),
        "Pipeline label on spans and metrics.",
    ),
    Setting(
        "pushgateway_url",
        f"{_ENV_PREFIX}PUSHGATEWAY_URL",
        None,
        _parse_url,
        "Prometheus Pushgateway to push batch metrics to.",
    ),
    Setting(
        "pushgateway_username",
        f"{_ENV_PREFIX}PUSHGATEWAY_USERNAME",
        None,
        _parse_username,
        "Pushgateway basic-auth user (needs the password too).",
    ),
    Setting(
        "pushgateway_password",
        f"{_ENV_PREFIX}PUSHGATEWAY_PASSWORD",
        None,
        _parse_password,
        "Pushgateway basic-auth password (needs the user too).",
        secret=True,
    ),
    Setting(
        "push_interval",
        f"{_ENV_PREFIX}PUSH_INTERVAL",
        15.0,
        _number(0.0, False, None, "expected a number of seconds > 0"),
        "Seconds between Pushgateway pushes during a run.",
    ),
    Setting(
        "llm_span_limit",
        f"{_ENV_PREFIX}LLM_SPAN_LIMIT",
        100,
        _integer(0, None, "expected a whole number >= 0"),
        "LLM calls of a run that always get a chat span (the first N).",
    ),
    Setting(
        "llm_error_span_limit",
        f"{_ENV_PREFIX}LLM_ERROR_SPAN_LIMIT",
        100,
        _integer(0, None, "expected a whole number >= 0"),
        "Failed LLM calls per run that get a chat span beyond the first N.",
    ),
    Setting(
        "llm_span_rate",
        f"{_ENV_PREFIX}LLM_SPAN_RATE",
        1.0,
        _number(0.0, True, None, "expected a number of spans per second >= 0"),
        "Chat spans per second per run for successful calls after the first N (0: none).",
    ),
    Setting(
        "progress_interval",
        f"{_ENV_PREFIX}PROGRESS_INTERVAL",
        5.0,
        _number(0.0, True, None, "expected a number of seconds >= 0"),
        "Seconds between ondine.progress span events (0: every update).",
    ),
    Setting(
        "label_limit",
        f"{_ENV_PREFIX}LABEL_LIMIT",
        100,
        _integer(1, None, "expected a whole number >= 1"),
        "Most distinct pipeline/model label values before folding into 'other'.",
    ),
    Setting(
        "capture_content",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
        False,
        _parse_bool,
        "Record prompts and completions on LLM spans (may contain personal data).",
    ),
)

_BY_NAME: Mapping[str, Setting] = MappingProxyType({s.name: s for s in SETTINGS})
_EXPORTER_SIGNAL: Mapping[str, Signal] = MappingProxyType(
    {"traces_exporter": "traces", "metrics_exporter": "metrics"}
)


# --- rendering and masking ----------------------------------------------------------------

_SECRET_KEY_RE = re.compile(
    r"pass|secret|token|auth|api[-_.]?key|credential|cookie|session|signature|private",
    re.IGNORECASE,
)
_TOKENISH_RE = re.compile(
    r"(?P<scheme>(?i:bearer|basic)\s+\S+)"
    r"|(?P<prefixed>(?:sk|pk|rk|ghp|gho|ghu|ghs|glpat|xox[abprs])[-_][\w-]{8,})"
    r"|(?P<long>[\w+=-]{24,})"
)


def _redact(text: str) -> str:
    """Hide substrings that look like credentials (bearer tokens, API keys, long random ids)."""

    def hide(match: re.Match[str]) -> str:
        found = match.group(0)
        if match.group("long") and not (
            any(ch.isdigit() for ch in found) and any(ch.isalpha() for ch in found)
        ):
            return found  # long plain words and numbers are not tokens
        return _MASK

    return _TOKENISH_RE.sub(hide, text)


def _format(value: object) -> str:
    """Render a parsed value as the text used in the docs table and in ``masked()``."""
    if value is None:
        return _UNSET_TEXT
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, tuple):
        return ",".join(value) if value else "none"
    if isinstance(value, Mapping):
        return ",".join(f"{k}={v}" for k, v in value.items()) if value else "empty"
    return str(value)


def _mask_pairs(value: Mapping[str, str]) -> str:
    return ",".join(f"{k}={_MASK}" for k in value) if value else "empty"


def _display(setting: Setting, value: object) -> str:
    """A value as text safe to show: secrets masked, token-like strings redacted."""
    if setting.secret:
        if isinstance(value, Mapping):
            return _mask_pairs(value)
        return _UNSET_TEXT if value is None else _MASK
    if isinstance(value, Mapping):
        return _format(
            {k: _MASK if _SECRET_KEY_RE.search(k) else _redact(v) for k, v in value.items()}
        )
    # URLs are where tokens hide in practice (ingest paths); names and file paths are left
    # intact because redacting them would make `check` output misleading.
    if setting.name.endswith(("_endpoint", "_url")):
        return _redact(_format(value))
    return _format(value)


def _masked_raw(raw: object) -> object:
    """A secret's raw value as it may appear in an error: structure kept, values hidden."""
    if isinstance(raw, Mapping):
        return {k: _MASK for k in raw}
    if isinstance(raw, str) and "=" in raw:
        return ",".join(
            (e.partition("=")[0] + "=" + _MASK) if "=" in e else _MASK for e in raw.split(",")
        )
    return _MASK


def _plain(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple):
        return list(value)
    return value


# --- validation driver --------------------------------------------------------------------


def _names(setting: Setting, source: str) -> tuple[str, str]:
    """(name the value came under, the other name) for error messages."""
    if source == "environment":
        return setting.env, f"argument {setting.name}"
    return setting.name, f"env var {setting.env}"


def _parse(setting: Setting, raw: object, source: str) -> Any:
    try:
        return setting.parse(raw)
    except _Invalid as bad:
        used, alias = _names(setting, source)
        shown = bad.shown if bad.shown is not None else raw
        if setting.secret:
            shown = _masked_raw(raw)
        raise ConfigError(used, shown, bad.expected, alias, bad.reason) from None


def _check_combinations(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    """Rules spanning several settings; run after each setting parsed on its own."""
    user, password = values["pushgateway_username"], values["pushgateway_password"]
    if (user is None) != (password is None):
        present, missing = (
            ("pushgateway_username", "pushgateway_password")
            if user is not None
            else ("pushgateway_password", "pushgateway_username")
        )
        setting, other = _BY_NAME[present], _BY_NAME[missing]
        used, alias = _names(setting, sources.get(present, "argument"))
        shown = _MASK if setting.secret else values[present]
        raise ConfigError(
            used,
            shown,
            f"set {other.name} ({other.env}) as well, or neither",
            alias,
            "Pushgateway basic auth needs both a user name and a password",
        )
    if user is not None and values["pushgateway_url"] is None:
        setting, url = _BY_NAME["pushgateway_username"], _BY_NAME["pushgateway_url"]
        used, alias = _names(setting, sources.get(setting.name, "argument"))
        raise ConfigError(
            used,
            user,
            f"set {url.name} ({url.env}) too, or drop the credentials",
            alias,
            "Pushgateway credentials are given but no Pushgateway URL",
        )


def _unknown(names: Iterable[str]) -> None:
    for name in names:
        if name not in _BY_NAME:
            close = difflib.get_close_matches(name, list(_BY_NAME), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            valid = ", ".join(_BY_NAME)
            raise ConfigError(
                name,
                None,
                f"valid names: {valid}",
                message=f"{name!r} is not an ondine-otel setting; {hint}valid names: {valid}",
            )


def _join_url(base: str, path: str) -> str:
    return (base if base.endswith("/") else base + "/") + path


@dataclass(frozen=True)
class OtlpSettings:
    """Effective OTLP exporter settings for one signal, ready to pass to an exporter.

    All values are explicit so exporters never fall back to reading the environment
    themselves, which could disagree with what ``ondine-otel check`` reported.
    """

    endpoint: str
    protocol: str
    headers: dict[str, str] = field(hash=False)  # a fresh copy: exporters want a plain dict
    timeout_s: float
    compression: str
    certificate: str | None


@dataclass(frozen=True, repr=False)
class TelemetryConfig:
    """Every ondine-otel setting, validated at construction and immutable afterwards.

    Build it with ``from_settings()`` (arguments > environment > defaults) or
    ``from_dict()``; fields hold the configured values (``None`` = unset, falls back), and
    ``otlp_for()``, ``exporters_for()``, ``sampler_ratio`` and ``prometheus_address`` give
    the effective ones. Field defaults mirror ``SETTINGS`` (a test enforces it).
    """

    disabled: bool = False
    service_name: str = "ondine"
    resource_attributes: Mapping[str, str] = field(default_factory=lambda: _EMPTY, hash=False)
    traces_exporter: tuple[str, ...] | None = None
    metrics_exporter: tuple[str, ...] | None = None
    traces_sampler: str = "parentbased_always_on"
    traces_sampler_arg: float | None = None
    otlp_endpoint: str | None = None
    otlp_traces_endpoint: str | None = None
    otlp_metrics_endpoint: str | None = None
    otlp_protocol: str = "http/protobuf"
    otlp_traces_protocol: str | None = None
    otlp_metrics_protocol: str | None = None
    otlp_headers: Mapping[str, str] = field(default_factory=lambda: _EMPTY, hash=False)
    otlp_traces_headers: Mapping[str, str] | None = field(default=None, hash=False)
    otlp_metrics_headers: Mapping[str, str] | None = field(default=None, hash=False)
    otlp_timeout: int = 10000
    otlp_traces_timeout: int | None = None
    otlp_metrics_timeout: int | None = None
    otlp_compression: str = "none"
    otlp_traces_compression: str | None = None
    otlp_metrics_compression: str | None = None
    otlp_certificate: str | None = None
    otlp_traces_certificate: str | None = None
    otlp_metrics_certificate: str | None = None
    prometheus_host: str = "localhost"
    prometheus_port: int | None = None
    prometheus_process_metrics: bool = False
    pipeline_name: str = "ondine"
    pushgateway_url: str | None = None
    pushgateway_username: str | None = None
    pushgateway_password: str | None = None
    push_interval: float = 15.0
    llm_span_limit: int = 100
    llm_error_span_limit: int = 100
    llm_span_rate: float = 1.0
    progress_interval: float = 5.0
    label_limit: int = 100
    capture_content: bool = False

    # Where each value came from, for `ondine-otel check`; not a field, so not compared.
    _sources: ClassVar[Mapping[str, str]] = _EMPTY

    def __post_init__(self) -> None:
        # Direct construction must be as safe as from_settings(): re-parse every field
        # (parsers are idempotent) so a bad value can never sit in a config object.
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            raw = getattr(self, setting.name)
            if raw is None and setting.default is None:
                values[setting.name] = None
            else:
                values[setting.name] = _parse(setting, raw, "argument")
        _check_combinations(values, {})
        for name, value in values.items():
            object.__setattr__(self, name, value)
        sources = {
            s.name: "default" if values[s.name] == s.default else "argument" for s in SETTINGS
        }
        object.__setattr__(self, "_sources", MappingProxyType(sources))

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def from_settings(
        cls, *, environ: Mapping[str, str] | None = None, **kwargs: Any
    ) -> TelemetryConfig:
        """Resolve keyword arguments > environment (``os.environ`` by default) > defaults."""
        _unknown(kwargs)
        env: Mapping[str, str] = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for setting in SETTINGS:
            given = kwargs.get(setting.name)
            text = env.get(setting.env)
            if given is not None:
                sources[setting.name] = "argument"
                explicit_unset = setting.default is None and isinstance(given, str)
                if explicit_unset and not given.strip():
                    values[setting.name] = None
                else:
                    values[setting.name] = _parse(setting, given, "argument")
            elif isinstance(text, str) and text.strip():
                sources[setting.name] = "environment"
                values[setting.name] = _parse(setting, text, "environment")
            else:
                sources[setting.name] = "default"
                values[setting.name] = setting.default
        # Spec: OTEL_SERVICE_NAME wins over service.name in OTEL_RESOURCE_ATTRIBUTES,
        # which in turn wins over the default.
        resource_name = values["resource_attributes"].get("service.name")
        if sources["service_name"] == "default" and resource_name:
            values["service_name"] = _parse(
                _BY_NAME["service_name"], resource_name, sources["resource_attributes"]
            )
            sources["service_name"] = sources["resource_attributes"]
        _check_combinations(values, sources)
        config = cls(**values)
        object.__setattr__(config, "_sources", MappingProxyType(sources))
        return config

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TelemetryConfig:
        """Rebuild from ``to_dict()`` output (or any subset); the environment is ignored."""
        if not isinstance(data, Mapping):
            raise TypeError(f"expected a mapping of settings, got {type(data).__name__}")
        bad_keys = [repr(k) for k in data if not isinstance(k, str)]
        if bad_keys:
            raise TypeError(f"setting names must be strings, got {', '.join(bad_keys)}")
        return cls.from_settings(environ={}, **data)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-compatible data (lists, dicts, scalars), secrets included.

        This is what travels through ondine's ``with_observer("otel", config_dict)``,
        which deep-copies it; use ``masked()`` for anything a human or a log will see.
        """
        return {s.name: _plain(getattr(self, s.name)) for s in SETTINGS}

    def replace(self, **changes: Any) -> TelemetryConfig:
        """A copy with ``changes`` applied and re-validated; ``None`` resets to the default."""
        _unknown(changes)
        data = self.to_dict()
        data.update(changes)
        config = TelemetryConfig.from_dict(data)
        sources = dict(self._sources)
        for name, value in changes.items():
            sources[name] = "default" if value is None else "argument"
        object.__setattr__(config, "_sources", MappingProxyType(sources))
        return config

    def __reduce__(self) -> tuple[Any, ...]:
        # Mapping proxies cannot be pickled or deep-copied; go through plain data instead.
        return (_restore, (self.to_dict(), dict(self._sources)))

    # --- effective values -----------------------------------------------------------------

    def source(self, name: str) -> Source:
        """Where setting ``name`` came from: "argument", "environment" or "default"."""
        if name not in _BY_NAME:
            _unknown([name])
        return cast(Source, self._sources.get(name, "default"))

    def observer_settings(self) -> dict[str, Any]:
        """The OtelObserver keyword arguments this config sets (run settings and label cap)."""
        return {name: getattr(self, name) for name in (*RUN_SETTINGS, "label_limit")}

    def exporters_for(self, signal: Signal) -> tuple[str, ...]:
        """Exporters in effect for ``signal``; empty means none (``disabled`` not applied)."""
        _check_signal(signal)
        chosen: tuple[str, ...] | None = getattr(self, f"{signal}_exporter")
        if chosen is not None:
            return chosen
        auto: list[str] = []
        if self.otlp_endpoint is not None or getattr(self, f"otlp_{signal}_endpoint"):
            auto.append("otlp")
        if signal == "metrics" and self.prometheus_port is not None:
            auto.append("prometheus")
        return tuple(auto)

    def otlp_for(self, signal: Signal) -> OtlpSettings:
        """OTLP settings for ``signal`` after per-signal fallback and the spec's URL rules.

        A per-signal endpoint is used as-is; the generic one gets ``v1/<signal>`` appended
        for http/protobuf and is used as-is for grpc; with neither, the spec's local default
        for the protocol applies.
        """
        _check_signal(signal)

        def pick(suffix: str) -> Any:
            specific = getattr(self, f"otlp_{signal}_{suffix}")
            return getattr(self, f"otlp_{suffix}") if specific is None else specific

        protocol: str = pick("protocol")
        specific_endpoint: str | None = getattr(self, f"otlp_{signal}_endpoint")
        if specific_endpoint is not None:
            endpoint = specific_endpoint
        elif protocol == "grpc":
            endpoint = self.otlp_endpoint or OTLP_GRPC_DEFAULT
        else:
            endpoint = _join_url(self.otlp_endpoint or OTLP_HTTP_DEFAULT, f"v1/{signal}")
        return OtlpSettings(
            endpoint=endpoint,
            protocol=protocol,
            headers=dict(pick("headers")),
            timeout_s=pick("timeout") / 1000.0,
            compression=pick("compression"),
            certificate=pick("certificate"),
        )

    @property
    def sampler_ratio(self) -> float:
        """Ratio for the traceidratio samplers (spec default 1.0 when no argument is set)."""
        return 1.0 if self.traces_sampler_arg is None else self.traces_sampler_arg

    @property
    def prometheus_address(self) -> tuple[str, int] | None:
        """(host, port) for the scrape endpoint, or None when prometheus is not exporting."""
        if "prometheus" not in self.exporters_for("metrics"):
            return None
        port = PROMETHEUS_DEFAULT_PORT if self.prometheus_port is None else self.prometheus_port
        return (self.prometheus_host, port)

    # --- display ----------------------------------------------------------------------------

    def masked(self) -> dict[str, str]:
        """Every effective setting as text, secrets and token-like strings hidden.

        For ``ondine-otel check`` and logs: per-signal OTLP entries show the values after
        fallback and URL rules, exporters and the Prometheus port show what will run.
        """
        out: dict[str, str] = {}
        for setting in SETTINGS:
            value: Any = getattr(self, setting.name)
            if setting.name in _EXPORTER_SIGNAL:
                value = self.exporters_for(_EXPORTER_SIGNAL[setting.name])
            elif setting.name == "traces_sampler_arg" and self.traces_sampler in RATIO_SAMPLERS:
                value = self.sampler_ratio
            elif setting.name == "prometheus_port" and self.prometheus_address is not None:
                value = self.prometheus_address[1]
            else:
                for signal in _SIGNALS:
                    prefix = f"otlp_{signal}_"
                    if setting.name.startswith(prefix):
                        effective = self.otlp_for(signal)
                        suffix = setting.name[len(prefix) :]
                        value = {
                            "endpoint": effective.endpoint,
                            "protocol": effective.protocol,
                            "headers": effective.headers,
                            "timeout": round(effective.timeout_s * 1000),
                            "compression": effective.compression,
                            "certificate": effective.certificate,
                        }[suffix]
            out[setting.name] = _display(setting, value)
        return out

    def __repr__(self) -> str:
        shown = []
        for setting in SETTINGS:
            value = getattr(self, setting.name)
            if value == setting.default:
                continue
            shown.append(f"{setting.name}={_display(setting, value)!r}")
        return f"TelemetryConfig({', '.join(shown)})"


def _restore(data: dict[str, Any], sources: dict[str, str]) -> TelemetryConfig:
    config = TelemetryConfig.from_dict(data)
    object.__setattr__(config, "_sources", MappingProxyType(sources))
    return config


def _check_signal(signal: str) -> None:
    if signal not in _SIGNALS:
        raise ValueError(f"signal must be 'traces' or 'metrics', got {signal!r}")


def settings_table() -> list[tuple[str, str, str, str]]:
    """(argument, environment variable, default as text, meaning) for the README table."""
    return [(s.name, s.env, s.default_text or _format(s.default), s.doc) for s in SETTINGS]


def unrecognized_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """``ONDINE_OTEL_*`` variables that match no setting: likely typos, for ``check``."""
    env = os.environ if environ is None else environ
    known = {s.env for s in SETTINGS}
    return sorted(k for k in env if k.startswith(_ENV_PREFIX) and k not in known)


def sdk_disabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether OTEL_SDK_DISABLED turns everything off, read the same way as `disabled`.

    For entries that take no settings (the zero-code instrumentor, a bare OtelObserver): an
    unparsable value is treated as not disabled rather than raising inside a running job.
    """
    env = os.environ if environ is None else environ
    raw = env.get("OTEL_SDK_DISABLED", "").strip()
    if not raw:
        return False
    try:
        return _parse_bool(raw)
    except _Invalid:
        return False
