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
  after runs that succeeded, lost rows and failed, and Batch-API jobs collected and in flight;
  the spend panel equals the runs' and the collected job's cost.
"""

from __future__ import annotations

import json
import math
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
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
from tests.support.services import find_binary, prom_query, sample_values, wait_for_query

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
    legend: str = ""

    def legend_labels(self) -> set[str]:
        """Labels the legend shows ({{pipeline}}): a series without one would show a blank."""
        return set(re.findall(r"\{\{\s*(\w+)\s*\}\}", self.legend))

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
                            bool(target.get("instant")), target.get("legendFormat", ""))


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
        if panel["datasource"]["type"] == "prometheus":  # says which source it counts
            assert "never both added up" in panel["description"], where
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


GRAMMAR = ROOT / "grafana/lezer"


def grammar_errors(texts: list[str]) -> list[dict[str, Any]]:
    """Parse with Grafana's TraceQL grammar (@grafana/lezer-traceql, installed by `make test`)."""
    node = find_binary("node")
    if not (GRAMMAR / "node_modules/@grafana/lezer-traceql").is_dir():
        hint = f"Grafana's TraceQL grammar is not installed: npm ci --prefix {GRAMMAR}"
        if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
            pytest.fail(hint)
        pytest.skip(hint)
    done = subprocess.run([node, str(GRAMMAR / "check.mjs")], input=json.dumps(texts),
                          capture_output=True, text=True, timeout=60, check=True)
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


def test_every_traceql_query_parses_with_grafanas_traceql_grammar() -> None:
    # A bare trace id is a lookup by id, not TraceQL: Grafana sends it to Tempo's trace API.
    texts = [q.concrete() for q in queries("tempo") if q.text.startswith("{")]
    assert len(texts) >= 8
    bad = ['{ status = failed }', '{ name = "a" ', '{ name == "a" }', '{ name = "a" } >>']
    results = grammar_errors(texts + bad)
    assert [r["query"] for r in results if r["errors"]] == bad


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


def test_the_deploy_stack_provisions_these_files_as_they_expect() -> None:
    """Mount points, Grafana version, service names and scrape interval agree with the stack."""
    compose = yaml.safe_load((ROOT / "deploy/docker-compose.yml").read_text())["services"]
    grafana = compose["grafana"]
    assert "../grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    provider = yaml.safe_load(PROVIDER.read_text())["providers"][0]
    assert f"../grafana/dashboards:{provider['options']['path']}:ro" in grafana["volumes"]
    major = int(grafana["image"].rsplit(":", 1)[1].split(".")[0])
    assert major >= 12, grafana["image"]  # schemaVersion 41 is Grafana 12's
    sources = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    for source in sources:  # http://<service>:<port>
        service = source["url"].split("//")[1].split(":")[0]
        assert service in compose, source["url"]
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    prom_source = next(s for s in sources if s["type"] == "prometheus")
    assert prom_source["jsonData"]["timeInterval"] == prometheus["global"]["scrape_interval"]
    home = grafana["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH", "")
    assert not home or Path(home).name in {p.name for p in DASHBOARDS.values()}, home


# --- live: every Prometheus query on data from a real job, scraped and pushed -----------

PIPELINE = "dash-nightly"
SCRAPE_JOB = "test"  # start_prometheus' job name; pushed series keep job="ondine" (honor_labels)
PUSH_JOB = "ondine"

