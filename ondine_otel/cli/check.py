"""``ondine-otel check``: show the effective configuration and test every export target.

Telemetry that is misconfigured fails silently: spans never reach the collector, a port is
already taken, a Pushgateway is down, and the batch job itself runs fine. This command finds
that out before the long run starts, and says for each problem what to change.

Each ``check_*`` function tests one target and returns a list of ``Problem`` (empty when all
is well); ``planned_checks`` decides which targets the configuration actually uses, and
``run_check`` prints the report. The network checks speak the real protocol (an empty OTLP
export, a Pushgateway readiness probe) because "the port is open" does not prove that the
server there accepts our data. ``--zero-code`` checks the environment a zero-code run has
(opentelemetry-distro's defaults applied), and the advice names the limit and the variable
that really apply (the fallback rule is ``TelemetryConfig.otlp_setting``).
"""

from __future__ import annotations

import argparse
import base64
import difflib
import errno
import functools
import gzip
import http.client
import importlib.metadata
import os
import socket
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import IO, Any
from urllib.parse import urlsplit

from ondine_otel.config import (
    BY_NAME,
    SETTINGS,
    ConfigError,
    Signal,
    TelemetryConfig,
    per_signal_option,
    unrecognized_environment,
)
from ondine_otel.version import __version__

__all__ = [
    "DEFAULT_TIMEOUT",
    "DISTRO_DEFAULTS",
    "Check",
    "Problem",
    "add_check_parser",
    "check_otlp",
    "check_prometheus_port",
    "check_pushgateway",
    "environment_warnings",
    "planned_checks",
    "run_check",
    "zero_code_environment",
]

DEFAULT_TIMEOUT = 3.0
#: What opentelemetry-distro sets where the environment sets nothing, before a zero-code run
#: (`opentelemetry-instrument`) configures the SDK: so that run's exports use grpc by default,
#: where `instrument()` uses http/protobuf.
DISTRO_DEFAULTS: Mapping[str, str] = MappingProxyType(
    {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    }
)
_DISTRO = "opentelemetry-distro"
_USER_AGENT = f"ondine-otel-check/{__version__}"


@dataclass(frozen=True)
class Problem:
    """Something that would make telemetry go missing, and the change that fixes it."""

    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.what}: {self.fix}"


@dataclass(frozen=True)
class Check:
    """One target the configuration uses; ``run`` tests it, ``ok`` is shown on success."""

    target: str
    ok: str
    run: Callable[[], list[Problem]]


# --- OTLP ----------------------------------------------------------------------------------


def _env(name: str) -> str:
    """The environment variable of setting ``name`` (the settings table's)."""
    return BY_NAME[name].env


def _otlp_env(config: TelemetryConfig, signal: Signal, option: str) -> str:
    """The variable that decides ``option`` for ``signal``, by the config's fallback rule."""
    return config.otlp_setting(signal, option).env


def _otlp_timeout(config: TelemetryConfig, signal: Signal, timeout: float) -> float:
    """The check's timeout, or the exporter's if shorter: slower than that fails for real."""
    configured = config.otlp_for(signal).timeout_s
    return min(timeout, configured) if configured > 0 else timeout


def check_otlp(config: TelemetryConfig, signal: Signal, timeout: float) -> list[Problem]:
    """Send an empty OTLP export for ``signal`` the way the exporter would; expect success."""
    settings = config.otlp_for(signal)
    label = f"OTLP {signal} endpoint {config.masked()[f'otlp_{signal}_endpoint']}"
    seconds = _otlp_timeout(config, signal, timeout)
    if settings.protocol == "grpc":
        return _check_otlp_grpc(config, signal, label, seconds)
    return _check_otlp_http(config, signal, label, seconds)


def _ssl_context(certificate: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certificate)


def _empty_request(signal: Signal) -> Any:
    # Imported here: only the OTLP checks need the generated protobuf modules.
    if signal == "traces":
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        return ExportTraceServiceRequest()
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    return ExportMetricsServiceRequest()


