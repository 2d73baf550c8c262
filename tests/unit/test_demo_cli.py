"""`ondine-otel demo` and `--version`, run in-process through main()."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import re
import socket
import threading
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest
from ondine.core.models import CostEstimate

from ondine_otel.cli.main import main
from ondine_otel.demo import build_demo_pipeline, load_reviews
from ondine_otel.export.providers import PrometheusEndpoint
from ondine_otel.telemetry import semconv
from ondine_otel.version import __version__


@pytest.fixture(autouse=True)
def _no_otlp_export(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo must work offline: no exporter configured from the environment."""
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"ondine-otel {__version__}"


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args", [["--rows", "0"], ["--failure-rate", "1.5"], ["--latency-ms", "-1"]]
)
def test_bad_demo_arguments_are_usage_errors(args: list[str]) -> None:
    assert main(["demo", *args]) == 2


def test_demo_prints_summary_and_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "demo",
            "--rows",
            "40",
            "--latency-ms",
            "1",
            "--failure-rate",
            "0.2",
            "--checkpoint-dir",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    first = _header(out)  # the line after the Prometheus URL, printed before the run
    assert first.startswith("ondine-otel demo: 40 rows (")
    assert "skipped" in first and "cost $0.0" in first
    assert "(0 skipped" not in first  # 20% failures must show up as skipped rows
    assert "sentiment: " in out
    assert semconv.SPAN_RUN in out
    assert f"{semconv.SPAN_STAGE_PREFIX} LLMInvocation" in out


# --- metrics: the Prometheus endpoint during the run and the summary after it --------------


def _header(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("ondine-otel demo"))


def _demo_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "demo",
        "--rows",
        "40",
        "--latency-ms",
        "0",
        "--failure-rate",
        "0.2",
        "--checkpoint-dir",
        str(tmp_path / "demo"),
        "--metrics-port",
        "0",
        *extra,
    ]


def _uninstrumented_costs(tmp_path: Path) -> CostEstimate:
    """What ondine itself reports for the demo's run: same rows, same deterministic failures."""
    pipeline = build_demo_pipeline(
        load_reviews(40), checkpoint_dir=tmp_path / "reference", failure_rate=0.2
    )
    return pipeline.execute().costs


def _summary_value(out: str, label: str) -> str:
    found = re.search(rf"^\s*{re.escape(label)}\s+(\S+)", out, re.MULTILINE)
    assert found, f"{label!r} missing from the metrics summary:\n{out}"
    return found.group(1)


def test_demo_prints_metrics_summary_with_ondines_spend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = _uninstrumented_costs(tmp_path)
    capsys.readouterr()  # ondine's own output from the reference run

    assert main(_demo_args(tmp_path)) == 0
    out = capsys.readouterr().out

    assert f"cost ${expected.total_cost:.6f}" in _header(out)
    assert "Metrics summary" in out
    assert out.index("Metrics summary") > out.index(semconv.SPAN_RUN)  # after the trace
    spend = _summary_value(out, "spend · gpt-4o-mini")
    assert Decimal(spend.removeprefix("$")) == expected.total_cost
    assert _summary_value(out, "tokens · input") == f"{expected.input_tokens:,}"
    assert _summary_value(out, "tokens · output") == f"{expected.output_tokens:,}"
    assert _summary_value(out, "rows processed") == "40"
    assert _summary_value(out, "rows skipped") != "0"
    assert _summary_value(out, "runs · success") == "1"
    # Every call is counted, failed ones too (1 output token per successful answer).
    calls = re.search(r"^\s*LLM calls\s+([\d,]+) \(([\d,]+) failed\)", out, re.MULTILINE)
    assert calls, out
    succeeded, failed = int(calls[1].replace(",", "")), int(calls[2].replace(",", ""))
    assert failed > 0
    assert succeeded - failed == expected.output_tokens
    assert _summary_value(out, "throughput").replace(",", "").isdigit()


def _scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
            return str(reply.read().decode())
    except OSError:
        return None


def _series_value(exposition: str, name: str) -> float | None:
    found = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", exposition, re.MULTILINE)
    return float(found.group(1)) if found else None