# The instrumented job, in its own interpreter: `instrument()` installs global providers.
# It reports on stdout (lines starting with @@) and waits on stdin before each run, so the test
# starts a run only once Prometheus holds the previous one (rates then see every run after the
# first), and decides when the long run may finish.
JOB_SCRIPT = '''
import faulthandler, json, signal, sys, tempfile, threading, time
faulthandler.register(signal.SIGUSR1, all_threads=True)
from decimal import Decimal
import ondine_otel
from ondine_otel.demo import OfflineLLMClient, build_demo_pipeline, load_reviews
from tests.spy import ContextSpy

def emit(**event):
    print("@@" + json.dumps(event), flush=True)

def wait_for(word):
    line = sys.stdin.readline().strip()
    assert line == word, (line, word)

class HeldClient(OfflineLLMClient):
    """Lets `free` calls through, then holds every later call until `go` is set."""
    def __init__(self, free, **kwargs):
        super().__init__(**kwargs)
        self.free, self.go = free, threading.Event()
    def _admit(self, prompt):
        started = super()._admit(prompt)
        if self.call_count > self.free:
            self.go.wait(90)
        return started

def run(name, pipeline):
    wait_for("next")
    spy = ContextSpy()
    pipeline.add_observer(spy)
    try:
        pipeline.execute()
    except Exception:
        pass
    ctx = spy.context
    emit(run=name, session=str(ctx.session_id), cost=float(ctx.accumulated_cost))

handle = ondine_otel.instrument(
    prometheus_host="127.0.0.1", prometheus_port=0, pushgateway_url=sys.argv[1],
    push_interval=1, pipeline_name=sys.argv[2],
)
emit(port=handle.prometheus_port)
tmp = tempfile.mkdtemp()

# Batch-API jobs (the provider stubbed at ondine's boundary): one collected, one left in flight.
wait_for("batch")
import litellm
from ondine import PipelineBuilder
from ondine.cli.main import cli
from ondine.orchestration import RunRegistry
from ondine_otel.demo.pipeline import PROMPT
from tests.modes.batch_api_stub import COMPLETION_TOKENS, PROMPT_TOKENS, install

def batch_job(rows):
    return (PipelineBuilder.create()
            .from_dataframe(load_reviews(rows), input_columns=["review"],
                            output_columns=["sentiment"])
            .with_prompt(PROMPT)
            .with_llm(provider="openai", model="gpt-4o-mini", api_key="sk-offline")
            .with_execution_mode("provider_batch").with_checkpoint_dir(tmp + "/batch").build())

install(__import__("pathlib").Path(tmp) / "batch-api")
registry = RunRegistry(tmp + "/batch")
collected = batch_job(6).submit(registry=registry)
batch_job(4).submit(registry=registry)
emit(batch="submitted")
wait_for("collect")
cli(["collect", str(collected.run_id), "--checkpoint-dir", tmp + "/batch"], standalone_mode=False)
price = litellm.model_cost["gpt-4o-mini"]
emit(batch="collected", cost=6 * (PROMPT_TOKENS * price["input_cost_per_token_batches"]
                                  + COMPLETION_TOKENS * price["output_cost_per_token_batches"]))
run("success", build_demo_pipeline(load_reviews(30), checkpoint_dir=tmp + "/a", concurrency=4))
run("failing_rows", build_demo_pipeline(
    load_reviews(40), failure_rate=0.3, checkpoint_dir=tmp + "/b", concurrency=4))
run("failed", build_demo_pipeline(
    load_reviews(20), client=OfflineLLMClient(crash_after=5), error_policy="fail",
    concurrency=1, checkpoint_dir=tmp + "/c"))
held = HeldClient(12, latency_s=0.005, failure_rate=0.2)
long_run = build_demo_pipeline(load_reviews(120), client=held, concurrency=2,
                               checkpoint_dir=tmp + "/d", checkpoint_interval=5)
long_run.specifications.processing.max_budget = Decimal("0.5")
worker = threading.Thread(target=run, args=("long", long_run))
worker.start()
while held.call_count <= held.free:
    time.sleep(0.01)
emit(active=True)
wait_for("release")
held.go.set()
worker.join(60)
wait_for("exit")
handle.shutdown()
'''