def _check_otlp_http(
    config: TelemetryConfig, signal: Signal, label: str, timeout: float
) -> list[Problem]:
    settings = config.otlp_for(signal)
    body: bytes = _empty_request(signal).SerializeToString()
    headers = {
        **settings.headers,
        "Content-Type": "application/x-protobuf",
        "User-Agent": _USER_AGENT,
    }
    if settings.compression == "gzip":
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    request = urllib.request.Request(settings.endpoint, data=body, headers=headers, method="POST")
    https = settings.endpoint.lower().startswith("https://")
    try:
        context = _ssl_context(settings.certificate) if https else None  # may reject the CA
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            response.read()
    except urllib.error.HTTPError as error:
        error.close()
        return [_http_status_problem(config, signal, label, error.code, error.reason)]
    except urllib.error.URLError as error:
        return [_connection_problem(config, signal, label, error.reason, timeout)]
    except (OSError, http.client.HTTPException) as error:
        return [_connection_problem(config, signal, label, error, timeout)]
    return []


def _http_status_problem(
    config: TelemetryConfig, signal: Signal, label: str, status: int, reason: object
) -> Problem:
    endpoint_env = _otlp_env(config, signal, "endpoint")
    what = f"{label} answered HTTP {status} {reason}".rstrip()
    if status in (404, 405):
        if config.otlp_setting(signal, "endpoint").name != "otlp_endpoint":
            fix = (
                f"{endpoint_env} is used as-is, so it must include the path (usually /v1/{signal})"
            )
        elif not urlsplit(config.otlp_endpoint or "").path.strip("/"):
            fix = _signal_not_served(config, signal)
        else:
            fix = (
                f"set {endpoint_env} to the collector's base URL without a path; "
                f"ondine-otel appends /v1/{signal}"
            )
    elif status in (401, 403):
        fix = f"check the credentials in {_otlp_env(config, signal, 'headers')}"
    elif status in (400, 415):
        fix = (
            f"it does not take OTLP/HTTP protobuf: point {endpoint_env} at an OTLP receiver, "
            f"or set {_otlp_env(config, signal, 'protocol')}=grpc if it speaks gRPC"
        )
    elif status == 429 or status >= 500:
        fix = "the collector is up but not accepting data: check its logs and health"
    else:
        fix = f"check that {endpoint_env} points at an OTLP/HTTP receiver"
    return Problem(what, fix)


def _signal_not_served(config: TelemetryConfig, signal: Signal) -> str:
    """Advice when a base URL takes one signal but not ``signal`` (a traces-only backend)."""
    other: Signal = "traces" if signal == "metrics" else "metrics"
    base = (config.otlp_endpoint or "").rstrip("/")
    exporter_env = _env(f"{signal}_exporter")
    instead = "none or prometheus" if signal == "metrics" else "none"
    return (
        f"the server takes no OTLP {signal} (a {other}-only backend answers so): replace "
        f"{_env('otlp_endpoint')} by {_env(f'otlp_{other}_endpoint')}={base}/v1/{other}, or set "
        f"{exporter_env} to {instead}, or {_env(f'otlp_{signal}_endpoint')} to a receiver that "
        f"takes {signal}"
    )


def _connection_problem(
    config: TelemetryConfig, signal: Signal, label: str, reason: object, timeout: float
) -> Problem:
    """Classify a failure to get any HTTP answer (refused, DNS, timeout, TLS, not HTTP)."""
    endpoint_env = _otlp_env(config, signal, "endpoint")
    if isinstance(reason, ConnectionRefusedError):
        return _refused(label, endpoint_env, "the collector")
    if isinstance(reason, socket.gaierror):
        return _unknown_host(label, endpoint_env)
    if isinstance(reason, TimeoutError):
        return _too_slow(config, signal, label, timeout)
    if isinstance(reason, ssl.SSLError):
        return Problem(
            f"{label}: TLS failed ({reason})",
            f"set {_otlp_env(config, signal, 'certificate')} to the CA file that signed the "
            "collector's certificate, or use http:// if it does not speak TLS",
        )
    if isinstance(reason, (ConnectionResetError, http.client.HTTPException)):
        return Problem(
            f"{label} closed the connection without an HTTP answer",
            f"if it is an OTLP/gRPC port (usually 4317) set "
            f"{_otlp_env(config, signal, 'protocol')}=grpc, else point {endpoint_env} at the "
            "OTLP/HTTP port (usually 4318)",
        )
    return Problem(
        f"{label} could not be reached ({reason})",
        f"check the address in {endpoint_env} and that the collector runs",
    )


def _refused(label: str, endpoint_env: str, server: str) -> Problem:
    return Problem(
        f"{label} refused the connection",
        f"start {server} or set {endpoint_env} to where it listens",
    )


