"""Canaries: an API key and an e-mail planted everywhere a user puts them must not leak.

The key is in the LLM spec (api_key, extra params), the OTLP headers and a provider error
message; the e-mail in the LLM spec (the OpenAI `user` parameter), the system prompt, the
template and the data. Every output is searched: spans, events, links and resources at an OTLP
receiver, metric labels there and on the Prometheus endpoint, the Pushgateway request bodies,
and every log record of the adapter and the SDK. `ondine-otel check` must not print header
values or passwords, and OTLP over TLS must work with the right CA and fail clearly otherwise.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ondine_otel.telemetry import semconv
from tests.reliability import faults, jobs
from tests.reliability.conftest import Figures
from tests.support.otlp_receiver import OtlpGrpcReceiver, OtlpHttpReceiver, attributes

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

KEY = "sk-canary-7f3a9c2e41b84d06a5e1c9b7d2f08e63"
EMAIL = "canary.person@example.org"
PASSWORD = "canary-pushgateway-pw-51c7"

_CHILD = f"""
import urllib.request
import ondine_otel
from ondine import PipelineBuilder
from ondine_otel.demo.pipeline import PROMPT

KEY, EMAIL = {KEY!r}, {EMAIL!r}
for name in ("ondine_otel", "opentelemetry"):  # every record, not only warnings
    logging.getLogger(name).setLevel(logging.DEBUG)
    logging.getLogger(name).handlers[0].setLevel(logging.DEBUG)

class LeakyProvider(OfflineLLMClient):
    # Fails every 7th call the way providers do: echoing the key and the user back.
    def _admit(self, prompt):
        started = super()._admit(prompt)
        if self.call_count % 7 == 0:
            raise RuntimeError(f"Incorrect API key provided: {{KEY}} for user {{EMAIL}}")
        return started

handle = ondine_otel.instrument(
    otlp_endpoint=sys.argv[1], otlp_metrics_endpoint=sys.argv[2] + "/v1/metrics",
    otlp_headers={{"authorization": "Bearer " + KEY}},
    traces_exporter="otlp", metrics_exporter="otlp,prometheus",
    prometheus_port=0, prometheus_host="127.0.0.1", pushgateway_url=sys.argv[3],
    capture_content=sys.argv[4] == "on", pipeline_name="canary",
)
df = load_reviews(20)
df["review"] = df["review"] + f" Reach me at {{EMAIL}}, my key is {{KEY}}."
pipeline = (
    PipelineBuilder.create()
    .from_dataframe(df, input_columns=["review"], output_columns=["sentiment"])
    .with_prompt(PROMPT + f" (Escalate to {{EMAIL}}, key {{KEY}})",
                 system_message=f"You work for {{EMAIL}}.")
    .with_llm(provider="openai", model="gpt-4o-mini", api_key=KEY,
              extra_params={{"user": EMAIL, "metadata": {{"api_key": KEY}}}})
    .with_custom_llm_client(LeakyProvider())
    .with_checkpoint_dir(tempfile.mkdtemp())
    .with_error_policy("skip")
    .build()
)
pipeline.execute()
scrape = urllib.request.urlopen(
    f"http://127.0.0.1:{{handle.prometheus_port}}/metrics", timeout=5).read().decode()
