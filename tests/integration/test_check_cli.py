"""`ondine-otel check` against live and dead targets on 127.0.0.1.

Run in-process through `main()` with the environment set by monkeypatch, so each test sees
exactly the configuration it sets; one test runs the real module as a subprocess. Dead
targets are ports bound but not listening (connections are refused, and nothing else can
take the port meanwhile); busy ones are listening sockets.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import grpc
import pytest

from ondine_otel.cli.check import (
    DISTRO_DEFAULTS,
    check_otlp,
    check_prometheus_port,
    check_pushgateway,
)
from ondine_otel.cli.main import main
from ondine_otel.config import TelemetryConfig
from tests.support.otlp_receiver import OtlpGrpcReceiver, OtlpHttpReceiver
from tests.support.services import Service

pytestmark = pytest.mark.integration

SECRET_HEADER = "Bearer sekrit-otlp-token-123"
SECRET_PASSWORD = "hunter2-pushgateway-pw"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets counts: drop the developer's OTEL_* / ONDINE_OTEL_* variables."""
    for name in list(os.environ):
        if name.startswith(("OTEL_", "ONDINE_OTEL_")):
            monkeypatch.delenv(name)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port something listens on (and never answers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["check", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def fail_lines(out: str) -> list[str]:
    return [line.strip()[len("FAIL") :].strip() for line in out.splitlines() if "FAIL" in line]


# --- OTLP ----------------------------------------------------------------------------------


def test_refused_otlp_endpoint_names_problem_and_fix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], refusing_port: int
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{refusing_port}")
    code, out = check(capsys)
    assert code == 1, out
    assert fail_lines(out) == [
        f"OTLP {signal} endpoint http://127.0.0.1:{refusing_port}/v1/{signal} refused the "
        "connection: start the collector or set OTEL_EXPORTER_OTLP_ENDPOINT to where it listens"
        for signal in ("traces", "metrics")
    ]


def test_live_http_receiver_passes(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    otlp_http_receiver: OtlpHttpReceiver,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_http_receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization={SECRET_HEADER}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    code, out = check(capsys)
    assert code == 0, out
    assert "all checks passed" in out
    requests = otlp_http_receiver.requests()
    assert sorted(r.signal for r in requests) == ["metrics", "traces"]
    for request in requests:  # sent like the exporter would: headers, compression, protobuf
        assert request.headers["authorization"] == SECRET_HEADER
        assert request.headers["content-encoding"] == "gzip"
        assert request.message.ByteSize() == 0
    assert SECRET_HEADER not in out and "sekrit" not in out
    assert "authorization=***" in out


def test_live_grpc_receiver_passes(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    otlp_grpc_receiver: OtlpGrpcReceiver,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_grpc_receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=acme")
    code, out = check(capsys)
    assert code == 0, out
    assert "accepts an empty grpc export" in out
    requests = otlp_grpc_receiver.requests()
    assert sorted(r.signal for r in requests) == ["metrics", "traces"]
    assert all(r.headers["x-tenant"] == "acme" for r in requests)


def test_grpc_receiver_rejecting_exports_fails(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    otlp_grpc_receiver: OtlpGrpcReceiver,
) -> None:
    otlp_grpc_receiver.fail_with = grpc.StatusCode.UNAUTHENTICATED
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp_grpc_receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    code, out = check(capsys)
    assert code == 1, out
    (line,) = fail_lines(out)  # metrics export nothing here, so only traces are checked
    assert "UNAUTHENTICATED" in line
    assert line.endswith("check the credentials in OTEL_EXPORTER_OTLP_HEADERS")


def test_receiver_answering_503_fails(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    otlp_http_receiver: OtlpHttpReceiver,
) -> None:
    otlp_http_receiver.fail_with = 503
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_http_receiver.endpoint)
    code, out = check(capsys)
    assert code == 1, out
    lines = fail_lines(out)
    assert len(lines) == 2
    assert all("answered HTTP 503" in line and "check its logs" in line for line in lines)
    assert otlp_http_receiver.rejected == 2


def test_per_signal_endpoint_without_path_is_explained(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    otlp_http_receiver: OtlpHttpReceiver,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp_http_receiver.endpoint)
    code, out = check(capsys)
    assert code == 1, out
    (line,) = fail_lines(out)
    assert "HTTP 404" in line
    assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is used as-is" in line and "/v1/traces" in line


def test_traces_only_backend_gets_per_signal_advice(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    otlp_http_receiver: OtlpHttpReceiver,
) -> None:
    """A base URL that takes traces and answers 405 on /v1/metrics (Phoenix does)."""
    otlp_http_receiver.signals = frozenset({"traces"})
    base = otlp_http_receiver.endpoint
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", base)
    code, out = check(capsys)
    assert code == 1, out
    assert f"ok    OTLP traces endpoint {base}/v1/traces" in out
    (line,) = fail_lines(out)
    assert line == (
        f"OTLP metrics endpoint {base}/v1/metrics answered HTTP 405 Method Not Allowed: the "
        "server takes no OTLP metrics (a traces-only backend answers so): replace "
        f"OTEL_EXPORTER_OTLP_ENDPOINT by OTEL_EXPORTER_OTLP_TRACES_ENDPOINT={base}/v1/traces, "
        "or set OTEL_METRICS_EXPORTER to none or prometheus, or "
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT to a receiver that takes metrics"
    )
    # Following the advice passes: metrics then default to no exporter.
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{base}/v1/traces")
    code, out = check(capsys)
    assert code == 0, out


def test_silent_endpoint_names_the_checks_own_limit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], busy_port: int
) -> None:
    """The check gave up first (its --timeout): the job would wait its own 10 s."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{busy_port}/t")
    code, out = check(capsys, "--timeout", "0.3")
    assert code == 1, out
    (line,) = fail_lines(out)
    assert line == (
        f"OTLP traces endpoint http://127.0.0.1:{busy_port}/t did not answer within 0.3 s (this "
        "check's --timeout): check the address in OTEL_EXPORTER_OTLP_TRACES_ENDPOINT and any "
        "firewall on the way; the job waits up to 10 s per export (OTEL_EXPORTER_OTLP_TIMEOUT), "
        "so if the server is just slow, run the check again with --timeout 10"
    )


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_silent_endpoint_names_the_jobs_timeout_when_it_applied(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    busy_port: int,
    protocol: str,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{busy_port}/t")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "300")
    code, out = check(capsys, "--timeout", "5")
    assert code == 1, out
    assert "the job's exports time out after 0.3 s, OTEL_EXPORTER_OTLP_TRACES_TIMEOUT" not in out
    (line,) = fail_lines(out)
    assert "did not answer within 0.3 s, the job's export timeout" in line, line
    assert line.endswith(
        "or raise OTEL_EXPORTER_OTLP_TRACES_TIMEOUT (now 300 ms) if the server is just slow"
    )


# --- the zero-code entry (opentelemetry-instrument with opentelemetry-distro) ---------------


def test_distro_defaults_are_the_distros() -> None:
    """DISTRO_DEFAULTS is what the installed opentelemetry-distro really sets."""
    probe = (
        "import json, os\n"
        "before = dict(os.environ)\n"
        "from opentelemetry.distro import OpenTelemetryDistro\n"
        "OpenTelemetryDistro().configure()\n"
        "print(json.dumps({k: v for k, v in os.environ.items() if before.get(k) != v}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    filled = json.loads(done.stdout)
    assert {k: filled[k] for k in DISTRO_DEFAULTS} == dict(DISTRO_DEFAULTS)


def test_protocol_mismatch_with_the_zero_code_entry_is_a_warning(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    otlp_http_receiver: OtlpHttpReceiver,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_http_receiver.endpoint)
    code, out = check(capsys)
    assert code == 0, out
    assert (
        "warning: nothing sets the OTLP protocol: instrument() and this check use "
        "http/protobuf, but a zero-code run (opentelemetry-instrument) uses grpc, "
        "opentelemetry-distro's default; set OTEL_EXPORTER_OTLP_PROTOCOL so both agree, or "
        "check that run with `ondine-otel check --zero-code`"
    ) in out
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    code, out = check(capsys)
    assert code == 0 and "nothing sets the OTLP protocol" not in out, out


def test_zero_code_check_uses_the_distros_grpc_default(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    otlp_http_receiver: OtlpHttpReceiver,
) -> None:
    """Quick start #2 without a protocol: the zero-code run would speak gRPC to an HTTP port."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_http_receiver.endpoint)
    code, out = check(capsys, "--zero-code", "--timeout", "5")
    assert code == 1, out
    assert "as a zero-code run" in out
    (protocol,) = [line for line in out.splitlines() if line.split()[:1] == ["otlp_protocol"]]
    assert protocol.split()[1:] == ["grpc", "opentelemetry-distro", "default", "(zero-code)"]
    lines = fail_lines(out)
    assert len(lines) == 2, out  # traces and metrics: the distro turns both exporters on
    assert all("OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf" in line for line in lines), lines
    assert otlp_http_receiver.requests() == []

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    code, out = check(capsys, "--zero-code")
    assert code == 0, out
    assert sorted(r.signal for r in otlp_http_receiver.requests()) == ["metrics", "traces"]


