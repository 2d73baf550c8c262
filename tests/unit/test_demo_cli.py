"""`ondine-otel demo` and `--version`, run in-process through main()."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from pathlib import Path

import pytest

from ondine_otel import semconv
from ondine_otel.cli import main
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
    first = out.splitlines()[0]
    assert first.startswith("ondine-otel demo: 40 rows (")
    assert "skipped" in first and "cost $0.0" in first
    assert "(0 skipped" not in first  # 20% failures must show up as skipped rows
    assert "sentiment: " in out
    assert semconv.SPAN_RUN in out
    assert f"{semconv.SPAN_STAGE_PREFIX} LLMInvocation" in out
