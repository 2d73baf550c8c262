"""Issue "Ops kit, part 2": the shipped Grafana dashboards, checked as Grafana, promtool and a
real Prometheus see them.

- The committed JSON/YAML is exactly what `python -m grafana.generate` writes.
- Structure: valid JSON, the schema version, unique ids and titles, every panel on a data-source
  variable (never a uid), a description and a unit on every panel, thresholds equal to the
  alert rules' defaults.
- Every PromQL expression (Grafana variables filled in) passes `promtool check rules`; every
  series name in it is in the telemetry contract. Every TraceQL query passes the TraceQL
  checker (no Tempo binary here).
- Live: a real Prometheus scrapes an instrumented ondine job and its Pushgateway; every
  Prometheus query of both dashboards returns data for either source, during a long run and
  after runs that succeeded, lost rows and failed; the spend panel equals the runs' cost.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from grafana import generate, thresholds, traceql
from grafana.attributes import KNOWN_ATTRIBUTES
from grafana.variables import substitute
from ondine_otel.telemetry import semconv
from tests.support.services import find_binary

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = {
    "overview": ROOT / "grafana/dashboards/ondine-overview.json",
    "traces": ROOT / "grafana/dashboards/ondine-traces.json",
}
DATASOURCES = ROOT / "grafana/provisioning/datasources/ondine.yml"
PROVIDER = ROOT / "grafana/provisioning/dashboards/ondine.yml"


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARDS[name].read_text())
    return document


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel except row headers (layout only: no query, data source or unit)."""
    return [p for p in board["panels"] if p["type"] != "row"]


@dataclass(frozen=True)
class Query:
    board: str
    panel: str
    ref: str
    text: str  # as written in the dashboard, with Grafana variables
    kind: str  # "prometheus" or "tempo"
    instant: bool

    def concrete(self, values: dict[str, str] | None = None) -> str:
        return substitute(self.text, values)


def queries(kind: str | None = None) -> Iterator[Query]:
    for board_name in DASHBOARDS:
        for panel in panels(load(board_name)):
            for target in panel["targets"]:
                source = target["datasource"]["type"]
                if kind is not None and source != kind:
                    continue
                text = target["expr"] if source == "prometheus" else target["query"]
                yield Query(board_name, panel["title"], target["refId"], text, source,
                            bool(target.get("instant")))


def variable_selectors() -> Iterator[tuple[str, str, str]]:
    """(board, variable, series selector) of every `label_values(selector, label)` variable."""
    for board_name in DASHBOARDS:
        for variable in load(board_name)["templating"]["list"]:
            if variable["type"] == "query":
                match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"])
                assert match, variable["query"]
                yield board_name, variable["name"], match.group(1)


