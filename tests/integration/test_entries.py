"""Issue "One-call setup": every entry works, agrees with the others, and respects the app.

OpenTelemetry's global providers can be set only once per process, so each scenario runs in a
fresh interpreter (as a user's job would) and reports what it saw as JSON on its last line.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.support.otlp_receiver import OtlpHttpReceiver
from tests.support.wait import free_port

pytestmark = pytest.mark.integration

_PRELUDE = """
import json, os, sys, tempfile, threading
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from ondine_otel.demo.data import load_reviews
from ondine_otel.demo.pipeline import build_demo_pipeline

def app_providers():
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    return exporter, reader, tracer_provider, meter_provider

def metric_names(reader):
    data = reader.get_metrics_data()
    if data is None:
        return []
    return sorted({m.name for rm in data.resource_metrics for sm in rm.scope_metrics
                   for m in sm.metrics})

def span_names(exporter):
    return sorted({s.name for s in exporter.get_finished_spans()})

def observed_pipeline(config, rows=8):
    # The demo pipeline built by hand, with ondine's with_observer("otel", config).
    from ondine import PipelineBuilder
    from ondine_otel.demo.client import OfflineLLMClient
    from ondine_otel.demo.pipeline import PROMPT
    return (
        PipelineBuilder.create()
        .from_dataframe(load_reviews(rows), input_columns=["review"],
                        output_columns=["sentiment"])
        .with_prompt(PROMPT)
        .with_llm(provider="openai", model="gpt-4o-mini", api_key="sk-offline")
        .with_custom_llm_client(OfflineLLMClient())
        .with_checkpoint_dir(tempfile.mkdtemp())
        .with_observer("otel", config)
        .build()
    )

def report(**values):
    sys.stdout.flush()
    print("RESULT " + json.dumps(values), flush=True)