def _unknown_host(label: str, endpoint_env: str) -> Problem:
    return Problem(f"{label}: host name not found", f"correct the host in {endpoint_env}")


def _too_slow(config: TelemetryConfig, signal: Signal, label: str, waited: float) -> Problem:
    """No answer in time; the advice names whichever limit applied, the check's or the job's.

    The check waits at most ``--timeout``; the job's exporter waits the configured OTLP
    timeout, which may be longer: raising that variable only helps when it was the limit.
    """
    endpoint_env = _otlp_env(config, signal, "endpoint")
    timeout_env = _otlp_env(config, signal, "timeout")
    job_limit = config.otlp_for(signal).timeout_s
    where = f"check the address in {endpoint_env} and any firewall on the way"
    if 0 < job_limit <= waited:
        return Problem(
            f"{label} did not answer within {waited:g} s, the job's export timeout",
            f"{where}, or raise {timeout_env} (now {round(job_limit * 1000)} ms) if the "
            "server is just slow",
        )
    return Problem(
        f"{label} did not answer within {waited:g} s (this check's --timeout)",
        f"{where}; the job waits up to {job_limit:g} s per export ({timeout_env}), so if the "
        f"server is just slow, run the check again with --timeout {job_limit:g}",
    )


def _check_otlp_grpc(
    config: TelemetryConfig, signal: Signal, label: str, timeout: float
) -> list[Problem]:
    # Imported here: grpc is heavy and only needed for this one check.
    import grpc
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    settings = config.otlp_for(signal)
    parts = urlsplit(settings.endpoint)
    target = parts.netloc  # the exporter dials host:port and ignores any path
    compression = grpc.Compression.Gzip if settings.compression == "gzip" else None
    if parts.scheme.lower() == "https":
        roots = None
        if settings.certificate is not None:
            with open(settings.certificate, "rb") as handle:
                roots = handle.read()
        credentials = grpc.ssl_channel_credentials(root_certificates=roots)
        channel = grpc.secure_channel(target, credentials, compression=compression)
    else:
        channel = grpc.insecure_channel(target, compression=compression)
    metadata = [(key, value) for key, value in settings.headers.items()]
    with channel:
        stub: Any = (
            trace_service_pb2_grpc.TraceServiceStub(channel)
            if signal == "traces"
            else metrics_service_pb2_grpc.MetricsServiceStub(channel)
        )
        try:
            stub.Export(_empty_request(signal), timeout=timeout, metadata=metadata)
        except grpc.RpcError as error:
            code = error.code() if hasattr(error, "code") else None
            details = error.details() if hasattr(error, "details") else str(error)
            return [_grpc_problem(config, signal, label, code, str(details or ""), timeout)]
    return []


def _grpc_problem(
    config: TelemetryConfig,
    signal: Signal,
    label: str,
    code: Any,
    details: str,
    timeout: float,
) -> Problem:
    import grpc

    endpoint_env = _otlp_env(config, signal, "endpoint")
    protocol_env = _otlp_env(config, signal, "protocol")
    lowered = details.lower()
    if code == grpc.StatusCode.UNAVAILABLE and "refused" in lowered:
        return _refused(label, endpoint_env, "the collector")
    if code == grpc.StatusCode.UNAVAILABLE and ("resolv" in lowered or "dns" in lowered):
        return _unknown_host(label, endpoint_env)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return _too_slow(config, signal, label, timeout)
    if code == grpc.StatusCode.UNAVAILABLE and ("http/2" in lowered or "http1" in lowered):
        return Problem(
            f"{label} does not speak gRPC",
            f"if it is an OTLP/HTTP port (usually 4318) set {protocol_env}=http/protobuf, else "
            f"point {endpoint_env} at the OTLP/gRPC port (usually 4317)",
        )
    name = getattr(code, "name", str(code))
    what = f"{label} failed the gRPC export with {name}" + (f" ({details})" if details else "")
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        fix = f"check the credentials in {_otlp_env(config, signal, 'headers')}"
    elif code == grpc.StatusCode.UNIMPLEMENTED:
        fix = (
            f"point {endpoint_env} at an OTLP/gRPC receiver, or set "
            f"{protocol_env}=http/protobuf if it speaks OTLP/HTTP"
        )
    elif code == grpc.StatusCode.UNAVAILABLE and "failed to connect" in lowered:
        fix = (
            f"check that {endpoint_env} is the collector's OTLP/gRPC address (usually port "
            "4317) and that it runs; use https:// only if it speaks TLS"
        )
    else:
        fix = "the collector is up but not accepting data: check its logs and health"
    return Problem(what, fix)


