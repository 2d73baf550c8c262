"""`benchmarks.overhead` still runs end to end (tiny sizes; no timing is asserted)."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import json
from pathlib import Path

import pytest

from benchmarks import overhead

_TINY = ["--rows", "20", "--repeats", "1", "--memory-repeats", "1", "--warmup", "0"]


def test_writes_a_complete_results_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "results" / "latest.json"
    assert overhead.main([*_TINY, "--output", str(output)]) == 0

    doc = json.loads(output.read_text())
    assert doc["machine"]["cpu_count"] == os.cpu_count()
    assert list(doc["scenarios"]) == ["instant", "latency_5ms"]
    instant, latency = doc["scenarios"]["instant"], doc["scenarios"]["latency_5ms"]
    assert instant["targets"] == {"time_ratio": 1.50, "memory_ratio": 1.25, "per_call_us": 60.0}
    assert latency["targets"] == {"time_ratio": 1.05, "memory_ratio": 1.25}
    assert instant["config"]["llm_latency_s"] == 0
    assert latency["config"]["llm_latency_s"] == 0.005
    for name, scenario in doc["scenarios"].items():
        assert scenario["config"]["rows"] == 20, name
        assert scenario["total_cost_usd"] is not None  # every run agreed on ondine's cost
        assert list(scenario["variants"]) == [v.name for v in overhead.VARIANTS]
        for variant, result in scenario["variants"].items():
            assert len(result["wall_s"]) == 1, (name, variant)
            assert result["median_s"] > 0 and result["rows_per_s"] > 0
            assert result["median_peak_memory_bytes"] > 0
            assert result["time_ratio"] is not None and result["memory_ratio"] is not None
            assert result["per_call_overhead_us"] is not None
        assert scenario["variants"]["bare"]["time_ratio"] == 1.0
        assert scenario["variants"]["bare"]["within_targets"] is None
        assert scenario["variants"]["instrumented"]["within_targets"] in (True, False)
        assert scenario["variants"]["instrumented"]["scrape_failures"] == 0
    out = capsys.readouterr().out
    assert "instrumented_no_llm_spans" in out and "latency_5ms" in out and "wrote " in out


def test_runs_a_single_scenario(tmp_path: Path) -> None:
    output = tmp_path / "latest.json"
    assert overhead.main([*_TINY, "--scenario", "latency_5ms", "--output", str(output)]) == 0
    assert list(json.loads(output.read_text())["scenarios"]) == ["latency_5ms"]


def test_per_call_target_counts_only_where_set() -> None:
    instant = overhead.Targets(time_ratio=1.5, memory_ratio=1.25, per_call_us=60.0)
    assert instant.met(1.4, 1.0, 59.0) is True
    assert instant.met(1.4, 1.0, 61.0) is False
    assert instant.met(1.6, 1.0, 10.0) is False
    assert overhead.Targets(time_ratio=1.05, memory_ratio=1.25).met(1.04, 1.3, None) is False
    assert overhead.Targets(time_ratio=1.05, memory_ratio=1.25).met(1.04, 1.2, None) is True