handle.shutdown(timeout=10)
report(scrape=scrape, logs=LOG_RECORDS)
"""


def _otlp_texts(receiver: OtlpHttpReceiver) -> list[str]:
    """Every attribute key and value the receiver holds (spans, events, links, resources)."""
    texts: list[str] = []
    for span in receiver.spans():
        texts.append(span.name + " " + span.status_message)
        for attrs in (
            span.attributes,
            span.resource,
            *(e.attributes for e in span.events),
            *(link.attributes for link in span.links),
        ):
            texts.append(json.dumps(attrs, default=str))
    for request in receiver.requests("metrics"):
        for rm in request.message.resource_metrics:
            texts.append(json.dumps(attributes(rm.resource.attributes), default=str))
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    for point in getattr(metric, kind).data_points if kind else []:
                        texts.append(json.dumps(attributes(point.attributes), default=str))
    return texts


def _leaks(texts: list[str], *secrets: str) -> list[str]:
    return [t[:200] for t in texts if any(s in t for s in secrets)]


@pytest.mark.parametrize("capture", ["off", "on"])
def test_canaries_never_leave_the_process(
    capture: str, otlp_http_receiver: OtlpHttpReceiver, figures: Figures
) -> None:
    with faults.HttpFaultServer(status=503) as metrics_sink, faults.HttpFaultServer(
        status=200
    ) as gateway:
        body = _CHILD.replace("sys.argv[1]", repr(otlp_http_receiver.endpoint))
        body = body.replace("sys.argv[2]", repr(metrics_sink.endpoint))
        body = body.replace("sys.argv[3]", repr(gateway.endpoint))
        body = body.replace('sys.argv[4] == "on"', repr(capture == "on"))
        result = jobs.run(body, timeout=180)
        pushes = [r.body.decode("utf-8", "replace") for r in gateway.requests()]
        # The refused metrics export sends the same bytes to the 503 server: search them too.
        sent = [r.body.decode("latin-1") for r in metrics_sink.requests()]
    otlp = _otlp_texts(otlp_http_receiver)
    logs = [f"{r['logger']}: {r['text']}" for r in result["logs"]]
    outputs = {
        "otlp": otlp,
        "prometheus": [result["scrape"]],
        "pushgateway": pushes,
        "otlp-bytes": sent,
        "logs": logs,
    }
    leaks = {name: _leaks(texts, KEY, EMAIL) for name, texts in outputs.items()}
    redacted = any("[REDACTED_EMAIL]" in t for t in otlp)
    chat_spans = [s for s in otlp_http_receiver.spans() if s.name.startswith("chat ")]
    figures.record(
        f"canary API key and e-mail in spec, template, data, errors (content capture {capture})",
        "prompts absent" if capture == "off" else "prompts with [REDACTED_EMAIL]/[REDACTED_KEY]",
        "neither canary in any span, event, label, Pushgateway body or log line",
        f"searched {sum(len(v) for v in outputs.values())} outputs "
        f"({len(chat_spans)} chat spans, {len(pushes)} pushes, {len(logs)} log lines): "
        f"{sum(len(v) for v in leaks.values())} leaks",
    )
    assert chat_spans and pushes and logs, (len(chat_spans), len(pushes), len(logs))
    assert all(not found for found in leaks.values()), leaks
    if capture == "on":
        assert redacted, "content capture on: the prompts are recorded with the e-mail redacted"
    else:
        assert not any("Classify the sentiment" in t for t in otlp), "capture off: no prompts"


def test_a_failed_run_records_the_provider_error_redacted(
    otlp_http_receiver: OtlpHttpReceiver, figures: Figures
) -> None:
    # The error policy "fail": the provider's message (key and e-mail) ends the run, so it is
    # recorded on the LLMInvocation stage span and the run span, not only on a chat span.
    body = _CHILD.replace('.with_error_policy("skip")', '.with_error_policy("fail")')
    body = body.replace(
        "pipeline.execute()\n",
        "try:\n    pipeline.execute()\nexcept Exception:\n    pass\n",
    )
    with faults.HttpFaultServer(status=200) as sink, faults.HttpFaultServer(status=200) as gw:
        body = body.replace("sys.argv[1]", repr(otlp_http_receiver.endpoint))
        body = body.replace("sys.argv[2]", repr(sink.endpoint))
        body = body.replace("sys.argv[3]", repr(gw.endpoint))
        body = body.replace('sys.argv[4] == "on"', "False")
        jobs.run(body, timeout=180)
    spans = otlp_http_receiver.spans()
    failed = [s for s in spans if s.status_message and not s.name.startswith("chat ")]
    leaks = _leaks(_otlp_texts(otlp_http_receiver), KEY, EMAIL)
    figures.record(
        "canary API key and e-mail in a provider error that fails the run",
        "the run and stage spans ERROR with the message, key and e-mail redacted",
        "neither canary in any span's status or exception event (message and stack trace)",
        f"{len(failed)} failed run/stage spans: {[s.name for s in failed]}; {len(leaks)} leaks",
    )
    stage = f"{semconv.SPAN_STAGE_PREFIX} LLMInvocation"
    assert {semconv.SPAN_RUN, stage} <= {s.name for s in failed}
    assert all("[REDACTED_KEY]" in s.status_message for s in failed), failed
    events = [e for s in failed for e in s.events if e.name == "exception"]
    assert events and all(
        "[REDACTED_EMAIL]" in e.attributes["exception.stacktrace"] for e in events
    ), events
    assert not leaks, leaks


@pytest.mark.parametrize("fault", ["refused", "hanging", "unavailable"])
def test_check_never_prints_a_header_value_or_a_password(
    fault: str, figures: Figures
) -> None:
    with _endpoint(fault) as endpoint:
        env = jobs.child_env(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer%20{KEY},x-user={EMAIL}",
                "OTEL_EXPORTER_OTLP_TIMEOUT": "1000",
                "ONDINE_OTEL_PUSHGATEWAY_URL": endpoint,
                "ONDINE_OTEL_PUSHGATEWAY_USERNAME": "canary",
                "ONDINE_OTEL_PUSHGATEWAY_PASSWORD": PASSWORD,
            }
        )
        done = subprocess.run(
            [sys.executable, "-c", "import sys; from ondine_otel.cli.main import main; "
             "sys.exit(main(['check']))"],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    out = done.stdout + done.stderr
    found = [s for s in (KEY, EMAIL, PASSWORD, "Bearer") if s in out]
    figures.record(
        f"`ondine-otel check` against a {fault} collector and Pushgateway, secrets configured",
        "FAIL lines naming the target and the fix",
        "no header value or password printed",
        f"exit {done.returncode}, {len(out.splitlines())} lines, "
        f"secrets printed: {found or 'none'}",
    )
    assert done.returncode == 1, out  # the targets are down: check must say so
    assert "FAIL" in out
    assert found == [], out


def _endpoint(fault: str) -> Any:
    import contextlib

    @contextlib.contextmanager
    def serve() -> Any:
        if fault == "refused":
            with faults.refusing_port() as port:
                yield f"http://127.0.0.1:{port}"
        elif fault == "hanging":
            with faults.HangingServer() as hanging:
                yield hanging.endpoint
        else:
            with faults.HttpFaultServer(503) as failing:
                yield failing.endpoint

    return serve()


_TLS_CHILD = """
import ondine_otel
handle = ondine_otel.instrument(otlp_endpoint=sys.argv[1], otlp_protocol=sys.argv[2],
                                otlp_certificate=sys.argv[3], otlp_timeout=2000,
                                traces_exporter="otlp", metrics_exporter="none")