# --- Prometheus pull endpoint ----------------------------------------------------------


def check_prometheus_port(config: TelemetryConfig) -> list[Problem]:
    """Bind the scrape address the way prometheus_client will; port 0 is always fine."""
    address = config.prometheus_address
    if address is None or address[1] == 0:
        return []
    host, port = address
    label = f"Prometheus port {host}:{port}"
    port_env, host_env = _env("prometheus_port"), _env("prometheus_host")
    try:
        # prometheus_client binds the first address getaddrinfo returns; so do we.
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, sockaddr = infos[0]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            # http.server sets SO_REUSEADDR too, so a port in TIME_WAIT is not "busy".
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
    except socket.gaierror:
        return [
            Problem(
                f"{label}: host {host!r} is not known here",
                f"set {host_env} to localhost, 0.0.0.0 or an address of this machine",
            )
        ]
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            return [
                Problem(
                    f"{label} is already in use",
                    f"stop what listens there or set {port_env} to a free port "
                    "(0 lets the OS choose)",
                )
            ]
        if error.errno == errno.EACCES:
            return [
                Problem(
                    f"{label} needs privileges to bind",
                    f"set {port_env} to a port above 1023",
                )
            ]
        if error.errno == errno.EADDRNOTAVAIL:
            return [
                Problem(
                    f"{label}: {host} is not an address of this machine",
                    f"set {host_env} to localhost, 0.0.0.0 or one of this machine's addresses",
                )
            ]
        return [Problem(f"{label} cannot be bound ({error})", f"check {host_env} and {port_env}")]
    return []


# --- Pushgateway ---------------------------------------------------------------------------

_READY_PATHS = ("/-/ready", "/api/v1/status")  # the second for gateways behind older proxies


def check_pushgateway(config: TelemetryConfig, timeout: float) -> list[Problem]:
    """Ask the Pushgateway whether it is ready, with the configured basic auth."""
    url = config.pushgateway_url
    if url is None:
        return []
    label = f"Pushgateway {config.masked()['pushgateway_url']}"
    url_env = _env("pushgateway_url")
    headers = {"User-Agent": _USER_AGENT}
    if config.pushgateway_username is not None and config.pushgateway_password is not None:
        pair = f"{config.pushgateway_username}:{config.pushgateway_password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    https = url.lower().startswith("https://")
    context = _ssl_context(None) if https else None

    def probe(path: str, last: bool) -> list[Problem] | None:
        """The problems at `path`; None: a 404 there, so the next path is worth a try."""
        request = urllib.request.Request(url.rstrip("/") + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
                response.read()
            return []
        except urllib.error.HTTPError as error:
            error.close()
            if error.code == 404 and not last:
                return None
            return [_pushgateway_status_problem(config, label, error.code, error.reason)]
        except urllib.error.URLError as error:
            return [_pushgateway_connection_problem(label, url_env, error.reason, timeout)]
        except (OSError, http.client.HTTPException) as error:
            return [_pushgateway_connection_problem(label, url_env, error, timeout)]

    for path in _READY_PATHS[:-1]:
        found = probe(path, last=False)
        if found is not None:
            return found
    return probe(_READY_PATHS[-1], last=True) or []


def _pushgateway_status_problem(
    config: TelemetryConfig, label: str, status: int, reason: object
) -> Problem:
    what = f"{label} answered HTTP {status} {reason}".rstrip()
    user_env, password_env = _env("pushgateway_username"), _env("pushgateway_password")
    if status in (401, 403):
        verb = "check" if config.pushgateway_username is not None else "set"
        return Problem(what, f"{verb} {user_env} and {password_env}")
    if status == 404:
        return Problem(what, f"set {_env('pushgateway_url')} to the Pushgateway's base URL")
    return Problem(what, "the Pushgateway is up but not ready: check its logs")


def _pushgateway_connection_problem(
    label: str, url_env: str, reason: object, timeout: float
) -> Problem:
    if isinstance(reason, ConnectionRefusedError):
        return _refused(label, url_env, "the Pushgateway")
    if isinstance(reason, socket.gaierror):
        return _unknown_host(label, url_env)
    if isinstance(reason, TimeoutError):
        return Problem(
            f"{label} did not answer within {timeout:g} s",
            f"check the address in {url_env} and any firewall on the way",
        )
    return Problem(
        f"{label} could not be reached ({reason})",
        f"check the address in {url_env} and that the Pushgateway runs",
    )


# --- environment ---------------------------------------------------------------------------


def environment_warnings(environ: Mapping[str, str]) -> list[str]:
    """ONDINE_OTEL_* variables no setting reads: typos that would otherwise go unnoticed."""
    known = [s.env for s in SETTINGS]
    warnings = []
    for name in unrecognized_environment(environ):
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]}?" if close else "it is ignored"
        warnings.append(f"{name} is set but is not an ondine-otel setting: {hint}")
    return warnings