def test_zero_code_check_passes_against_grpc(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    otlp_grpc_receiver: OtlpGrpcReceiver,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_grpc_receiver.endpoint)
    code, out = check(capsys, "--zero-code")
    assert code == 0, out
    assert "accepts an empty grpc export" in out
    assert "nothing sets the OTLP protocol" not in out


# --- Prometheus ----------------------------------------------------------------------------


def test_busy_prometheus_port_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], busy_port: int
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", str(busy_port))
    code, out = check(capsys)
    assert code == 1, out
    assert fail_lines(out) == [
        f"Prometheus port 127.0.0.1:{busy_port} is already in use: stop what listens there "
        "or set OTEL_EXPORTER_PROMETHEUS_PORT to a free port (0 lets the OS choose)"
    ]


def test_os_chosen_prometheus_port_passes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
    monkeypatch.setenv("OTEL_EXPORTER_PROMETHEUS_PORT", "0")
    code, out = check(capsys)
    assert code == 0, out
    assert "can be bound" in out
    config = TelemetryConfig.from_settings(environ={}, prometheus_port=0)
    assert check_prometheus_port(config) == []


# --- Pushgateway ---------------------------------------------------------------------------


def test_live_pushgateway_passes_and_password_is_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], pushgateway: Service
) -> None:
    monkeypatch.setenv("ONDINE_OTEL_PUSHGATEWAY_URL", pushgateway.url)
    monkeypatch.setenv("ONDINE_OTEL_PUSHGATEWAY_USERNAME", "batch")
    monkeypatch.setenv("ONDINE_OTEL_PUSHGATEWAY_PASSWORD", SECRET_PASSWORD)
    code, out = check(capsys)
    assert code == 0, out
    assert f"Pushgateway {pushgateway.url} is ready" in out
    assert SECRET_PASSWORD not in out