"""


def _run(body: str, *, env: dict[str, str] | None = None, timeout: float = 120) -> dict[str, Any]:
    """Run a job script in a fresh interpreter; return its RESULT dict."""
    script = _PRELUDE + textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    assert done.returncode == 0 and lines, (done.stdout[-2000:], done.stderr[-4000:])
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    return result


def test_app_provider_is_used_as_is_and_never_replaced() -> None:
    result = _run(
        """
        exporter, reader, tracer_provider, meter_provider = app_providers()
        processors_before = len(tracer_provider._active_span_processor._span_processors)
        import ondine_otel
        handle = ondine_otel.instrument(otlp_endpoint="http://127.0.0.1:9")
        build_demo_pipeline(load_reviews(5), checkpoint_dir=tempfile.mkdtemp()).execute()
        handle.shutdown(timeout=2)
        report(
            same_tracer=trace.get_tracer_provider() is tracer_provider,
            same_meter=metrics.get_meter_provider() is meter_provider,
            processors_added=len(tracer_provider._active_span_processor._span_processors)
            - processors_before,
            spans=span_names(exporter),
            metrics=metric_names(reader),
        )
        """
    )
    assert result["same_tracer"] and result["same_meter"]
    assert result["processors_added"] == 0  # no exporter of ours on the app's provider
    assert "ondine.pipeline" in result["spans"]
    assert "ondine.stage LLMInvocation" in result["spans"]
    assert "ondine.cost.usd" in result["metrics"]


def test_every_entry_gives_the_same_span_and_metric_names() -> None:
    entries = {
        "instrument": """
            import ondine_otel
            ondine_otel.instrument()
            pipeline = build_demo_pipeline(load_reviews(8), checkpoint_dir=tempfile.mkdtemp())
        """,
        "with_observer": """
            import ondine_otel
            pipeline = observed_pipeline({"pipeline_name": "ondine"})
        """,
        "add_observer": """
            from ondine_otel import OtelObserver
            pipeline = build_demo_pipeline(load_reviews(8), checkpoint_dir=tempfile.mkdtemp())
            pipeline.add_observer(OtelObserver())
        """,
    }
    seen: dict[str, dict[str, Any]] = {}
    for name, setup in entries.items():
        seen[name] = _run(
            "exporter, reader, *_ = app_providers()\n"
            + textwrap.dedent(setup)
            + "\npipeline.execute()\n"
            + "report(spans=span_names(exporter), metrics=metric_names(reader))\n"
        )
    reference = seen["instrument"]
    assert {"ondine.pipeline", "ondine.stage LLMInvocation", "chat gpt-4o-mini"} <= set(
        reference["spans"]
    )
    assert {"ondine.cost.usd", "gen_ai.client.operation.duration"} <= set(reference["metrics"])
    assert seen["with_observer"] == reference
    assert seen["add_observer"] == reference


def test_zero_code_instrumentation_traces_a_plain_job(tmp_path: Path) -> None:
    job = tmp_path / "job.py"
    job.write_text(
        textwrap.dedent(
            """
            import tempfile
            from ondine_otel.demo.data import load_reviews
            from ondine_otel.demo.pipeline import build_demo_pipeline

            build_demo_pipeline(load_reviews(6), checkpoint_dir=tempfile.mkdtemp()).execute()
            """
        )
    )
    launcher = Path(sys.executable).with_name("opentelemetry-instrument")
    assert launcher.exists(), "opentelemetry-instrument comes with opentelemetry-instrumentation"
    with OtlpHttpReceiver() as receiver:
        env = receiver.job_env(OTEL_SERVICE_NAME="nightly-job")
        done = subprocess.run(
            [str(launcher), sys.executable, str(job)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        spans = receiver.wait_for_spans(
            lambda found: any(s.name == "ondine.pipeline" for s in found), timeout=10
        )
    run = next(s for s in spans if s.name == "ondine.pipeline")
    stages = [s for s in spans if s.parent_span_id == run.span_id]
    assert {s.name for s in stages} >= {"ondine.stage DataLoader", "ondine.stage LLMInvocation"}
    assert run.resource.get("service.name") == "nightly-job"


def test_sdk_disabled_makes_every_entry_a_no_op() -> None:
    result = _run(
        """
        exporter, reader, *_ = app_providers()
        import ondine_otel
        from ondine_otel import OtelObserver
        handle = ondine_otel.instrument()
        pipeline = build_demo_pipeline(load_reviews(4), checkpoint_dir=tempfile.mkdtemp())
        pipeline.add_observer(OtelObserver())
        pipeline.execute()
        report(enabled=handle.enabled, spans=span_names(exporter), metrics=metric_names(reader))
        """,
        env={"OTEL_SDK_DISABLED": "true"},
    )
    assert result == {"enabled": False, "spans": [], "metrics": []}


def test_an_observer_with_no_provider_set_up_says_so_once() -> None:
    """`add_observer(OtelObserver())` in a process that set nothing up would export nothing:
    one warning says which providers are missing and what to do; set up, it is silent."""
    result = _run(
        """
        import logging
        import ondine_otel
        from ondine_otel import OtelObserver
        records = []
        class Keep(logging.Handler):
            def emit(self, record):
                records.append(record.getMessage())
        logging.getLogger("ondine_otel").addHandler(Keep())
        for _ in range(2):
            pipeline = build_demo_pipeline(load_reviews(3), checkpoint_dir=tempfile.mkdtemp())
            pipeline.add_observer(OtelObserver())
            pipeline.execute()
        bare = [r for r in records if "no OpenTelemetry SDK" in r]
        records.clear()
        exporter, reader, *_ = app_providers()
        pipeline = build_demo_pipeline(load_reviews(3), checkpoint_dir=tempfile.mkdtemp())
        pipeline.add_observer(OtelObserver())
        pipeline.execute()
        report(bare=bare, set_up=[r for r in records if "no OpenTelemetry SDK" in r],
               spans=len(exporter.get_finished_spans()))
        """
    )
    (warning,) = result["bare"]
    assert "TracerProvider or MeterProvider" in warning and "instrument()" in warning
    assert result["set_up"] == [] and result["spans"] > 0


def test_instrument_twice_serves_one_endpoint_and_frees_the_port() -> None:
    port = free_port()
    result = _run(
        f"""
        import socket, urllib.request
        import ondine_otel
        first = ondine_otel.instrument(prometheus_port={port}, prometheus_host="127.0.0.1")
        second = ondine_otel.instrument(prometheus_port={port}, prometheus_host="127.0.0.1")
        build_demo_pipeline(load_reviews(4), checkpoint_dir=tempfile.mkdtemp()).execute()
        body = urllib.request.urlopen("http://127.0.0.1:{port}/metrics", timeout=5).read()
        first.shutdown(timeout=2)
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
            refused = False
        except ConnectionRefusedError:
            refused = True
        probe = socket.socket()  # bindable again by a server (TIME_WAIT aside, as servers do)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", {port}))
        probe.listen()
        probe.close()
        report(same=first is second, served=b"ondine_runs_total" in body, refused=refused)
        """
    )
    assert result == {"same": True, "served": True, "refused": True}


def test_shutdown_with_an_unreachable_collector_returns_within_its_timeout() -> None:
    dead = free_port()
    result = _run(
        f"""
        import time
        import ondine_otel
        handle = ondine_otel.instrument(
            otlp_endpoint="http://127.0.0.1:{dead}", metrics_exporter="otlp"
        )
        build_demo_pipeline(load_reviews(20), checkpoint_dir=tempfile.mkdtemp()).execute()
        started = time.monotonic()
        handle.shutdown(timeout=2)
        report(seconds=time.monotonic() - started)
        """
    )
    # The 2 s budget plus interpreter overhead, never the 10 s export timeout.
    assert result["seconds"] < 4, result


def test_different_settings_need_an_explicit_reconfigure() -> None:
    result = _run(
        """
        import ondine_otel
        first = ondine_otel.instrument(pipeline_name="a")
        try:
            ondine_otel.instrument(pipeline_name="b")
            refused = None
        except ondine_otel.ConfigError as error:
            refused = str(error)
        second = ondine_otel.instrument(pipeline_name="b", reconfigure=True)
        report(refused=refused, replaced=second is not first,
               name=second.config.pipeline_name)
        second.shutdown(timeout=1)
        """
    )
    assert result["refused"] and "reconfigure=True" in result["refused"]
    assert result["replaced"] and result["name"] == "b"


@pytest.mark.parametrize(
    ("settings", "setting_name"),
    [
        ({"otlp_protocol": "carrier-pigeon"}, "otlp_protocol"),
        ({"otlp_endpoint": "localhost:4318"}, "otlp_endpoint"),
        ({"prometheus_port": 70000}, "prometheus_port"),
        ({"traces_sampler": "traceidratio", "traces_sampler_arg": "half"}, "traces_sampler_arg"),
        ({"traces_sampler": "traceidratio", "traces_sampler_arg": 1.5}, "traces_sampler_arg"),
        ({"push_interval": "soon"}, "push_interval"),
    ],
)
def test_bad_settings_fail_fast_and_leave_nothing_behind(
    settings: dict[str, Any], setting_name: str
) -> None:
    port = free_port()
    result = _run(
        f"""
        import threading
        import ondine_otel
        before = threading.active_count()
        try:
            ondine_otel.instrument(prometheus_host="127.0.0.1", **{settings!r},
                                   **({{}} if "prometheus_port" in {settings!r}
                                      else {{"prometheus_port": {port}}}))
            error = None
        except ondine_otel.ConfigError as raised:
            error = str(raised)
        from ondine_otel.runtime import runtime
        report(error=error, threads=threading.active_count() - before,
               wrapped=runtime.get().auto_observer() is not None,
               tracer=type(trace.get_tracer_provider()).__name__)
        """
    )
    assert result["error"] is not None and setting_name in result["error"]
    assert result["threads"] == 0
    assert result["wrapped"] is False
    assert result["tracer"] == "ProxyTracerProvider"  # nothing was installed
    with socket.socket() as probe:  # and no server holds the port
        probe.bind(("127.0.0.1", port))


@pytest.mark.parametrize("entry", ["instrument", "with_observer"])
def test_a_busy_prometheus_port_never_stops_the_job(entry: str) -> None:
    """One policy under every entry: the job and the rest of the telemetry run; one warning
    names the port, the setting and the fix."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        start = (
            f"handle = ondine_otel.instrument(prometheus_port={port}, "
            "prometheus_host='127.0.0.1', traces_exporter='console'); "
            "build_demo_pipeline(load_reviews(4), checkpoint_dir=tempfile.mkdtemp()).execute()"
            if entry == "instrument"
            else f"observed_pipeline({{'prometheus_port': {port}, "
            "'prometheus_host': '127.0.0.1', 'traces_exporter': 'console'}).execute(); "
            "handle = ondine_otel.entries.instrument.current()"
        )
        result = _run(
            f"""
            import logging
            import ondine_otel
            records = []
            class Keep(logging.Handler):
                def emit(self, record):
                    records.append(record.getMessage())
            logging.getLogger("ondine_otel").addHandler(Keep())
            {start}
            report(warnings=[r for r in records if "Prometheus" in r],
                   served=handle.prometheus_port, enabled=handle.enabled,
                   tracer=type(trace.get_tracer_provider()).__name__)
            """
        )
    assert result["served"] is None and result["enabled"] is True
    assert result["tracer"] == "TracerProvider"  # traces still exported (console)
    (warning,) = result["warnings"]
    assert str(port) in warning and "OTEL_EXPORTER_PROMETHEUS_PORT" in warning