class Job:
    """The job's process; a thread reads its stdout (select() on a buffered pipe misses a
    second line that arrived with the first)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def next_event(self, key: str, timeout: float = 60.0) -> dict[str, Any]:
        """The next @@ event (reading stdout until one carrying `key` arrives)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:  # the job's stdout closed: it ended
                self.process.wait(timeout=10)
                break
            if line.startswith("@@"):
                event: dict[str, Any] = json.loads(line[2:])
                self.events.append(event)
                if key in event:
                    return event
        raise AssertionError(f"job sent no {key!r} event; exit={self.process.poll()}")

    def say(self, word: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(word + "\n")
        self.process.stdin.flush()


@pytest.fixture
def job(pushgateway: Any, tmp_path: Path) -> Iterator[Job]:
    log = (tmp_path / "job.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-c", JOB_SCRIPT, pushgateway.url, PIPELINE],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "LITELLM_LOCAL_MODEL_COST_MAP": "True"},
    )
    try:
        yield Job(process)
    finally:
        if process.poll() is None:
            # Where a job that is still running stands (every thread's stack), for a failure.
            process.send_signal(signal.SIGUSR1)
            deadline = time.monotonic() + 5
            while (tmp_path / "job.log").stat().st_size == 0:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            process.kill()
        process.wait(timeout=10)
        log.close()
        print((tmp_path / "job.log").read_text()[-20000:])


def finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(v) for v in sample_values(result))


def query_range(prometheus: Any, expr: str, seconds: int = 60) -> list[dict[str, Any]]:
    """A range query over the last `seconds`, as a time series panel runs it."""
    end = time.time()
    url = f"{prometheus.url}/api/v1/query_range?" + urllib.parse.urlencode(
        {"query": expr, "start": end - seconds, "end": end, "step": 5})
    with urllib.request.urlopen(url, timeout=10) as response:
        payload = json.loads(response.read())
    assert payload["status"] == "success", payload
    series: list[dict[str, Any]] = payload["data"]["result"]
    # Shaped like an instant result (the last point of each series) for finite().
    return [{"metric": s["metric"], "value": s["values"][-1]} for s in series if s["values"]]


def query_or_error(prometheus: Any, expr: str, instant: bool) -> list[dict[str, Any]] | str:
    """The query's result, or Prometheus' error message (a 400 names what is wrong)."""
    try:
        return prom_query(prometheus, expr) if instant else query_range(prometheus, expr)
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code}: {error.read().decode(errors='replace')}"


