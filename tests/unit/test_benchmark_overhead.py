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
    assert doc["config"]["rows"] == 20
    assert doc["machine"]["cpu_count"] == os.cpu_count()
    assert doc["targets"] == {"time_ratio": 1.10, "memory_ratio": 1.25}
    assert doc["total_cost_usd"] is not None  # every run agreed on ondine's cost
    assert list(doc["variants"]) == [v.name for v in overhead.VARIANTS]
    for name, result in doc["variants"].items():
        assert len(result["wall_s"]) == 1, name
        assert result["median_s"] > 0 and result["rows_per_s"] > 0
        assert result["median_peak_memory_bytes"] > 0
        assert result["time_ratio"] is not None and result["memory_ratio"] is not None
    assert doc["variants"]["bare"]["time_ratio"] == 1.0
    assert doc["variants"]["instrumented"]["scrape_failures"] == 0
    out = capsys.readouterr().out
    assert "instrumented_no_llm_spans" in out and "wrote " in out
