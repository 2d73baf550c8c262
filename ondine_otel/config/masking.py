"""How settings are shown: values rendered as text, secrets masked, token-like text redacted.

For ``ondine-otel check``, ``repr``, error messages and the README table: a configuration is
printed and logged far more often than it is read, so nothing that looks like a credential may
come out of here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ondine_otel.config.settings import SETTINGS, Setting

MASK = "***"
UNSET_TEXT = "unset"

_SECRET_KEY_RE = re.compile(
    r"pass|secret|token|auth|api[-_.]?key|credential|cookie|session|signature|private",
    re.IGNORECASE,
)
_TOKENISH_RE = re.compile(
    r"(?P<scheme>(?i:bearer|basic)\s+\S+)"
    r"|(?P<prefixed>(?:sk|pk|rk|ghp|gho|ghu|ghs|glpat|github_pat|xox[abprs])[-_][\w-]{8,})"
    r"|(?P<aws>\bAKIA[0-9A-Z]{16}\b)"
    r"|(?P<long>[\w+=-]{24,})"
)


def redact(text: str, marker: str = MASK) -> str:
    """Hide substrings that look like credentials (bearer tokens, API keys, long random ids).

    The one key-like-token rule of the package: settings shown by `check` and `repr` and the
    prompts and completions a span may capture (telemetry/redaction.py) both use it.
    """

    def hide(match: re.Match[str]) -> str:
        found = match.group(0)
        if match.group("long") and not (
            any(ch.isdigit() for ch in found) and any(ch.isalpha() for ch in found)
        ):
            return found  # long plain words and numbers are not tokens
        return marker

    return _TOKENISH_RE.sub(hide, text)


def format_value(value: object) -> str:
    """Render a parsed value as the text used in the docs table and in ``masked()``."""
    if value is None:
        return UNSET_TEXT
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
    return ",".join(f"{k}={MASK}" for k in value) if value else "empty"


def display(setting: Setting, value: object) -> str:
    """A value as text safe to show: secrets masked, token-like strings redacted."""
    if setting.secret:
        if isinstance(value, Mapping):
            return _mask_pairs(value)
        return UNSET_TEXT if value is None else MASK
    if isinstance(value, Mapping):
        return format_value(
            {k: MASK if _SECRET_KEY_RE.search(k) else redact(v) for k, v in value.items()}
        )
    # URLs are where tokens hide in practice (ingest paths); names and file paths are left
    # intact because redacting them would make `check` output misleading.
    if setting.name.endswith(("_endpoint", "_url")):
        return redact(format_value(value))
    return format_value(value)


def masked_raw(raw: object) -> object:
    """A secret's raw value as it may appear in an error: structure kept, values hidden."""
    if isinstance(raw, Mapping):
        return {k: MASK for k in raw}
    if isinstance(raw, str) and "=" in raw:
        return ",".join(
            (e.partition("=")[0] + "=" + MASK) if "=" in e else MASK for e in raw.split(",")
        )
    return MASK


def settings_table() -> list[tuple[str, str, str, str]]:
    """(argument, environment variable, default as text, meaning) for the README table."""
    return [(s.name, s.env, s.default_text or format_value(s.default), s.doc) for s in SETTINGS]