def provisioned_queries() -> list[str]:
    """The trace-to-metrics queries of the provisioned data sources ($$__tags filled in)."""
    document = yaml.safe_load(DATASOURCES.read_text())
    found = []
    for source in document["datasources"]:
        for query in source.get("jsonData", {}).get("tracesToMetrics", {}).get("queries", []):
            found.append(query["query"].replace("$$__tags", 'pipeline="ondine"'))
    return found


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w:.])[A-Za-z_:][\w:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects (not functions, labels or keywords)."""
    text = _GROUPING.sub(" ", _RANGES.sub(" ", _MATCHERS.sub(" ", _STRINGS.sub('""', expr))))
    names = set()
    for match in _IDENT.finditer(text):
        if text[match.end():].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match.group().lower() not in _KEYWORDS:
            names.add(match.group())
    return names


def histograms() -> set[str]:
    """Histogram names of the contract, from the README's metrics table (tested vs semconv)."""
    readme = (ROOT / "README.md").read_text()
    found = set(re.findall(r"^\| `(\w+)` \| histogram \|", readme, flags=re.MULTILINE))
    assert found and found <= set(semconv.PROMETHEUS_NAMES), found
    return found


def emitted_names() -> set[str]:
    """Series names the code emits: the contract's names, histograms with their suffixes."""
    names = set(semconv.PROMETHEUS_NAMES)
    return names | {f"{h}{s}" for h in histograms() for s in ("_bucket", "_sum", "_count")}


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield f"{path}.{key}", value
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")


def by_title(board: dict[str, Any], title: str) -> dict[str, Any]:
    found = [p for p in panels(board) if p["title"] == title]
    assert len(found) == 1, (title, [p["title"] for p in panels(board)])
    return found[0]


def red_value(panel: dict[str, Any]) -> float:
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    return float(next(s["value"] for s in steps if s["color"] == "red"))


# --- generator and committed files --------------------------------------------------------


def test_committed_grafana_files_are_what_the_generator_writes() -> None:
    files = generate.render()
    assert set(files) >= {*DASHBOARDS.values(), DATASOURCES, PROVIDER}
    stale = [str(p.relative_to(ROOT)) for p, text in files.items()
             if not p.exists() or p.read_text() != text]
    assert not stale, f"run `python -m grafana.generate`: stale {stale}"
    assert generate.main(["--check"]) == 0


# --- structure -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_structure(name: str) -> None:
    board = load(name)
    assert board["schemaVersion"] >= 41  # Grafana 12
    assert board["uid"] == f"ondine-{name}" and board["title"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), ids
    titles = [p["title"] for p in panels(board)]
    assert len(titles) == len(set(titles)), titles
    variables = {v["name"]: v for v in board["templating"]["list"]}
    for variable in ("pipeline", *(["model"] if name == "overview" else [])):
        assert variables[variable]["multi"] and variables[variable]["includeAll"], variable
        assert variables[variable]["allValue"] == ".*"
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["tempo"]["query"] == "tempo"
    assert not variables["job"]["multi"] and not variables["job"]["includeAll"]
    data_sources = {"prometheus": "${datasource}", "tempo": "${tempo}", "jaeger": "${jaeger}"}
    cells: set[tuple[int, int]] = set()
    for panel in panels(board):
        where = f"{name}: {panel['title']}"
        assert len(panel["description"]) > 40, where
        assert panel["fieldConfig"]["defaults"]["unit"], where
        source = panel["datasource"]
        assert source["uid"] == data_sources[source["type"]], where
        assert panel["targets"], where
        for target in panel["targets"]:
            assert target["datasource"] == source, where
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, where
        area = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not area & cells, f"{where} overlaps another panel"
        cells |= area
    # No hard-coded data source anywhere: every uid is a variable (or Grafana's own).
    uids = [(p, v) for p, v in walk(board) if p.endswith(".uid") and p != ".uid"]
    assert uids
    for where, uid in uids:
        assert uid.startswith("${") or uid == "-- Grafana --", (where, uid)


def test_overview_has_every_panel_the_issue_asks_for_with_units() -> None:
    board = load("overview")
    expected = {
        "Spend in range": "currencyUSD",
        "Spend rate (USD/h) by pipeline and model": "currencyUSD",
        "Projected daily spend": "currencyUSD",
        "Projected cost / budget of active runs": "percentunit",
        "Projected cost and budget of active runs": "currencyUSD",
        "Tokens/s by type": "suffix:tokens/s",
        "Rows/s by pipeline": "suffix:rows/s",
        "Run outcomes in range": "short",
        "Row failure ratio": "percentunit",
        "Active runs": "short",
        "Stage duration p50/p95 by stage": "s",
        "LLM call latency p50/p95 by model": "s",
        "LLM call errors by error_type": "reqps",
        "Checkpoints saved and failed in range": "short",
        "Time since the last success": "s",
    }
    for title, unit in expected.items():
        assert by_title(board, title)["fieldConfig"]["defaults"]["unit"] == unit, title
    table = by_title(board, "Active runs")
    assert table["type"] == "table"
    columns = {o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
               for o in table["fieldConfig"]["overrides"]}
    assert columns["Progress"]["custom.cellOptions"] == {"type": "gauge", "mode": "basic"}
    assert columns["ETA"]["unit"] == "s" and columns["Budget"]["unit"] == "currencyUSD"
    assert {"Rows done", "Rows expected", "Projected cost"} <= set(columns)


def test_thresholds_are_the_alert_rules_defaults() -> None:
    defaults = thresholds.read_defaults()
    board = load("overview")
    assert red_value(by_title(board, "Row failure ratio")) == defaults["row_failure_ratio"]
    assert red_value(by_title(board, "LLM call latency p50/p95 by model")) == (
        defaults["llm_latency_p95_seconds"]
    )
    assert red_value(by_title(board, "Spend rate (USD/h) by pipeline and model")) == (
        defaults["spend_usd_per_hour"]
    )
    assert red_value(by_title(board, "Time since the last success")) == (
        defaults["last_success_max_age_seconds"]
    )
    assert red_value(by_title(board, "Projected cost / budget of active runs")) == 1.0
    for title in ("Row failure ratio", "LLM call latency p50/p95 by model"):
        custom = by_title(board, title)["fieldConfig"]["defaults"]["custom"]
        assert custom["thresholdsStyle"]["mode"] != "off", title
    assert defaults["row_failure_ratio"] == 0.05 and defaults["llm_latency_p95_seconds"] == 30


def test_metric_panels_link_run_ids_to_their_traces() -> None:
    for name in DASHBOARDS:
        table = by_title(load(name), "Active runs")
        links = next(p["value"] for o in table["fieldConfig"]["overrides"]
                 if o["matcher"]["options"] == semconv.LABEL_RUN_ID
                 for p in o["properties"] if p["id"] == "links")
        urls = [link["url"] for link in links]
        assert any(u.startswith("/d/ondine-traces/") and "var-run_id=${__value.raw}" in u
                   for u in urls), urls
        explore = [u for u in urls if u.startswith("/explore?")]
        assert explore and semconv.ATTR_SESSION_ID in re.sub("%22", '"', explore[0])
    traces = load("traces")
    run_tables = [p for p in panels(traces) if p["datasource"]["type"] == "tempo"
                  and p["type"] == "table"]
    assert len(run_tables) >= 6
    for table in run_tables:
        trace_links = next(p["value"] for o in table["fieldConfig"]["overrides"]
                           if o["matcher"]["options"] == "traceID" for p in o["properties"])
        joined = " ".join(link["url"] for link in trace_links)
        assert "${jaeger}" in joined and "${tempo}" in joined
        assert "/trace/${__value.raw}" in joined
    assert [p for p in panels(traces) if p["type"] == "traces"]


# --- PromQL: promtool parses it, and it names only series the code emits ----------------


def all_promql() -> list[tuple[str, str]]:
    found = [(f"{q.board}: {q.panel} {q.ref}", q.concrete()) for q in queries("prometheus")]
    found += [(f"{b}: variable {v}", substitute(s)) for b, v, s in variable_selectors()]
    found += [(f"provisioning: {i}", text) for i, text in enumerate(provisioned_queries())]
    return found


def promtool_check(tmp_path: Path, expressions: list[str]) -> subprocess.CompletedProcess[str]:
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"ondine_dashboard:query_{i}", "expr": expr}
        for i, expr in enumerate(expressions)]}]}
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return subprocess.run([find_binary("promtool"), "check", "rules", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)


def test_every_promql_expression_is_accepted_by_promtool(tmp_path: Path) -> None:
    found = all_promql()
    assert len(found) >= 40, len(found)
    for where, expr in found:
        assert "$" not in expr, (where, expr)
    result = promtool_check(tmp_path, [expr for _, expr in found])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(found)} rules found" in result.stdout, result.stdout
    # The check can fail: a broken expression is rejected.
    broken = promtool_check(tmp_path, ["sum(rate(ondine_cost_usd_total[1m])"])
    assert broken.returncode != 0 and "parse error" in broken.stdout + broken.stderr


