"""Value parsers for the settings table: text from the environment or a Python value in.

Each parser accepts the environment's text and the natural Python type of a keyword argument,
and is idempotent on its own output so that direct construction re-validates. A bad value raises
``Invalid`` (what is expected, why not), which the model turns into a ``ConfigError`` naming the
setting: parsers do not know under which name a value arrived.

Where the OpenTelemetry SDK has a parser with the same meaning it is used (OTLP headers:
``opentelemetry.util.re.parse_env_headers``); unlike the SDK, which logs a warning and skips a
malformed entry, these reject it, because a silently dropped header shows up only as telemetry
that never arrives.
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote, urlsplit

from opentelemetry.util.re import parse_env_headers

Parser = Callable[[Any], Any]


class Invalid(Exception):
    """Raised by parsers; turned into ConfigError by the caller, which knows the names."""

    def __init__(self, expected: str, reason: str | None = None, shown: object = None) -> None:
        super().__init__(expected)
        self.expected = expected
        self.reason = reason
        self.shown = shown  # replaces the raw value in the message when it must not be echoed


# --- parsers ------------------------------------------------------------------------------
# Each parser accepts the environment's text and the natural Python type of a keyword
# argument, and is idempotent on its own output so that direct construction re-validates.


def as_text(raw: object, expected: str) -> str:
    if not isinstance(raw, str):
        raise Invalid(expected, f"got {type(raw).__name__}, not text")
    return raw.strip()


def has_control(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def parse_bool(raw: object) -> bool:
    expected = "expected true or false (1/0 and yes/no also accepted)"
    if isinstance(raw, bool):
        return raw
    text = as_text(raw, expected).lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise Invalid(expected)


def label(limit: int | None) -> Parser:
    size = f"1..{limit} characters" if limit else "a non-empty name"
    expected = f"expected {size} without control characters"

    def parse(raw: object) -> str:
        text = as_text(raw, expected)
        if not text:
            raise Invalid(expected, "it is blank")
        if limit is not None and len(text) > limit:
            raise Invalid(expected, f"it has {len(text)} characters")
        if has_control(text):
            raise Invalid(expected, "it contains control characters")
        return text

    return parse


def choice(options: tuple[str, ...], rejected: Mapping[str, str] | None = None) -> Parser:
    expected = "expected " + or_list(options)

    def parse(raw: object) -> str:
        text = as_text(raw, expected).lower()
        if rejected and text in rejected:
            raise Invalid(expected, rejected[text])
        if text not in options:
            raise Invalid(expected)
        return text

    return parse


def or_list(options: Iterable[str]) -> str:
    items = list(options)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def integer(low: int, high: int | None, expected: str) -> Parser:
    def parse(raw: object) -> int:
        if isinstance(raw, bool):
            raise Invalid(expected, "got a bool")
        if isinstance(raw, int):
            value = raw
        else:
            text = as_text(raw, expected)
            if not re.fullmatch(r"\+?[0-9]+", text):
                raise Invalid(expected)
            value = int(text)
        if value < low or (high is not None and value > high):
            raise Invalid(expected)
        return value

    return parse


def number(low: float, low_inclusive: bool, high: float | None, expected: str) -> Parser:
    def parse(raw: object) -> float:
        if isinstance(raw, bool):
            raise Invalid(expected, "got a bool")
        if isinstance(raw, (int, float)):
            value = float(raw)
        else:
            try:
                value = float(as_text(raw, expected))
            except ValueError:
                raise Invalid(expected) from None
        too_low = value < low or (value == low and not low_inclusive)
        if not math.isfinite(value) or too_low or (high is not None and value > high):
            raise Invalid(expected)
        return value

    return parse


_URL_EXPECTED = "expected an http:// or https:// URL like http://host:4318[/path]"
_HOST_RE = re.compile(r"[\w.-]+")


def parse_url(raw: object) -> str:
    text = as_text(raw, _URL_EXPECTED)
    if not text or any(ch.isspace() for ch in text) or has_control(text):
        raise Invalid(_URL_EXPECTED, "it is empty or contains whitespace")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise Invalid(_URL_EXPECTED, "the host or port is malformed") from None
    if "@" in parts.netloc:
        # Never echo embedded credentials back into logs.
        shown = text.replace(parts.netloc, "***@" + parts.netloc.rpartition("@")[2], 1)
        raise Invalid(_URL_EXPECTED, "credentials in the URL are not accepted", shown=shown)
    if parts.scheme.lower() not in ("http", "https"):
        reason = "the scheme is missing" if "://" not in text else "the scheme is not http(s)"
        raise Invalid(_URL_EXPECTED, reason)
    host = parts.hostname or ""
    if not host or not (parts.netloc.startswith("[") or _HOST_RE.fullmatch(host)):
        raise Invalid(_URL_EXPECTED, "the host is missing or malformed")
    if port == 0:
        raise Invalid(_URL_EXPECTED, "port 0 is not a port to connect to")
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise Invalid(_URL_EXPECTED, "query strings and fragments are not accepted")
    return text


_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 header field name


def _pairs(raw: object, expected: str, decode: bool = True) -> list[tuple[str, str]]:
    """Split ``k=v,k2=v2`` (values percent-decoded) or take a mapping's items literally.

    The split and decoding are those of the SDK's ``OTEL_RESOURCE_ATTRIBUTES`` detector (split
    on ``,``, then on the first ``=``, strip, percent-decode the value); an entry without ``=``
    is rejected rather than skipped.
    """
    if isinstance(raw, Mapping):
        items = []
        for key, value in raw.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise Invalid(expected, "keys and values must be strings")
            items.append((key.strip(), value.strip()))
        return items
    text = as_text(raw, expected)
    items = []
    for number, entry in enumerate(text.split(","), 1):
        if not entry.strip():
            continue  # tolerate trailing or doubled commas
        key, sep, value = entry.partition("=")
        if not sep:
            hint = " (write key=value, not key: value)" if ":" in entry else ""
            raise Invalid(expected, f"entry {number} has no '='{hint}")
        value = value.strip()
        items.append((key.strip(), unquote(value) if decode else value))
    return items


def parse_resource(raw: object) -> Mapping[str, str]:
    expected = "expected comma-separated key=value pairs with percent-encoded values"
    result: dict[str, str] = {}
    for key, value in _pairs(raw, expected):
        if not key or any(ch.isspace() or ch in ",=" for ch in key) or has_control(key):
            raise Invalid(expected, f"key {key!r} is empty or malformed")
        result[key] = value
    return MappingProxyType(result)


# The spec's header value characters (the SDK's liberal set: printable ASCII and space, minus
# the delimiters ``"``, ``,``, ``;`` and ``\\``); anything else must be percent-encoded.
_HEADER_VALUE_RE = re.compile(r"[\x20\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")


def parse_headers(raw: object) -> Mapping[str, str]:
    """OTLP headers: ``k=v`` text decoded by the SDK's own parser, a mapping taken literally.

    Entries are checked first so that a malformed one is rejected here, where the SDK would
    log a warning and drop it (and the collector would then refuse every export).
    """
    expected = "expected comma-separated key=value pairs with percent-encoded values"
    if isinstance(raw, Mapping):
        pairs = _pairs(raw, expected)
    else:
        pairs = []
        for key, value in _pairs(raw, expected, decode=False):
            if not _TOKEN_RE.fullmatch(key):
                raise Invalid(expected, f"{key!r} is not a valid header name")
            if not _HEADER_VALUE_RE.fullmatch(value):
                raise Invalid(
                    expected, f"the value of {key!r} has characters that must be percent-encoded"
                )
            pairs.extend(parse_env_headers(f"{key}={value}", liberal=True).items())
    result: dict[str, str] = {}
    for key, value in pairs:
        if not _TOKEN_RE.fullmatch(key):
            raise Invalid(expected, f"{key!r} is not a valid header name")
        if any(ch in value for ch in "\r\n\0"):
            raise Invalid(expected, f"the value of {key!r} contains a line break")
        # gRPC metadata keys must be lowercase and HTTP names are case-insensitive.
        result[key.lower()] = value
    return MappingProxyType(result)


def exporters(signal: str, options: tuple[str, ...]) -> Parser:
    expected = f"expected a comma-separated list of {or_list(options)}"

    def parse(raw: object) -> tuple[str, ...]:
        if isinstance(raw, str):
            names = raw.split(",")
        elif isinstance(raw, (list, tuple)) and all(isinstance(n, str) for n in raw):
            if not raw:
                return ()
            names = list(raw)
        else:
            raise Invalid(expected, f"got {type(raw).__name__}")
        names = [n.strip().lower() for n in names if n.strip()]
        if not names:
            raise Invalid(expected, "no exporter named")
        for name in names:
            if name == "prometheus" and signal == "traces":
                raise Invalid(expected, "prometheus exports metrics only")
            if name not in options:
                raise Invalid(expected, f"unknown exporter {name!r}")
        if "none" in names:
            if len(set(names)) > 1:
                raise Invalid(expected, "'none' cannot be combined with other exporters")
            return ()
        return tuple(dict.fromkeys(names))

    return parse


def parse_file(raw: object) -> str:
    expected = "expected the path of an existing, readable file"
    if isinstance(raw, os.PathLike):
        raw = os.fspath(raw)
    path = as_text(raw, expected)
    if not os.path.isfile(path):
        reason = "it is not a regular file" if os.path.exists(path) else "no such file"
        raise Invalid(expected, reason)
    if not os.access(path, os.R_OK):
        raise Invalid(expected, "it is not readable")
    return path


def parse_host(raw: object) -> str:
    expected = "expected a host name or address to listen on, like localhost or 0.0.0.0"
    text = as_text(raw, expected)
    if not text or any(ch.isspace() or ch == "/" for ch in text) or has_control(text):
        raise Invalid(expected, "give a host, not a URL" if "/" in text else None)
    return text


def parse_username(raw: object) -> str:
    expected = "expected a non-empty user name without ':'"
    text = as_text(raw, expected)
    if not text or ":" in text or has_control(text):
        raise Invalid(expected)
    return text


def parse_password(raw: object) -> str:
    expected = "expected a non-empty password"
    if not isinstance(raw, str) or not raw:
        raise Invalid(expected)
    return raw  # not stripped: whitespace may be part of a password


_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def grouping(reserved: tuple[str, ...]) -> Parser:
    """Extra Pushgateway grouping labels, ``k=v,...``: Prometheus label names, values set."""
    expected = (
        "expected comma-separated label=value pairs (label names like shard or worker, "
        f"not {or_list(reserved)})"
    )

    def parse(raw: object) -> Mapping[str, str]:
        result: dict[str, str] = {}
        for key, value in _pairs(raw, expected):
            if not _LABEL_NAME_RE.fullmatch(key) or key.startswith("__"):
                raise Invalid(expected, f"{key!r} is not a Prometheus label name")
            if key in reserved:
                raise Invalid(expected, f"{key!r} is set by ondine-otel itself")
            if not value or has_control(value):
                raise Invalid(expected, f"the value of {key!r} is empty or has control characters")
            result[key] = value
        return MappingProxyType(result)

    return parse
