"""TelemetryConfig: precedence, validation errors, OTLP fallback/URL rules, masking, round trips.

Every test passes ``environ=`` explicitly so the developer's own OTEL_* variables cannot leak
in; the two tests about ``os.environ`` itself use monkeypatch.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from ondine_otel.config import (
    SETTINGS,
    ConfigError,
    TelemetryConfig,
    settings_table,
    unrecognized_environment,
)

ENV = {s.name: s.env for s in SETTINGS}
PUSH_AUTH = {
    "pushgateway_url": "http://pg:9091",
    "pushgateway_username": "bob",
    "pushgateway_password": "pw",
}


def build(env: Mapping[str, str] | None = None, /, **kwargs: Any) -> TelemetryConfig:
    return TelemetryConfig.from_settings(environ=env or {}, **kwargs)


@pytest.fixture
def cert(tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    path.write_text("not really a certificate\n")
    return str(path)


# --- defaults and precedence ---------------------------------------------------------------


def test_defaults_match_the_table_and_direct_construction() -> None:
    config = build()
    assert config == TelemetryConfig()
    for setting in SETTINGS:
        assert getattr(config, setting.name) == setting.default, setting.name
        assert config.source(setting.name) == "default"
    assert config.exporters_for("traces") == ()
    assert config.exporters_for("metrics") == ()
    assert config.prometheus_address is None


def test_dataclass_field_defaults_equal_setting_defaults() -> None:
    by_name = {s.name: s for s in SETTINGS}
    for f in dataclasses.fields(TelemetryConfig):
        factory = f.default_factory
        default = f.default if factory is dataclasses.MISSING else factory()
        assert default == by_name[f.name].default, f.name


def _samples(cert_env: str, cert_arg: Path) -> dict[str, tuple[str, Any, Any, Any]]:
    """name -> (env text, value parsed from env, argument, value parsed from argument)."""
    url_a, url_b = "http://env-host:4318", "https://arg-host:4318/p"
    return {
        "disabled": ("YES", True, "0", False),
        "service_name": ("svc-env", "svc-env", "svc-arg", "svc-arg"),
        "resource_attributes": (
            "team=a%20b,env=prod",
            {"team": "a b", "env": "prod"},
            {"team": "x"},
            {"team": "x"},
        ),
        "traces_exporter": ("console, otlp", ("console", "otlp"), ["otlp"], ("otlp",)),
        "metrics_exporter": ("prometheus", ("prometheus",), "none", ()),
        "traces_sampler": ("TraceIdRatio", "traceidratio", "always_off", "always_off"),
        "traces_sampler_arg": ("0.25", 0.25, 1, 1.0),
        "otlp_endpoint": (url_a, url_a, url_b, url_b),
        "otlp_traces_endpoint": (url_a, url_a, url_b, url_b),
        "otlp_metrics_endpoint": (url_a, url_a, url_b, url_b),
        "otlp_protocol": ("grpc", "grpc", "http/protobuf", "http/protobuf"),
        "otlp_traces_protocol": ("GRPC", "grpc", "http/protobuf", "http/protobuf"),
        "otlp_metrics_protocol": ("grpc", "grpc", "http/protobuf", "http/protobuf"),
        "otlp_headers": ("a=1", {"a": "1"}, {"B": "2"}, {"b": "2"}),
        "otlp_traces_headers": ("a=1", {"a": "1"}, "b=2", {"b": "2"}),
        "otlp_metrics_headers": ("a=1", {"a": "1"}, "b=2", {"b": "2"}),
        "otlp_timeout": ("2500", 2500, 0, 0),
        "otlp_traces_timeout": ("2500", 2500, "7", 7),
        "otlp_metrics_timeout": ("2500", 2500, 7, 7),
        "otlp_compression": ("GZIP", "gzip", "none", "none"),
        "otlp_traces_compression": ("gzip", "gzip", "none", "none"),
        "otlp_metrics_compression": ("gzip", "gzip", "none", "none"),
        "otlp_certificate": (cert_env, cert_env, cert_arg, str(cert_arg)),
        "otlp_traces_certificate": (cert_env, cert_env, cert_arg, str(cert_arg)),
        "otlp_metrics_certificate": (cert_env, cert_env, str(cert_arg), str(cert_arg)),
        "prometheus_host": ("0.0.0.0", "0.0.0.0", "::", "::"),
        "prometheus_port": ("9100", 9100, 0, 0),
        "prometheus_process_metrics": ("true", True, False, False),
        "pipeline_name": (" env-pipe ", "env-pipe", "arg-pipe", "arg-pipe"),
        "pushgateway_url": ("http://pg:9091", "http://pg:9091", "https://pg2", "https://pg2"),
        "pushgateway_username": ("env-user", "env-user", "arg-user", "arg-user"),
        "pushgateway_password": ("env pw ", "env pw ", "arg-pw", "arg-pw"),
        "pushgateway_grouping": (
            "shard=3, worker=w%201",
            {"shard": "3", "worker": "w 1"},
            {"shard": "a"},
            {"shard": "a"},
        ),
        "push_interval": ("2.5", 2.5, 30, 30.0),
        "metric_export_interval": ("2500", 2500, 500, 500),
        "handle_signals": ("false", False, True, True),
        "shutdown_timeout": ("0.5", 0.5, 10, 10.0),
        "llm_span_limit": ("0", 0, 50, 50),
        "llm_error_span_limit": ("3", 3, 0, 0),
        "llm_span_rate": ("0.5", 0.5, 0, 0.0),
        "progress_interval": ("0", 0.0, 1.5, 1.5),
        "label_limit": ("1", 1, 500, 500),
        "capture_content": ("true", True, False, False),
    }


def test_samples_cover_every_setting(tmp_path: Path) -> None:
    assert set(_samples("x", tmp_path)) == {s.name for s in SETTINGS}


@pytest.mark.parametrize("name", [s.name for s in SETTINGS])
def test_environment_beats_default_and_argument_beats_environment(
    name: str, tmp_path: Path
) -> None:
    env_cert, arg_cert = tmp_path / "env.pem", tmp_path / "arg.pem"
    env_cert.write_text("x")
    arg_cert.write_text("y")
    env_text, from_env, argument, from_argument = _samples(str(env_cert), arg_cert)[name]
    # The Pushgateway credentials are only valid together with each other and a URL.
    companions = {k: v for k, v in PUSH_AUTH.items() if k != name} if "pushgateway" in name else {}

    config = build({ENV[name]: env_text}, **companions)
    assert getattr(config, name) == from_env
    assert config.source(name) == "environment"

    config = build({ENV[name]: env_text}, **companions, **{name: argument})
    assert getattr(config, name) == from_argument
    assert config.source(name) == "argument"


def test_none_argument_defers_to_the_environment() -> None:
    config = build({"ONDINE_OTEL_PUSH_INTERVAL": "3"}, push_interval=None)
    assert config.push_interval == 3.0
    assert config.source("push_interval") == "environment"


def test_empty_string_argument_unsets_an_optional_setting_despite_the_environment() -> None:
    config = build({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, otlp_endpoint="")
    assert config.otlp_endpoint is None
    assert config.exporters_for("traces") == ()


def test_empty_environment_variables_count_as_unset() -> None:
    config = build({"OTEL_SERVICE_NAME": "", "ONDINE_OTEL_PUSH_INTERVAL": "  "})
    assert config == TelemetryConfig()


def test_environ_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONDINE_OTEL_PIPELINE_NAME", "from-os-environ")
    assert TelemetryConfig.from_settings().pipeline_name == "from-os-environ"
    assert TelemetryConfig.from_settings(environ={}).pipeline_name == "ondine"


@pytest.mark.parametrize("text", ["true", "TRUE", "1", "yes", " Yes "])
def test_true_spellings(text: str) -> None:
    assert build({"OTEL_SDK_DISABLED": text}).disabled is True


@pytest.mark.parametrize("text", ["false", "False", "0", "no"])
def test_false_spellings(text: str) -> None:
    assert build({"OTEL_SDK_DISABLED": text}).disabled is False


# --- bad values --------------------------------------------------------------------------

BAD_VALUES = [
    ("otlp_protocol", "thrift"),
    ("otlp_protocol", "http/json"),
    ("otlp_metrics_protocol", "grpcc"),
    ("otlp_endpoint", "localhost:4318"),
    ("otlp_endpoint", "ftp://host:21"),
    ("otlp_endpoint", "http://"),
    ("otlp_endpoint", "http://host:99999"),
    ("otlp_endpoint", "http://host:abc"),
    ("otlp_endpoint", "http://host:4318/v1?x=1"),
    ("otlp_traces_endpoint", "http://ho st:4318"),
    ("pushgateway_url", "pg:9091"),
    ("prometheus_port", "70000"),
    ("prometheus_port", "-1"),
    ("prometheus_process_metrics", "sometimes"),
    ("prometheus_port", "port"),
    ("prometheus_host", "http://0.0.0.0"),
    ("traces_sampler_arg", "half"),
    ("traces_sampler_arg", "1.5"),
    ("traces_sampler_arg", "-0.1"),
    ("traces_sampler_arg", "nan"),
    ("traces_sampler", "sometimes"),
    ("traces_sampler", "xray"),
    ("disabled", "maybe"),
    ("capture_content", "2"),
    ("push_interval", "0"),
    ("push_interval", "-1"),
    ("push_interval", "abc"),
    ("push_interval", "inf"),
    ("progress_interval", "-0.5"),
    ("llm_span_limit", "-1"),
    ("llm_span_limit", "1.5"),
    ("label_limit", "0"),
    ("otlp_timeout", "-5"),
    ("otlp_traces_timeout", "10s"),
    ("otlp_compression", "brotli"),
    ("traces_exporter", "prometheus"),
    ("traces_exporter", "jaeger"),
    ("traces_exporter", "otlp,none"),
    ("metrics_exporter", "zipkin"),
    ("resource_attributes", "novalue"),
    ("resource_attributes", "=v"),
    ("pipeline_name", "p" * 129),
    ("pipeline_name", "a\x01b"),
    ("service_name", "a\tb"),
    ("otlp_certificate", "no-such-ca.pem"),
]


@pytest.mark.parametrize(("name", "bad"), BAD_VALUES)
def test_bad_environment_value_names_variable_argument_and_value(name: str, bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build({ENV[name]: bad})
    error = caught.value
    assert error.setting == ENV[name]
    assert error.value == bad
    assert error.allowed.startswith("expected")
    message = str(error)
    assert message.startswith(f"{ENV[name]}={bad!r} is invalid: ")
    assert message.endswith(f"(argument {name})")


@pytest.mark.parametrize(("name", "bad"), BAD_VALUES)
def test_bad_argument_value_names_argument_variable_and_value(name: str, bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build(**{name: bad})
    message = str(caught.value)
    assert caught.value.setting == name
    assert message.startswith(f"{name}={bad!r} is invalid: ")
    assert message.endswith(f"(env var {ENV[name]})")


def test_a_bad_user_name_is_rejected_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as caught:
        build(**{**PUSH_AUTH, "pushgateway_username": "a:b"})
    assert caught.value.setting == "pushgateway_username"
    assert "a:b" not in str(caught.value) and "user name without ':'" in str(caught.value)


def test_error_message_format() -> None:
    with pytest.raises(ConfigError) as caught:
        build({"ONDINE_OTEL_PUSH_INTERVAL": "abc"})
    assert str(caught.value) == (
        "ONDINE_OTEL_PUSH_INTERVAL='abc' is invalid: expected a number of seconds > 0 "
        "(argument push_interval)"
    )
    assert caught.value.alias == "argument push_interval"


def test_config_error_is_a_value_error_and_survives_pickling() -> None:
    with pytest.raises(ValueError) as caught:
        build(label_limit=0)
    error = caught.value
    assert isinstance(error, ConfigError)
    clone = pickle.loads(pickle.dumps(error))
    assert (clone.setting, clone.value, clone.allowed, str(clone)) == (
        error.setting,
        error.value,
        error.allowed,
        str(error),
    )


def test_http_json_is_reported_as_unsupported() -> None:
    with pytest.raises(ConfigError, match="http/json is not supported"):
        build({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})


def test_prometheus_as_a_trace_exporter_says_why() -> None:
    with pytest.raises(ConfigError, match="prometheus exports metrics only"):
        build(traces_exporter=["otlp", "prometheus"])


@pytest.mark.parametrize(
    ("kwargs", "value"),
    [
        ({"llm_span_limit": True}, True),
        ({"push_interval": [1]}, [1]),
        ({"otlp_timeout": 2.5}, 2.5),
        ({"disabled": 1}, 1),
        ({"traces_exporter": 3}, 3),
    ],
)
def test_wrong_argument_types_are_rejected(kwargs: dict[str, Any], value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        build(**kwargs)
    assert caught.value.value == value


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({"pushgateway_username": "bob"}, "pushgateway_password"),
        ({"pushgateway_password": "s3cret-pw"}, "pushgateway_username"),
    ],
)
def test_half_basic_auth_is_rejected(given: dict[str, str], missing: str) -> None:
    ((name, value),) = given.items()
    with pytest.raises(ConfigError) as caught:
        build(pushgateway_url="http://pg:9091", **given)
    message = str(caught.value)
    assert caught.value.setting == name
    assert missing in message and ENV[missing] in message
    assert "s3cret-pw" not in message
    assert repr(value) not in message  # the user name is half a credential: masked too

    with pytest.raises(ConfigError) as caught:
        build({ENV[name]: value, "ONDINE_OTEL_PUSHGATEWAY_URL": "http://pg:9091"})
    assert caught.value.setting == ENV[name]
    assert f"(argument {name})" in str(caught.value)


def test_credentials_without_pushgateway_url_are_rejected() -> None:
    credentials = {k: v for k, v in PUSH_AUTH.items() if k != "pushgateway_url"}
    with pytest.raises(ConfigError, match="ONDINE_OTEL_PUSHGATEWAY_URL"):
        build(**credentials)
    assert build(**PUSH_AUTH).pushgateway_username == "bob"


def test_unknown_argument_lists_valid_names_and_suggests_one() -> None:
    with pytest.raises(ConfigError) as caught:
        build(push_intervall=3)
    message = str(caught.value)
    assert caught.value.setting == "push_intervall"
    assert "did you mean 'push_interval'" in message
    for setting in SETTINGS:
        assert setting.name in message


def test_certificate_must_be_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a regular file"):
        build(otlp_certificate=str(tmp_path))


# --- OTLP per-signal fallback and URL rules ----------------------------------------------


@pytest.mark.parametrize(
    ("env", "signal", "endpoint"),
    [
        ({}, "traces", "http://localhost:4318/v1/traces"),
        ({}, "metrics", "http://localhost:4318/v1/metrics"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "traces", "http://localhost:4317"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, "traces", "http://c:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}, "metrics", "http://c:4318/v1/metrics"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c/otlp"}, "traces", "https://c/otlp/v1/traces"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "traces",
            "http://c:4317",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:9999",
            },
            "traces",
            "http://t:9999",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:9999",
            },
            "metrics",
            "http://c:4318/v1/metrics",
        ),
        (
            {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://m:4318/custom/"},
            "metrics",
            "http://m:4318/custom/",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317",
                "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc",
            },
            "metrics",
            "http://c:4317",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317",
                "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc",
            },
            "traces",
            "http://c:4317/v1/traces",
        ),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
            "traces",
            "http://localhost:4317",
        ),
    ],
)
def test_otlp_endpoint_url_rules(env: dict[str, str], signal: str, endpoint: str) -> None:
    assert build(env).otlp_for(signal).endpoint == endpoint  # type: ignore[arg-type]


def test_per_signal_settings_fall_back_to_generic_ones(cert: str, tmp_path: Path) -> None:
    other = tmp_path / "metrics-ca.pem"
    other.write_text("x")
    config = build(
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_HEADERS": "api-key=generic,x-tenant=t1",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
            "OTEL_EXPORTER_OTLP_CERTIFICATE": cert,
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_METRICS_HEADERS": "api-key=metrics",
            "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT": "500",
            "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION": "none",
            "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE": str(other),
        }
    )
    traces, metrics = config.otlp_for("traces"), config.otlp_for("metrics")
    assert (traces.protocol, traces.timeout_s, traces.compression) == ("grpc", 2.5, "gzip")
    assert dict(traces.headers) == {"api-key": "generic", "x-tenant": "t1"}
    assert traces.certificate == cert
    assert (metrics.protocol, metrics.timeout_s, metrics.compression) == (
        "http/protobuf",
        0.5,
        "none",
    )
    # Per-signal headers replace the generic ones rather than merging (as the SDKs do).
    assert dict(metrics.headers) == {"api-key": "metrics"}
    assert metrics.certificate == str(other)


def test_headers_are_percent_decoded_and_keys_lowercased() -> None:
    config = build({"OTEL_EXPORTER_OTLP_HEADERS": " Authorization = Basic%20dXNlcg%3D%3D ,,"})
    assert dict(config.otlp_headers) == {"authorization": "Basic dXNlcg=="}


@pytest.mark.parametrize("bad", ["x=a%0D%0Ay", "bad name=v", "Authorization: Bearer abc"])
def test_malformed_headers_fail_without_echoing_values(bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build({"OTEL_EXPORTER_OTLP_HEADERS": bad})
    message = str(caught.value)
    assert "OTEL_EXPORTER_OTLP_HEADERS" in message
    assert "abc" not in message and "a%0D%0Ay" not in message


def test_signal_must_be_traces_or_metrics() -> None:
    with pytest.raises(ValueError, match="logs"):
        build().otlp_for("logs")  # type: ignore[arg-type]


# --- exporters, sampler, Prometheus -------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "traces", "metrics"),
    [
        ({}, (), ()),
        ({"otlp_endpoint": "http://c:4318"}, ("otlp",), ("otlp",)),
        ({"otlp_traces_endpoint": "http://c:4318/v1/traces"}, ("otlp",), ()),
        ({"otlp_metrics_endpoint": "http://c:4318/v1/metrics"}, (), ("otlp",)),
        ({"prometheus_port": 9100}, (), ("prometheus",)),
        (
            {"otlp_endpoint": "http://c:4318", "prometheus_port": 0},
            ("otlp",),
            ("otlp", "prometheus"),
        ),
        ({"otlp_endpoint": "http://c:4318", "traces_exporter": "none"}, (), ("otlp",)),
        ({"traces_exporter": "otlp,console,otlp"}, ("otlp", "console"), ()),
        ({"metrics_exporter": "console", "prometheus_port": 9100}, (), ("console",)),
    ],
)
def test_exporter_defaults_follow_what_is_configured(
    kwargs: dict[str, Any], traces: tuple[str, ...], metrics: tuple[str, ...]
) -> None:
    config = build(**kwargs)
    assert config.exporters_for("traces") == traces
    assert config.exporters_for("metrics") == metrics


def test_prometheus_address_defaults_to_9464_only_when_selected() -> None:
    assert build(metrics_exporter="prometheus").prometheus_address == ("localhost", 9464)
    assert build(prometheus_port=0, prometheus_host="0.0.0.0").prometheus_address == (
        "0.0.0.0",
        0,
    )
    assert build(prometheus_port=9100, metrics_exporter="otlp").prometheus_address is None


def test_sampler_ratio_defaults_to_one() -> None:
    assert build(traces_sampler="traceidratio").sampler_ratio == 1.0
    assert build({"OTEL_TRACES_SAMPLER_ARG": "0.1"}).sampler_ratio == 0.1


# --- resource attributes and service name -------------------------------------------------


def test_resource_attributes_are_percent_decoded() -> None:
    config = build({"OTEL_RESOURCE_ATTRIBUTES": "team=data%2Cml,note=a%3Db"})
    assert dict(config.resource_attributes) == {"team": "data,ml", "note": "a=b"}


def test_service_name_precedence() -> None:
    env = {"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-resource"}
    assert build(env).service_name == "from-resource"
    assert build({**env, "OTEL_SERVICE_NAME": "from-env"}).service_name == "from-env"
    assert build({**env, "OTEL_SERVICE_NAME": "from-env"}, service_name="arg").service_name == "arg"


# --- masking ------------------------------------------------------------------------------

SECRETS = (
    "hunter2-password",
    "tok-9f8e7d6c5b4a39281706",
    "sk-live12345678",
    "abcDEF123456ghiJKL789012",
)


def secret_config(cert: str) -> TelemetryConfig:
    return build(
        {
            "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20tok-9f8e7d6c5b4a39281706",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-api-key=sk-live12345678",
            "OTEL_RESOURCE_ATTRIBUTES": "team=data,deploy.token=x1,build=abcDEF123456ghiJKL789012",
            "OTEL_EXPORTER_OTLP_CERTIFICATE": cert,
        },
        **{**PUSH_AUTH, "pushgateway_password": "hunter2-password"},
        otlp_endpoint="https://collector.example.com:4318",
    )


def test_masked_hides_secrets_and_keeps_the_rest(cert: str) -> None:
    masked = secret_config(cert).masked()
    text = json.dumps(masked)
    for secret in (*SECRETS, "x1"):
        assert secret not in text
    assert masked["otlp_headers"] == "authorization=***"
    assert masked["otlp_traces_headers"] == "x-api-key=***"
    assert masked["otlp_metrics_headers"] == "authorization=***"  # effective: the fallback
    assert masked["pushgateway_password"] == "***"
    assert masked["resource_attributes"] == "team=data,deploy.token=***,build=***"
    assert masked["pushgateway_username"] == "***"
    assert masked["otlp_traces_endpoint"] == "https://collector.example.com:4318/v1/traces"
    assert masked["otlp_traces_certificate"] == cert
    assert masked["traces_exporter"] == "otlp"


def test_masked_covers_every_setting_with_effective_values() -> None:
    masked = build(
        traces_sampler="parentbased_traceidratio", metrics_exporter="prometheus"
    ).masked()
    assert list(masked) == [s.name for s in SETTINGS]
    assert masked["traces_sampler_arg"] == "1"
    assert masked["prometheus_port"] == "9464"
    assert masked["otlp_traces_timeout"] == "10000"
    assert masked["pushgateway_password"] == "unset"
    assert all(isinstance(v, str) for v in masked.values())


def test_masked_redacts_token_looking_url_segments() -> None:
    config = build(pushgateway_url="https://pg.example.com/ingest/a1b2c3d4e5f6a7b8c9d0e1f2a3b4")
    assert config.masked()["pushgateway_url"] == "https://pg.example.com/ingest/***"


def test_repr_and_str_do_not_leak_secrets(cert: str) -> None:
    config = secret_config(cert)
    for text in (repr(config), str(config)):
        for secret in SECRETS:
            assert secret not in text
        assert "pushgateway_url='http://pg:9091'" in text


def test_secret_values_are_masked_in_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        build(otlp_headers={"authorization": "Bearer x\ny-secret"})
    assert "y-secret" not in str(caught.value)
    assert caught.value.value == {"authorization": "***"}
    with pytest.raises(ConfigError) as caught:
        build(otlp_endpoint="http://user:hunter2@c:4318")
    assert "hunter2" not in str(caught.value)


# --- round trips and immutability ---------------------------------------------------------


def test_to_dict_from_dict_round_trip_through_deepcopy_and_json(cert: str) -> None:
    config = secret_config(cert).replace(
        traces_exporter=["otlp", "console"], prometheus_port=0, traces_sampler_arg=0.5
    )
    data = config.to_dict(include_secrets=True)
    assert list(data) == [s.name for s in SETTINGS]
    assert data["otlp_headers"] == {"authorization": "Bearer tok-9f8e7d6c5b4a39281706"}
    assert data["traces_exporter"] == ["otlp", "console"]
    copied = copy.deepcopy(data)
    assert TelemetryConfig.from_dict(copied) == config
    assert TelemetryConfig.from_dict(json.loads(json.dumps(data))) == config
    assert copied == data  # from_dict did not mutate its input


def test_to_dict_leaves_secrets_out_unless_asked(cert: str) -> None:
    config = secret_config(cert)
    data = config.to_dict()
    secrets = {s.name for s in SETTINGS if s.secret}
    assert secrets >= {"otlp_headers", "pushgateway_password"}
    assert not secrets & set(data)
    assert "tok-9f8e7d6c5b4a39281706" not in json.dumps(data)
    assert list(data) == [s.name for s in SETTINGS if not s.secret]
    # Without its secrets the dict still rebuilds everything else.
    rebuilt = TelemetryConfig.from_dict(data)
    assert rebuilt.otlp_endpoint == config.otlp_endpoint
    assert dict(rebuilt.otlp_headers) == {}


def test_from_dict_accepts_a_subset_and_ignores_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ONDINE_OTEL_LABEL_LIMIT", "7")
    config = TelemetryConfig.from_dict({"pipeline_name": "p"})
    assert (config.pipeline_name, config.label_limit) == ("p", 100)
    assert config.replace(push_interval=2).label_limit == 100


def test_from_dict_validates() -> None:
    with pytest.raises(ConfigError, match="nope"):
        TelemetryConfig.from_dict({"nope": 1})
    with pytest.raises(ConfigError, match="label_limit"):
        TelemetryConfig.from_dict({"label_limit": -3})
    with pytest.raises(TypeError):
        TelemetryConfig.from_dict(["label_limit"])  # type: ignore[arg-type]


def test_replace_revalidates_and_leaves_the_original_alone() -> None:
    config = build({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, push_interval=4)
    changed = config.replace(push_interval="8", otlp_endpoint=None)
    assert (changed.push_interval, changed.otlp_endpoint) == (8.0, None)
    assert changed.exporters_for("traces") == ()  # auto exporters follow the change
    assert (config.push_interval, config.otlp_endpoint) == (4.0, "http://c:4318")
    assert changed.source("push_interval") == "argument"
    assert changed.source("otlp_endpoint") == "default"
    with pytest.raises(ConfigError, match="push_interval"):
        config.replace(push_interval=0)
    with pytest.raises(ConfigError, match="ONDINE_OTEL_PUSHGATEWAY_PASSWORD"):
        config.replace(pushgateway_url="http://pg:9091", pushgateway_username="bob")
    with pytest.raises(ConfigError, match="did you mean"):
        config.replace(label_limt=3)


def test_config_is_immutable_hashable_and_copyable(cert: str) -> None:
    config = secret_config(cert)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.push_interval = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.otlp_headers["authorization"] = "other"  # type: ignore[index]
    assert hash(config) == hash(copy.deepcopy(config))
    assert copy.deepcopy(config) == config
    assert copy.copy(config) == config
    clone = pickle.loads(pickle.dumps(config))
    assert clone == config
    assert clone.source("otlp_headers") == "environment"


def test_direct_construction_validates_and_normalises() -> None:
    with pytest.raises(ConfigError, match="push_interval"):
        TelemetryConfig(push_interval=0)
    config = TelemetryConfig(otlp_headers={"X-Key": "v"}, traces_exporter=("OTLP",))
    assert dict(config.otlp_headers) == {"x-key": "v"}
    assert config.traces_exporter == ("otlp",)


def test_input_mappings_are_copied() -> None:
    attributes = {"team": "a"}
    config = build(resource_attributes=attributes)
    attributes["team"] = "b"
    assert config.resource_attributes["team"] == "a"


# --- documentation table -------------------------------------------------------------------


def test_settings_table_covers_every_field_exactly() -> None:
    table = settings_table()
    fields = [f.name for f in dataclasses.fields(TelemetryConfig)]
    assert [row[0] for row in table] == fields
    envs = [row[1] for row in table]
    assert len(set(envs)) == len(envs)
    assert all(env.startswith(("OTEL_", "ONDINE_OTEL_")) for env in envs)
    for argument, _env, default, meaning in table:
        assert default and meaning, argument
    rows = {row[0]: row for row in table}
    assert rows["push_interval"] == (
        "push_interval",
        "ONDINE_OTEL_PUSH_INTERVAL",
        "15",
        "Seconds between Pushgateway pushes during a run.",
    )
    assert rows["otlp_timeout"][2] == "10000"
    assert rows["disabled"][2] == "false"


def test_unrecognized_environment_spots_typos() -> None:
    env = {"ONDINE_OTEL_PUSH_INTERVALL": "3", "ONDINE_OTEL_LABEL_LIMIT": "5", "HOME": "x"}
    assert unrecognized_environment(env) == ["ONDINE_OTEL_PUSH_INTERVALL"]


def test_process_metrics_are_opt_in_on_the_prometheus_endpoint() -> None:
    from prometheus_client import generate_latest

    from ondine_otel.export.providers import PrometheusEndpoint

    quiet = TelemetryConfig.from_settings(environ={})
    loud = TelemetryConfig.from_settings(environ={"ONDINE_OTEL_PROMETHEUS_PROCESS_METRICS": "true"})
    assert quiet.prometheus_process_metrics is False and loud.prometheus_process_metrics is True
    plain = generate_latest(PrometheusEndpoint(quiet.prometheus_process_metrics).registry)
    noisy = generate_latest(PrometheusEndpoint(loud.prometheus_process_metrics).registry)
    assert b"process_" not in plain and b"python_gc" not in plain
    assert b"process_cpu_seconds_total" in noisy and b"python_gc_objects_collected_total" in noisy