def test_every_series_name_in_a_query_is_one_the_code_emits() -> None:
    emitted = emitted_names()
    used: set[str] = set()
    for where, expr in all_promql():
        names = metric_names(expr)
        assert names, (where, expr)
        assert names <= emitted, (where, sorted(names - emitted))
        used |= names
    # Every series of the contract is on a dashboard, except the token-usage histogram
    # (its sums equal ondine_tokens_total, which the dashboards use).
    bases = {n.removesuffix(s) for n in used for s in ("_bucket", "_sum", "_count")
             if n.endswith(s)} | used
    assert set(semconv.PROMETHEUS_NAMES) - bases == {"gen_ai_client_token_usage"}


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, stage) (rate(a_bucket{job="x",b="c d"}[1m])))'
        ' / on (run_id) group_left () (b_total offset 10m) or vector(1) and time() - c > 0'
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}


# --- TraceQL ------------------------------------------------------------------------------


def test_every_traceql_query_parses_and_uses_contract_attributes() -> None:
    found = list(queries("tempo"))
    assert len(found) >= 9
    used: set[str] = set()
    for query in found:
        used |= set(traceql.check(query.concrete(), KNOWN_ATTRIBUTES))
    assert {semconv.ATTR_PIPELINE_NAME, semconv.ATTR_SESSION_ID, semconv.ERROR_TYPE} <= used
    run_queries = [q.text for q in found if q.text.startswith("{")]
    assert all(f'name = "{semconv.SPAN_RUN}"' in text for text in run_queries)
    assert any("status = error" in text for text in run_queries)


@pytest.mark.parametrize("query", [
    '{ name = "ondine.pipeline" && span."ondine.pipline.name" = "a" }',  # typo
    '{ status = failed }',
    '{ duration > 5 }',
    '{ name = "ondine.pipeline" ',
    '{ kind = client } | select(span."nope")',
    '{ span."ondine.pipeline.name" =~ "(" }',
    '{ name = "a" } | frob()',
    '{ name == "a" }',
    '{ name = "a" } >>',
])
def test_traceql_checker_rejects_bad_queries(query: str) -> None:
    with pytest.raises(traceql.TraceQLError):
        traceql.check(query, KNOWN_ATTRIBUTES)


# --- provisioning -------------------------------------------------------------------------


def test_provisioned_data_sources_and_dashboard_provider() -> None:
    sources = {s["uid"]: s for s in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    assert set(sources) == {"prometheus", "tempo", "jaeger"}
    assert sources["prometheus"]["url"] == "http://prometheus:9090"
    assert sources["tempo"]["url"] == "http://tempo:3200"
    assert sources["jaeger"]["url"] == "http://jaeger:16686"
    exemplars = sources["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert exemplars == [{"name": "trace_id", "datasourceUid": "tempo",
                          "urlDisplayLabel": "Trace in Tempo"}]
    to_metrics = sources["tempo"]["jsonData"]["tracesToMetrics"]
    assert to_metrics["datasourceUid"] == "prometheus"
    assert to_metrics["tags"] == [{"key": semconv.ATTR_PIPELINE_NAME, "value": "pipeline"}]
    assert all("$$__tags" in q["query"] for q in to_metrics["queries"])
    provider = yaml.safe_load(PROVIDER.read_text())["providers"][0]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
