"""``TelemetryConfig``: every setting parsed and validated once, immutable afterwards.

Why one object: the observer, the CLI ``check`` command and ondine's
``with_observer("otel", config_dict)`` must agree on what is configured, and a bad value must
fail before a long batch run starts rather than as telemetry that never arrives.

Precedence is keyword argument > environment variable > default (the settings table):

* An empty environment variable counts as unset (OpenTelemetry spec).
* A keyword argument of ``None`` counts as not given, so wrappers can forward optional
  parameters and still let the environment apply. An empty string argument for a setting
  whose default is unset means "explicitly unset" and beats the environment.
* Exporters default from what is configured: traces use ``otlp`` when an OTLP endpoint for
  traces (generic or per-signal) is set, else none; metrics likewise, plus ``prometheus`` when
  ``prometheus_port`` is set. ``disabled`` overrides everything.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal, cast

from ondine_otel.config.errors import ConfigError
from ondine_otel.config.masking import MASK, display, masked_raw
from ondine_otel.config.parsers import Invalid
from ondine_otel.config.settings import (
    BY_NAME,
    EMPTY,
    EXPORTER_SIGNAL,
    OTLP_GRPC_DEFAULT,
    OTLP_HTTP_DEFAULT,
    PROMETHEUS_DEFAULT_PORT,
    RATIO_SAMPLERS,
    RUN_SETTINGS,
    SECRET_SETTINGS,
    SETTINGS,
    SIGNALS,
    Setting,
    Settings,
    Signal,
    otlp_chain,
    per_signal_option,
)

__all__ = ["OtlpSettings", "Source", "TelemetryConfig", "observer_config"]

Source = Literal["argument", "environment", "default"]


def plain(value: object) -> object:
    """A parsed value as plain, JSON-compatible data (what ondine's spec can carry)."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _names(setting: Setting, source: str) -> tuple[str, str]:
    """(name the value came under, the other name) for error messages."""
    if source == "environment":
        return setting.env, f"argument {setting.name}"
    return setting.name, f"env var {setting.env}"


def _parse(setting: Setting, raw: object, source: str) -> Any:
    try:
        return setting.parse(raw)
    except Invalid as bad:
        used, alias = _names(setting, source)
        shown = bad.shown if bad.shown is not None else raw
        if setting.secret:
            shown = masked_raw(raw)
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
        setting, other = BY_NAME[present], BY_NAME[missing]
        used, alias = _names(setting, sources.get(present, "argument"))
        shown = MASK if setting.secret else values[present]
        raise ConfigError(
            used,
            shown,
            f"set {other.name} ({other.env}) as well, or neither",
            alias,
            "Pushgateway basic auth needs both a user name and a password",
        )
    if user is not None and values["pushgateway_url"] is None:
        setting, url = BY_NAME["pushgateway_username"], BY_NAME["pushgateway_url"]
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
        if name not in BY_NAME:
            close = difflib.get_close_matches(name, list(BY_NAME), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            valid = ", ".join(BY_NAME)
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

    def option(self, name: str) -> Any:
        """The value of OTLP option ``name`` in the settings' own units (timeout in ms)."""
        if name == "timeout":
            return round(self.timeout_s * 1000)
        return getattr(self, name)


@dataclass(frozen=True, repr=False)
class TelemetryConfig(Settings):
    """Every ondine-otel setting, validated at construction and immutable afterwards.

    Build it with ``from_settings()`` (arguments > environment > defaults) or
    ``from_dict()``; fields hold the configured values (``None`` = unset, falls back), and
    ``otlp_for()``, ``exporters_for()``, ``sampler_ratio`` and ``prometheus_address`` give
    the effective ones. The fields are the settings table's (``Settings``), inherited.
    """

    # Where each value came from, for `ondine-otel check`; not a field, so not compared.
    _sources: ClassVar[Mapping[str, str]] = EMPTY

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
                BY_NAME["service_name"], resource_name, sources["resource_attributes"]
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

    def to_dict(self, *, include_secrets: bool = False) -> dict[str, Any]:
        """Plain, JSON-compatible data (lists, dicts, scalars); secrets only when asked.

        Without secrets it is safe for ondine's ``with_observer("otel", config_dict)``, which
        stores the dict in the pipeline's specification and sends it to every observer; use
        ``masked()`` for anything a human or a log will see.
        """
        return {
            s.name: plain(getattr(self, s.name))
            for s in SETTINGS
            if include_secrets or not s.secret
        }

    def replace(self, **changes: Any) -> TelemetryConfig:
        """A copy with ``changes`` applied and re-validated; ``None`` resets to the default."""
        _unknown(changes)
        data = self.to_dict(include_secrets=True)
        data.update(changes)
        config = TelemetryConfig.from_dict(data)
        sources = dict(self._sources)
        for name, value in changes.items():
            sources[name] = "default" if value is None else "argument"
        object.__setattr__(config, "_sources", MappingProxyType(sources))
        return config

    def __reduce__(self) -> tuple[Any, ...]:
        # Mapping proxies cannot be pickled or deep-copied; go through plain data instead.
        return (_restore, (self.to_dict(include_secrets=True), dict(self._sources)))

    # --- effective values -----------------------------------------------------------------

    def source(self, name: str) -> Source:
        """Where setting ``name`` came from: "argument", "environment" or "default"."""
        if name not in BY_NAME:
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

        def pick(option: str) -> Any:
            return getattr(self, self.otlp_setting(signal, option).name)

        protocol: str = pick("protocol")
        specific_endpoint: str | None = getattr(self, otlp_chain(signal, "endpoint")[0].name)
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

    def otlp_setting(self, signal: Signal, option: str) -> Setting:
        """The setting whose value ``option`` takes for ``signal`` (``otlp_chain``'s rule).

        ``ondine-otel check`` names its variable in advice, so the advice points at the
        variable that is actually in effect.
        """
        _check_signal(signal)
        specific, generic = otlp_chain(signal, option)
        return specific if getattr(self, specific.name) is not None else generic

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
            if setting.name in EXPORTER_SIGNAL:
                value = self.exporters_for(EXPORTER_SIGNAL[setting.name])
            elif setting.name == "traces_sampler_arg" and self.traces_sampler in RATIO_SAMPLERS:
                value = self.sampler_ratio
            elif setting.name == "prometheus_port" and self.prometheus_address is not None:
                value = self.prometheus_address[1]
            elif (per_signal := per_signal_option(setting.name)) is not None:
                signal, option = per_signal
                value = self.otlp_for(signal).option(option)
            out[setting.name] = display(setting, value)
        return out

    def __repr__(self) -> str:
        shown = []
        for setting in SETTINGS:
            value = getattr(self, setting.name)
            if value == setting.default:
                continue
            shown.append(f"{setting.name}={display(setting, value)!r}")
        return f"TelemetryConfig({', '.join(shown)})"


def _restore(data: dict[str, Any], sources: dict[str, str]) -> TelemetryConfig:
    config = TelemetryConfig.from_dict(data)
    object.__setattr__(config, "_sources", MappingProxyType(sources))
    return config


def _check_signal(signal: str) -> None:
    if signal not in SIGNALS:
        raise ValueError(f"signal must be 'traces' or 'metrics', got {signal!r}")


def observer_config(settings: Mapping[str, Any] | None) -> TelemetryConfig:
    """Validate a ``with_observer("otel", settings)`` dict, refusing every secret setting.

    ondine copies that dict into ``pipeline.specifications.metadata["observers"]`` and sends it
    in its ``pipeline_start`` event to every observer (its Langfuse observer forwards it), so a
    header or password there would leak. Secrets belong in the environment (or
    ``instrument()``); the error names the variable to use instead.
    """
    data = dict(settings or {})
    bad_keys = [repr(k) for k in data if not isinstance(k, str)]
    if bad_keys:
        raise TypeError(f"setting names must be strings, got {', '.join(bad_keys)}")
    _unknown(data)
    for name in data:
        if name in SECRET_SETTINGS:
            setting = BY_NAME[name]
            raise ConfigError(
                name,
                masked_raw(data[name]),
                f"set the environment variable {setting.env} instead (or pass {name} to "
                "ondine_otel.instrument())",
                message=f"{name} is a secret and must not be given to with_observer('otel', "
                "...): ondine stores that dict in the pipeline specification and sends it to "
                f"every observer; set the environment variable {setting.env} instead (or pass "
                f"{name} to ondine_otel.instrument())",
            )
    return TelemetryConfig.from_settings(**data)