def test_with_observer_pipelines_keep_their_own_names_in_one_process() -> None:
    port = free_port()
    result = _run(
        f"""
        import urllib.request
        import ondine_otel
        from prometheus_client.parser import text_string_to_metric_families

        def build(name):
            return observed_pipeline({{"pipeline_name": name, "prometheus_port": {port},
                                      "prometheus_host": "127.0.0.1",
                                      "traces_exporter": "none"}}, rows=3)

        a, b = build("alpha"), build("beta")
        for pipeline in (a, b, a, b, a):
            pipeline.execute()
        body = urllib.request.urlopen("http://127.0.0.1:{port}/metrics", timeout=5).read()
        runs = {{}}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name == "ondine_runs_total" and sample.labels["status"] == "success":
                    runs[sample.labels["pipeline"]] = sample.value
        report(runs=runs)
        """
    )
    assert result["runs"] == {"alpha": 3.0, "beta": 2.0}


def test_a_bad_with_observer_setting_fails_while_built_or_leaves_the_job_untouched() -> None:
    """The dict is checked where it is made (`to_dict()`); a hand-written bad one makes
    ondine skip the observer, never the job. ondine's `with_observer` is wrapped (so that
    naming "otel" applies the runtime's wrappers before the first call), but it checks
    nothing and calls ondine's own method."""
    result = _run(
        """
        import ondine_otel
        from ondine.api.pipeline_builder import PipelineBuilder
        exporter, reader, tracer_provider, meter_provider = app_providers()
        try:
            ondine_otel.TelemetryConfig(push_interval="often").to_dict()
            built = None
        except ondine_otel.ConfigError as raised:
            built = str(raised)
        method = vars(PipelineBuilder)["with_observer"]
        ondines = getattr(method, "__wrapped__", method)
        with_observer_untouched = ondines.__module__ == "ondine.api.pipeline_builder"
        done = observed_pipeline({"push_interval": "often"}, rows=3).execute()
        report(built=built, rows=int(done.metrics.processed_rows),
               spans=span_names(exporter), untouched=with_observer_untouched)
        """
    )
    assert result["built"] and "push_interval" in result["built"] and "often" in result["built"]
    assert result["rows"] == 3  # the job ran as if the observer were not there
    assert result["spans"] == []
    assert result["untouched"]