def test_dead_pushgateway_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], refusing_port: int
) -> None:
    monkeypatch.setenv("ONDINE_OTEL_PUSHGATEWAY_URL", f"http://127.0.0.1:{refusing_port}")
    code, out = check(capsys)
    assert code == 1, out
    assert fail_lines(out) == [
        f"Pushgateway http://127.0.0.1:{refusing_port} refused the connection: start the "
        "Pushgateway or set ONDINE_OTEL_PUSHGATEWAY_URL to where it listens"
    ]


# --- configuration and output --------------------------------------------------------------


def test_bad_config_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    code, out = check(capsys)
    assert code == 1, out
    (line,) = fail_lines(out)
    assert "OTEL_EXPORTER_OTLP_PROTOCOL" in line and "http/json is not supported" in line


def test_secrets_never_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], refusing_port: int
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{refusing_port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization={SECRET_HEADER}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "api-key=sekrit-metrics-key")
    monkeypatch.setenv("ONDINE_OTEL_PUSHGATEWAY_URL", f"http://127.0.0.1:{refusing_port}")
    monkeypatch.setenv("ONDINE_OTEL_PUSHGATEWAY_USERNAME", "batch")
    monkeypatch.setenv("ONDINE_OTEL_PUSHGATEWAY_PASSWORD", SECRET_PASSWORD)
    code, out = check(capsys)
    assert code == 1, out
    assert "sekrit" not in out and SECRET_PASSWORD not in out
    assert "authorization=***" in out and "api-key=***" in out
    assert "env ONDINE_OTEL_PUSHGATEWAY_PASSWORD" in out  # the source is shown, not the value

    # A malformed secret is reported without echoing it either.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization: {SECRET_HEADER}")
    code, out = check(capsys)
    assert code == 1 and "OTEL_EXPORTER_OTLP_HEADERS" in out
    assert "sekrit" not in out