def planned_checks(config: TelemetryConfig, timeout: float) -> list[Check]:
    """The targets this configuration will actually use (none when telemetry is disabled)."""
    if config.disabled:
        return []
    checks: list[Check] = []
    for signal in _SIGNALS:
        if "otlp" in config.exporters_for(signal):
            settings = config.otlp_for(signal)
            checks.append(
                Check(
                    f"OTLP {signal} endpoint {config.masked()[f'otlp_{signal}_endpoint']}",
                    f"accepts an empty {settings.protocol} export (the job's exports time out "
                    f"after {settings.timeout_s:g} s, {_otlp_env(config, signal, 'timeout')})",
                    functools.partial(check_otlp, config, signal, timeout),
                )
            )
    address = config.prometheus_address
    if address is not None:
        port = "a port the OS picks" if address[1] == 0 else f"port {address[1]}"
        checks.append(
            Check(
                f"Prometheus scrape endpoint {address[0]}, {port}",
                "can be bound",
                lambda: check_prometheus_port(config),
            )
        )
    if config.pushgateway_url is not None:
        checks.append(
            Check(
                f"Pushgateway {config.masked()['pushgateway_url']}",
                "is ready",
                lambda: check_pushgateway(config, timeout),
            )
        )
    return checks


# --- the zero-code entry ---------------------------------------------------------------------


def _distro_installed() -> bool:
    try:
        importlib.metadata.version(_DISTRO)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def zero_code_environment(environ: Mapping[str, str]) -> tuple[dict[str, str], frozenset[str]]:
    """``environ`` as a zero-code run sees it, and the variables opentelemetry-distro filled."""
    env = dict(environ)
    filled = frozenset(name for name in DISTRO_DEFAULTS if not env.get(name, "").strip())
    env.update({name: DISTRO_DEFAULTS[name] for name in filled})
    return env, filled


def _protocol_note(config: TelemetryConfig) -> str | None:
    """Warn when a zero-code run would use another protocol than this check (and instrument())."""
    if config.disabled or not _distro_installed():
        return None
    signals = [s for s in _SIGNALS if "otlp" in config.exporters_for(s)]
    applied = {config.otlp_setting(s, "protocol").name for s in signals}
    if not signals or any(config.source(name) != "default" for name in applied):
        return None
    protocol = config.otlp_for(signals[0]).protocol
    return (
        f"nothing sets the OTLP protocol: instrument() and this check use {protocol}, but a "
        f"zero-code run (opentelemetry-instrument) uses {DISTRO_DEFAULTS[_env('otlp_protocol')]}, "
        f"{_DISTRO}'s default; set {_env('otlp_protocol')} so both agree, or check that run "
        "with `ondine-otel check --zero-code`"
    )


# --- the report ----------------------------------------------------------------------------

_SIGNALS: tuple[Signal, ...] = ("traces", "metrics")


def _source(
    config: TelemetryConfig,
    name: str,
    environ: Mapping[str, str],
    distro_filled: frozenset[str] = frozenset(),
) -> str:
    """Where a value came from, naming the environment variable that set it."""
    source = config.source(name)
    if source == "environment":
        env = _env(name)
        if env in distro_filled:
            return f"{_DISTRO} default (zero-code)"
        if name == "service_name" and not environ.get(env, "").strip():
            return f"env {_env('resource_attributes')} (service.name)"
        return f"env {env}"
    if source == "argument":
        return "argument"
    per_signal = per_signal_option(name)
    if per_signal is not None:
        applied = config.otlp_setting(*per_signal)
        if applied.name != name and config.source(applied.name) != "default":
            return f"via {_source(config, applied.name, environ, distro_filled)}"
    if name in ("traces_exporter", "metrics_exporter"):
        return "default (follows the endpoints set)"
    return "default"