def test_demo_serves_prometheus_metrics_then_frees_the_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bound: list[int] = []
    serving = threading.Event()
    serve = PrometheusEndpoint.serve

    def recording_serve(self: PrometheusEndpoint, host: str, port: int) -> int:
        bound.append(serve(self, host, port))
        serving.set()
        return bound[-1]

    monkeypatch.setattr(PrometheusEndpoint, "serve", recording_serve)
    scrapes: list[str] = []

    def scraper() -> None:
        """Scrape from the start until a scrape shows the finished run (or the window ends)."""
        if not serving.wait(timeout=30):
            return
        while True:
            text = _scrape(bound[0])
            if text is None:
                if scrapes:
                    return  # the endpoint closed
                time.sleep(0.02)
                continue
            scrapes.append(text)
            if _series_value(text, "ondine_run_duration_seconds_count") is not None:
                return
            time.sleep(0.02)

    thread = threading.Thread(target=scraper, daemon=True)
    thread.start()
    code = main(_demo_args(tmp_path, "--keep-serving", "1.5"))
    thread.join(timeout=10)
    out = capsys.readouterr().out

    assert code == 0, out
    assert len(bound) == 1 and bound[0] != 0
    url = f"http://127.0.0.1:{bound[0]}/metrics"
    assert f"Prometheus metrics: {url}" in out
    assert out.index("Prometheus metrics:") < out.index("ondine-otel demo:")  # before the run
    assert f"serving {url} for 1.5 s more" in out
    assert scrapes, "nothing could be scraped while the demo ran"
    final = scrapes[-1]
    for name in (
        "ondine_cost_usd_total",
        "ondine_tokens_total",
        "ondine_rows_skipped_total",
        "ondine_runs_total",
        "ondine_run_duration_seconds_sum",
        "gen_ai_client_operation_duration_seconds_count",
    ):
        assert name in final, name
    spend = Decimal(_summary_value(out, "spend · gpt-4o-mini").removeprefix("$"))
    assert _series_value(final, "ondine_cost_usd_total") == pytest.approx(float(spend))
    assert _series_value(final, "ondine_rows_processed_total") == 40
    with pytest.raises(OSError):  # the endpoint was shut down with the demo
        socket.create_connection(("127.0.0.1", bound[0]), timeout=1).close()


def test_demo_falls_back_to_a_free_port_when_busy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = _demo_args(tmp_path)
        args[args.index("--metrics-port") + 1] = str(port)
        code = main(args)
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"port {port} is busy" in out
    served = re.search(r"Prometheus metrics: http://127\.0\.0\.1:(\d+)/metrics", out)
    assert served and int(served.group(1)) not in (0, port)


@pytest.mark.parametrize("args", [["--metrics-port", "70000"], ["--keep-serving", "-1"]])
def test_bad_metrics_arguments_are_usage_errors(args: list[str]) -> None:
    assert main(["demo", *args]) == 2


def test_demo_output_reads_well_when_piped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Captured like a pipe (no terminal): the URL says how long it lives, a dropped-span count
    is explained with the settings behind it, and no metrics row is folded across lines."""
    monkeypatch.setenv("ONDINE_OTEL_LLM_SPAN_LIMIT", "5")
    monkeypatch.setenv("ONDINE_OTEL_LLM_SPAN_RATE", "0")
    args = _demo_args(tmp_path)
    args[args.index("--failure-rate") + 1] = "0"
    assert main(args) == 0
    out = capsys.readouterr().out
    text = " ".join(out.split())

    assert "(only while the demo runs: add --keep-serving SECONDS to curl it afterwards)" in text
    assert "closes now, with the demo; `ondine-otel demo --keep-serving 60` keeps it up" in text
    # 40 calls, no failures, the first 5 traced, no rate: 35 without a span of their own.
    assert (
        f"{semconv.ATTR_LLM_SPANS_DROPPED}=35: that many LLM calls got no chat span of their "
        "own. A run traces its first 5 calls (ONDINE_OTEL_LLM_SPAN_LIMIT), then failed calls "
        "and 0 a second (ONDINE_OTEL_LLM_SPAN_RATE)"
    ) in text
    series = "gen_ai_client_operation_duration_seconds"
    rows = [line for line in out.splitlines() if series[:20] in line]
    assert len(rows) >= 2 and all(series in line for line in rows), rows
    table = out[out.index("Metrics summary") :].splitlines()
    rule = next(i for i, line in enumerate(table) if "─" in line)
    body = table[rule + 1 : next(i for i in range(rule + 1, len(table)) if not table[i].strip())]
    assert len(body) >= 8
    assert all(
        len(line.split("   ")) >= 2 and line.split()[-1].startswith(("ondine", "gen_ai"))
        for line in body
    ), body  # every row whole: label, value, series on one line


def test_demo_without_dropped_spans_explains_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_demo_args(tmp_path)) == 0  # 40 calls: all within the default first 100
    out = capsys.readouterr().out
    assert "got no chat span of their own" not in out