@pytest.mark.integration
def test_every_panel_has_data_from_a_real_job_and_spend_equals_its_cost(
    job: Job, pushgateway: Any, prometheus_factory: Any
) -> None:
    port = job.next_event("port")["port"]
    prometheus = prometheus_factory([f"127.0.0.1:{port}", pushgateway.address])
    wait_for_query(prometheus, f'up{{instance="127.0.0.1:{port}"}} == 1', timeout=30)
    # Two Batch-API jobs submitted; once Prometheus holds their outcomes at 0, one is collected.
    job.say("batch")
    job.next_event("batch")
    for source in (SCRAPE_JOB, PUSH_JOB):
        wait_for_query(prometheus, f'ondine_batch_jobs_finished_total{{job="{source}"}}',
                       timeout=20)
    job.say("collect")
    job.next_event("batch")
    for source in (SCRAPE_JOB, PUSH_JOB):
        wait_for_query(
            prometheus, f'sum(ondine_batch_jobs_finished_total{{job="{source}"}}) == 1',
            timeout=20,
        )
    for done, name in enumerate(("success", "failing_rows", "failed"), start=1):
        job.say("next")
        assert job.next_event("run")["run"] == name
        for source in (SCRAPE_JOB, PUSH_JOB):  # scraped, and pushed at the run's end
            wait_for_query(
                prometheus, f'sum(ondine_runs_total{{job="{source}"}}) == {done}', timeout=20
            )
    job.say("next")
    job.next_event("active")
    # The long run is visible from both sources, and its calls reached the histograms.
    for source in (SCRAPE_JOB, PUSH_JOB):
        wait_for_query(prometheus, f'ondine_run_rows_done{{job="{source}"}} > 0', timeout=20)
        wait_for_query(
            prometheus,
            f'increase(gen_ai_client_operation_duration_seconds_count{{job="{source}"}}[1m]) > 0',
            timeout=20,
        )

    values = {"pipeline": PIPELINE, "model": "gpt-4o-mini", "__range": "5m",
              "__range_s": "300", "__rate_interval": "1m"}
    missing = []
    checked = set()
    for source in (SCRAPE_JOB, PUSH_JOB):
        for query in queries("prometheus"):
            expr = query.concrete({**values, "job": source})
            if (source, expr) in checked:
                continue
            checked.add((source, expr))
            result = query_or_error(prometheus, expr, query.instant)
            if isinstance(result, str) or not finite(result):
                missing.append(f"{source}: {query.board}/{query.panel} {query.ref}: {expr}"
                               f" -> {result}")
                continue
            blank = [s["metric"] for s in result
                     if not all(s["metric"].get(k) for k in query.legend_labels())]
            if blank:
                missing.append(f"{source}: {query.board}/{query.panel} {query.ref}: legend "
                               f"{query.legend!r} has no value in {blank}")
        for board, variable, selector in variable_selectors():
            label = {"job": "job", "pipeline": "pipeline", "model": "model"}[variable]
            expr = f"count by ({label}) ({substitute(selector, {**values, 'job': source})})"
            found = {s["metric"].get(label) for s in prom_query(prometheus, expr)}
            wanted = {"job": source, "pipeline": PIPELINE, "model": "gpt-4o-mini"}[label]
            if wanted not in found:
                missing.append(f"{source}: {board} variable {variable} lacks {wanted}: {found}")
    print(f"{len(checked)} (source, query) pairs checked")
    assert not missing, "queries without data:\n" + "\n".join(missing)

    # The active run's run_id is its ondine session id: the key of the link to its trace.
    overview = load("overview")
    active = {t["refId"]: t["expr"] for t in by_title(overview, "Active runs")["targets"]}
    scraped = {**values, "job": SCRAPE_JOB}
    table = prom_query(prometheus, substitute(active["A"], scraped))
    assert len(table) == 1 and table[0]["metric"]["pipeline"] == PIPELINE
    assert 0 < float(table[0]["value"][1]) < 1  # progress, mid-run
    # The budget column is the pipeline's with_max_budget; one run is in progress.
    assert sample_values(prom_query(prometheus, substitute(active["H"], scraped))) == [0.5]
    in_progress = by_title(overview, "Runs in progress")["targets"][0]["expr"]
    assert sample_values(prom_query(prometheus, substitute(in_progress, scraped))) == [1.0]

    job.say("release")
    long_run = job.next_event("run")
    assert long_run["run"] == "long" and table[0]["metric"]["run_id"] == long_run["session"]
    cost = sum(e["cost"] for e in job.events if "cost" in e)
    assert cost > 0
    spend = by_title(load("overview"), "Spend in range")["targets"][0]["expr"]
    for source in (SCRAPE_JOB, PUSH_JOB):
        expr = substitute(spend, {**values, "job": source})
        result = wait_for_query(
            prometheus, expr,
            lambda r: len(r) == 1 and float(r[0]["value"][1]) == pytest.approx(cost, rel=1e-9),
            timeout=20,
        )
        print(f"{source}: spend panel {sample_values(result)} = job cost {cost}")
    # Finished: no run left in progress, on either source.
    for source in (SCRAPE_JOB, PUSH_JOB):
        wait_for_query(prometheus, substitute(in_progress, {**values, "job": source}),
                       lambda r: sample_values(r) == [0.0], timeout=20)
    job.say("exit")
    assert job.process.wait(timeout=30) == 0