def test_concurrent_instrument_calls_build_one_set_up() -> None:
    result = _run(
        """
        import threading
        import ondine_otel
        from ondine_otel.entries.instrument import current
        from ondine_otel.runtime import runtime
        barrier = threading.Barrier(2)
        handles, errors = [], []

        def call(name):
            barrier.wait()
            try:
                handles.append(ondine_otel.instrument(pipeline_name=name))
            except ondine_otel.ConfigError as error:
                errors.append(str(error))

        threads = [threading.Thread(target=call, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winner = handles[0]
        report(handles=len(handles), errors=len(errors),
               current=current() is winner,
               observer=runtime.get().auto_observer() is not None
               and runtime.get().auto_observer().pipeline_name == winner.config.pipeline_name)
        """
    )
    assert result == {"handles": 1, "errors": 1, "current": True, "observer": True}


def test_with_observer_disabled_setting_turns_that_entry_off() -> None:
    result = _run(
        """
        exporter, reader, *_ = app_providers()
        import ondine_otel
        observed_pipeline({"disabled": True}, rows=3).execute()
        report(spans=span_names(exporter))
        """
    )
    assert result == {"spans": []}


def test_ondines_cli_is_wrapped_once_imported_and_never_imported_for_a_job() -> None:
    """ondine's CLI (click, yaml: 35 modules) is wrapped when something imports it; a job
    that only instruments does not pay for importing it, and shutdown unwraps it either way."""
    result = _run(
        """
        import ondine_otel

        def wrapped():
            from ondine.cli import main as cli
            return [hasattr(c.callback, "__wrapped__") for c in (cli.status, cli.collect)]

        first = ondine_otel.instrument(traces_exporter="none", metrics_exporter="none")
        imported_by_instrument = "ondine.cli.main" in sys.modules
        after_import = wrapped()  # imported now, after instrument()
        first.shutdown()
        after_shutdown = wrapped()
        second = ondine_otel.instrument(traces_exporter="none", metrics_exporter="none")
        again = wrapped()  # already imported: wrapped at once
        second.shutdown()
        report(imported_by_instrument=imported_by_instrument, after_import=after_import,
               after_shutdown=after_shutdown, again=again, at_end=wrapped())
        """
    )
    assert result == {
        "imported_by_instrument": False,
        "after_import": [True, True],
        "after_shutdown": [False, False],
        "again": [True, True],
        "at_end": [False, False],
    }


def test_a_cli_imported_after_shutdown_is_left_alone() -> None:
    result = _run(
        """
        import ondine_otel
        ondine_otel.instrument(traces_exporter="none", metrics_exporter="none").shutdown()
        from ondine.cli import main as cli
        report(wrapped=[hasattr(c.callback, "__wrapped__") for c in (cli.status, cli.collect)])
        """
    )
    assert result == {"wrapped": [False, False]}