def _print_configuration(
    config: TelemetryConfig,
    environ: Mapping[str, str],
    out: IO[str],
    distro_filled: frozenset[str] = frozenset(),
) -> None:
    values = config.masked()
    width = max(len(name) for name in values)
    value_width = min(max(len(v) for v in values.values()), 48)
    print("Effective configuration (secrets masked):", file=out)
    for name, value in values.items():
        source = _source(config, name, environ, distro_filled)
        print(f"  {name:<{width}}  {value:<{value_width}}  {source}", file=out)


def run_check(
    timeout: float = DEFAULT_TIMEOUT,
    environ: Mapping[str, str] | None = None,
    out: IO[str] | None = None,
    zero_code: bool = False,
) -> int:
    """Print the configuration and test its targets; 0 when all is well, else 1.

    With ``zero_code``, the environment is the one a zero-code run has (opentelemetry-distro's
    defaults where nothing is set), so the targets are tested the way that run exports.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    stream = sys.stdout if out is None else out
    distro_filled: frozenset[str] = frozenset()
    if zero_code:
        env, distro_filled = zero_code_environment(env)
    entry = " (as a zero-code run: opentelemetry-instrument)" if zero_code else ""
    print(f"ondine-otel {__version__} check{entry}", file=stream)
    try:
        config = TelemetryConfig.from_settings(environ=env)
    except ConfigError as error:
        print(f"FAIL  configuration: {error}", file=stream)
        return 1
    _print_configuration(config, env, stream, distro_filled)

    notes = environment_warnings(env)
    if zero_code and not _distro_installed():
        notes.append(
            f"{_DISTRO} is not installed: opentelemetry-instrument sets up no exporter without "
            f"it (pip install {_DISTRO})"
        )
    elif not zero_code and (protocol_note := _protocol_note(config)) is not None:
        notes.append(protocol_note)
    if config.disabled:
        notes.append(f"telemetry is disabled ({_env('disabled')}): nothing will be exported")
    checks = planned_checks(config, timeout)
    exported = config.exporters_for("traces") + config.exporters_for("metrics")
    if not config.disabled and not exported and config.pushgateway_url is None:
        notes.append(
            f"nothing is exported: set {_env('otlp_endpoint')}, {_env('prometheus_port')} "
            f"or {_env('pushgateway_url')}"
        )
    for note in notes:
        print(f"warning: {note}", file=stream)

    print("Checks:", file=stream)
    problems: list[Problem] = []
    for check in checks:
        try:
            found = check.run()
        except Exception as error:  # noqa: BLE001 - report it as a problem, keep checking
            found = [
                Problem(
                    f"{check.target} could not be checked ({type(error).__name__}: {error})",
                    "check the settings shown above for this target",
                )
            ]
        problems.extend(found)
        for problem in found:
            print(f"  FAIL  {problem}", file=stream)
        if not found:
            print(f"  ok    {check.target} {check.ok}", file=stream)
    if not checks:
        print("  (no export target to test)", file=stream)
    if problems:
        count = f"{len(problems)} problem" + ("s" if len(problems) > 1 else "")
        print(f"{count}: fix and run `ondine-otel check` again", file=stream)
        return 1
    print("all checks passed", file=stream)
    return 0


# --- command line --------------------------------------------------------------------------


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text}")
    return value


def add_check_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``check`` on the ``ondine-otel`` command line."""
    check = subparsers.add_parser(
        "check",
        help="print the effective configuration and test the export targets it uses",
        description=(
            "Print every ondine-otel setting (secrets masked) with where it came from, then "
            "send an empty OTLP export to each OTLP endpoint in use, check that the Prometheus "
            "port can be bound and that the Pushgateway is ready. Exits 1 with one line per "
            "problem, naming the fix."
        ),
    )
    check.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"give each network check at most this long (default: {DEFAULT_TIMEOUT:g})",
    )
    check.add_argument(
        "--zero-code",
        action="store_true",
        help=f"check as `opentelemetry-instrument` (with {_DISTRO}) will export: its defaults "
        + ", ".join(f"{k}={v}" for k, v in DISTRO_DEFAULTS.items())
        + " apply where the environment sets nothing",
    )
    check.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    return run_check(timeout=args.timeout, zero_code=args.zero_code)