result = build_demo_pipeline(load_reviews(10), checkpoint_dir=tempfile.mkdtemp()).execute()
handle.shutdown(timeout=5)
report(rows=len(frame_of(result)["sentiment"]), logs=LOG_RECORDS)
"""


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    directory: Path = tmp_path_factory.mktemp("tls")
    return (
        faults.self_signed_certificate(directory, "collector"),
        faults.self_signed_certificate(directory, "impostor"),
    )


def _tls_export(
    protocol: str, served: Any, trusted: Any, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], int]:
    """(run spans received, child report, rejected handshakes) for one TLS export."""
    receiver_type = OtlpGrpcReceiver if protocol == "grpc" else OtlpHttpReceiver
    with receiver_type() as receiver, faults.TlsTerminator(served, receiver.port) as tls:
        body = _TLS_CHILD.replace(
            "sys.argv[1], otlp_protocol=sys.argv[2],\n                                "
            "otlp_certificate=sys.argv[3]",
            f"{tls.endpoint!r}, otlp_protocol={protocol!r}, otlp_certificate={str(trusted.cert)!r}",
        )
        result = jobs.run(body, env=env, timeout=120)
        runs = len([s for s in receiver.spans() if s.name == semconv.SPAN_RUN])
        return runs, result, tls.handshake_failures


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_otlp_over_tls_works_with_the_right_ca_and_fails_clearly_otherwise(
    protocol: str, certificates: tuple[Any, Any], figures: Figures
) -> None:
    right, wrong = certificates
    outcomes = {
        name: _tls_export(protocol, right, trusted)
        for name, trusted in (("right", right), ("wrong", wrong))
    }
    good_runs, good, _ = outcomes["right"]
    bad_runs, bad, rejected = outcomes["wrong"]
    clear = [
        r["text"][:300]
        for r in bad["logs"]
        if any(w in r["text"].lower() for w in ("certificate", "ssl", "handshake", "tls"))
    ]
    figures.record(
        f"OTLP over TLS ({protocol}), self-signed collector certificate",
        "right CA: spans arrive; wrong CA: a log line naming the certificate problem",
        "encrypted export with the configured CA; a wrong CA fails the export, never the job",
        f"right CA: {good_runs} run span received; wrong CA: {bad_runs} received, "
        f"{rejected} handshakes rejected, {len(bad['logs'])} log lines "
        f"({len(clear)} naming the certificate)",
    )
    assert good_runs == 1 and good["rows"] == 10
    assert bad["rows"] == 10  # the job is unaffected
    assert bad_runs == 0 and rejected >= 1
    assert clear, [r["text"][:200] for r in bad["logs"]]


def test_the_configured_ca_wins_over_a_ca_bundle_in_the_environment(
    certificates: tuple[Any, Any], figures: Figures
) -> None:
    """Containers and corporate images often set REQUESTS_CA_BUNDLE to the system bundle."""
    right, other = certificates
    bundle = str(other.cert)  # some other CA bundle, as such images have
    runs, result, rejected = _tls_export(
        "http/protobuf", right, right, env={"REQUESTS_CA_BUNDLE": bundle, "CURL_CA_BUNDLE": bundle}
    )
    figures.record(
        "OTLP over TLS (http/protobuf) with otlp_certificate set and REQUESTS_CA_BUNDLE set",
        "spans arrive, verified against the configured CA",
        "the configured CA is used, whatever CA bundle the environment names",
        f"{runs} run span received, {rejected} handshakes rejected",
    )
    assert runs == 1 and rejected == 0, [r["text"][:200] for r in result["logs"]]