def test_sources_and_typo_warnings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "nightly-enrich")
    monkeypatch.setenv("ONDINE_OTEL_PUSHGATWAY_URL", "http://127.0.0.1:9091")
    code, out = check(capsys)
    assert code == 0, out  # a typo is a warning, not a failure
    assert (
        "warning: ONDINE_OTEL_PUSHGATWAY_URL is set but is not an ondine-otel setting: "
        "did you mean ONDINE_OTEL_PUSHGATEWAY_URL?"
    ) in out
    (service,) = [line for line in out.splitlines() if line.split()[:1] == ["service_name"]]
    assert service.split() == ["service_name", "nightly-enrich", "env", "OTEL_SERVICE_NAME"]
    assert "warning: nothing is exported" in out


def test_disabled_sdk_skips_the_targets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], refusing_port: int
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{refusing_port}")
    code, out = check(capsys)
    assert code == 0, out
    assert "telemetry is disabled" in out


def test_check_functions_return_problems(refusing_port: int) -> None:
    """The per-target functions are usable on their own: a list of (what, fix) problems."""
    config = TelemetryConfig.from_settings(
        environ={},
        otlp_traces_endpoint=f"http://127.0.0.1:{refusing_port}",
        otlp_traces_protocol="grpc",
        pushgateway_url=f"http://127.0.0.1:{refusing_port}",
    )
    (problem,) = check_otlp(config, "traces", timeout=2)
    assert problem.what.endswith("refused the connection")
    assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" in problem.fix
    (problem,) = check_pushgateway(config, timeout=2)
    assert "ONDINE_OTEL_PUSHGATEWAY_URL" in problem.fix
    assert check_pushgateway(TelemetryConfig.from_settings(environ={}), timeout=2) == []


# --- command line --------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--help"], ["check", "--help"], ["demo", "--help"]])
def test_help_works(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ondine-otel")
    if args[0] == "check":
        assert "--timeout SECONDS" in out


@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf"])
def test_bad_timeout_is_a_usage_error(value: str) -> None:
    assert main(["check", "--timeout", value]) == 2


def test_console_script_runs_check(otlp_http_receiver: OtlpHttpReceiver) -> None:
    """The real module entry point, in a fresh interpreter, against a live receiver."""
    env = dict(os.environ)  # already cleaned of OTEL_* by the autouse fixture
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp_http_receiver.endpoint
    result = subprocess.run(
        [sys.executable, "-m", "ondine_otel.cli.main", "check", "--timeout", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout
    assert sorted(r.signal for r in otlp_http_receiver.requests()) == ["metrics", "traces"]
