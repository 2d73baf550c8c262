"""Errors raised by ondine-otel.

A misconfigured exporter otherwise shows up minutes later as telemetry that silently never
arrives. Raising before anything runs, with every name the user may have typed (argument and
environment variable), the offending value and what would be accepted, makes the fix obvious
from the message alone.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A telemetry setting has a value ondine-otel cannot use.

    Subclasses ValueError so callers that already treat bad values generically keep working.
    ``setting`` is the name the value arrived under (environment variable or argument),
    ``alias`` the other name of the same setting, ``value`` the offending value (already
    masked when the setting is a secret) and ``allowed`` what would have been accepted.
    """

    setting: str
    value: object
    allowed: str
    alias: str | None
    reason: str | None

    def __init__(
        self,
        setting: str,
        value: object,
        allowed: str,
        alias: str | None = None,
        reason: str | None = None,
        message: str | None = None,
    ) -> None:
        self.setting = setting
        self.value = value
        self.allowed = allowed
        self.alias = alias
        self.reason = reason
        if message is None:
            message = f"{setting}={value!r} is invalid: "
            if reason:
                message += f"{reason}; "
            message += allowed
            if alias:
                message += f" ({alias})"
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        # The default reduction replays only the message into __init__, which would fail;
        # errors must survive pickling because ondine may run stages in worker processes.
        return (
            type(self),
            (self.setting, self.value, self.allowed, self.alias, self.reason, str(self)),
        )
