"""Issues "Ops kit": the shipped alert rules and Alertmanager config, checked by the real tools.

promtool (the Debian Prometheus 2.42 one, so no Prometheus-3-only PromQL gets in) checks and
unit-tests the rules; amtool checks the Alertmanager config and its routing. The style checks
hold every alert to the same shape: a prefixed CamelCase name, a severity, a summary, a
description and a runbook section that exists, linked by an absolute URL from one base.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from ondine_otel.telemetry import semconv
from ondine_otel.telemetry.instruments import GENAI_DURATION_BUCKETS
from tests.support.services import AMTOOL_BIN, PROMTOOL_BIN, run_tool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
# The pipeline rules (the stack's own alerts watch its components by job name instead).
PIPELINE_RULE_FILES = [p for p in RULE_FILES if p.name != "ondine-stack.yml"]
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
THRESHOLDS_EXAMPLE = PROMETHEUS / "thresholds.example.yml"
ALERTMANAGER = DEPLOY / "alertmanager" / "alertmanager.yml"
RUNBOOKS = DEPLOY / "RUNBOOKS.md"

SEVERITIES = {"critical", "warning", "info"}
ANNOTATIONS = {"summary", "description", "runbook_url"}
# Recording rules the user supplies (deploy/prometheus/thresholds.example.yml shows each).
USER_SERIES = re.compile(r"^ondine:(threshold_override:[a-z_0-9]+|expected_pipeline)$")


def groups(path: Path) -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = yaml.safe_load(path.read_text())["groups"]
    return loaded


def shipped_rules(files: list[Path] = RULE_FILES) -> list[dict[str, Any]]:
    return [rule for path in files for group in groups(path) for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in shipped_rules() if "alert" in rule]


def alert_names() -> list[str]:
    return [rule["alert"] for rule in alerts()]


def ok(result: Any) -> str:
    assert result.returncode == 0, f"rc={result.returncode}\n{result.stdout}\n{result.stderr}"
    return str(result.stdout)


# --- the real tools ------------------------------------------------------------------------


def test_rules_pass_promtool_check() -> None:
    assert [p.name for p in RULE_FILES] == [
        "ondine-alerts.yml",
        "ondine-batch.yml",
        "ondine-recording.yml",
        "ondine-stack.yml",
    ]
    out = ok(run_tool(PROMTOOL_BIN, "check", "rules", *RULE_FILES, THRESHOLDS_EXAMPLE))
    assert out.count("SUCCESS") == len(RULE_FILES) + 1, out


def test_rule_unit_tests_pass() -> None:
    assert RULE_TESTS, "no promtool tests"
    out = ok(run_tool(PROMTOOL_BIN, "test", "rules", *RULE_TESTS))
    assert out.count("SUCCESS") == len(RULE_TESTS), out


def test_rule_unit_tests_fail_when_a_threshold_changes(tmp_path: Path) -> None:
    """The unit tests pin values: move the default failure ratio from 5 % to 7 % and the
    6 % case must stop firing and the tests fail."""
    copy = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS, copy)
    recording = copy / "rules" / "ondine-recording.yml"
    text = recording.read_text()
    assert text.count("expr: vector(0.05)") == 1
    recording.write_text(text.replace("expr: vector(0.05)", "expr: vector(0.07)"))
    result = run_tool(PROMTOOL_BIN, "test", "rules", copy / "tests" / "ondine-alerts.test.yml")
    assert result.returncode != 0, result.stdout
    assert "alertname: OndineRowFailureRatioHigh" in result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = set(alert_names())
    assert names - firing == set(), "alerts without a firing case"
    assert names - quiet == {"Watchdog"}, "alerts without a quiet case (the Watchdog has none)"
    assert firing | quiet <= names, "tests of alerts that do not exist"


def test_alertmanager_config_passes_amtool() -> None:
    out = ok(run_tool(AMTOOL_BIN, "check-config", ALERTMANAGER))
    assert "SUCCESS" in out


def route(*labels: str) -> list[str]:
    """The receivers amtool routes an alert with these labels to."""
    command = ["config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels]
    return ok(run_tool(AMTOOL_BIN, *command)).split()


@pytest.mark.parametrize(
    ("severity", "receiver"),
    [("critical", "ondine-page"), ("warning", "ondine-ticket"), ("info", "blackhole")],
)
def test_alertmanager_routes_by_severity(severity: str, receiver: str) -> None:
    assert route(f"severity={severity}", "alertname=OndineRunFailed", "pipeline=reviews") == [
        receiver
    ]


def test_the_watchdog_goes_to_the_heartbeat_and_demo_alerts_never_page() -> None:
    assert route("alertname=Watchdog", "severity=info") == ["heartbeat"]
    demo = ["alertname=OndineRunFailed", "severity=critical", "pipeline=demo-reviews"]
    assert route(*demo, "demo=true") == ["ondine-demo"]
    assert route(*demo) == ["ondine-page"]  # the label, not the name, decides


@pytest.mark.parametrize("alert", ["OndineSpendRateHigh", "OndineRunProjectedOverBudget"])
def test_spend_and_budget_alerts_are_routed_and_never_inhibited(alert: str) -> None:
    """Money alerts reach the ticket receiver, and no inhibit rule can target them: a
    days-long critical alert of the same pipeline must not hide a runaway spend."""
    assert route(f"alertname={alert}", "severity=warning", "pipeline=reviews") == ["ondine-ticket"]
    config = yaml.safe_load(ALERTMANAGER.read_text())
    for rule in config["inhibit_rules"]:
        targets = rule["target_matchers"]
        assert any(
            matcher.startswith("alertname!~") and re.fullmatch(matcher.split('"')[1], alert)
            for matcher in targets
        ), (alert, targets)


def test_alertmanager_groups_by_pipeline_and_inhibits_warnings_of_the_same_pipeline() -> None:
    config = yaml.safe_load(ALERTMANAGER.read_text())
    assert "pipeline" in config["route"]["group_by"]
    (rule,) = config["inhibit_rules"]
    assert rule["equal"] == ["pipeline"]
    assert 'severity="critical"' in rule["source_matchers"]
    assert 'severity="warning"' in rule["target_matchers"]


# --- the shape of every alert ----------------------------------------------------------------


def test_alerts_have_prefixed_names_severity_and_annotations() -> None:
    assert len(alert_names()) == len(set(alert_names())), "duplicate alert names"
    for rule in alerts():
        name = rule["alert"]
        assert name == "Watchdog" or re.fullmatch(r"Ondine(?:[A-Z][a-z0-9]*|LLM)+", name), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert set(rule["annotations"]) == ANNOTATIONS, name
        assert rule["annotations"]["runbook_url"] == RUNBOOK_URL + f"#{name.lower()}", name


# Every runbook_url: the one configurable base (ondine:runbook_base_url's `url` label) plus the
# alert's section.
RUNBOOK_URL = '{{ with query "ondine:runbook_base_url" }}{{ . | first | label "url" }}{{ end }}'


def test_runbook_urls_are_absolute_and_share_one_configurable_base() -> None:
    (base,) = [r for r in shipped_rules() if r.get("record") == "ondine:runbook_base_url"]
    assert base["expr"] == "vector(1)"
    assert re.fullmatch(r"https://[^\s#]+", base["labels"]["url"]), base["labels"]["url"]
    # promtool renders them (the unit tests pin the absolute URL of every alert).
    rendered = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                for alert in check.get("exp_alerts") or []:
                    rendered.add(alert["exp_annotations"]["runbook_url"])
    assert rendered, "no unit test renders a runbook_url"
    for url in rendered:
        assert url.startswith(base["labels"]["url"] + "#"), url


def test_every_latency_threshold_is_reachable() -> None:
    """histogram_quantile() cannot exceed the highest finite bucket: the rules cap thresholds
    there, so that bucket must be the one the instrumentation really uses, and every shipped
    or example threshold must lie at or below it."""
    name = "ondine:llm_latency_top_bucket_seconds"
    (top,) = [r for r in shipped_rules() if r.get("record") == name]
    assert float(top["expr"].removeprefix("vector(").rstrip(")")) == max(GENAI_DURATION_BUCKETS)
    rules = shipped_rules() + [r for g in groups(THRESHOLDS_EXAMPLE) for r in g["rules"]]
    for rule in rules:
        threshold = rule.get("record", "").endswith(":llm_latency_p95_seconds")
        if threshold and "vector(" in rule["expr"]:
            value = float(rule["expr"].removeprefix("vector(").rstrip(")"))
            assert value <= max(GENAI_DURATION_BUCKETS), rule


def test_every_alert_has_a_runbook_section() -> None:
    headings = re.findall(r"^## (\S+)\s*$", RUNBOOKS.read_text(), flags=re.MULTILINE)
    assert set(alert_names()) <= set(headings), set(alert_names()) - set(headings)
    for name in alert_names():
        section = RUNBOOKS.read_text().split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        for part in ("Meaning", "Impact", "Diagnosis", "Mitigation"):
            assert f"**{part}**" in section, (name, part)


def expressions() -> list[str]:
    return [str(rule["expr"]) for rule in shipped_rules(PIPELINE_RULE_FILES)]


LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
MATCHERS = re.compile(r"\{([^}]*)\}")
# Contract labels (section 3): ours, and the GenAI histogram's (OTel attribute names with
# dots replaced, as Prometheus shows them).
CONTRACT_LABELS = {getattr(semconv, name) for name in dir(semconv) if name.startswith("LABEL_")} | {
    semconv.GEN_AI_PROVIDER_NAME.replace(".", "_"),
    semconv.GEN_AI_REQUEST_MODEL.replace(".", "_"),
    "le",
}


def test_rules_use_only_contract_metric_names_and_labels() -> None:
    used = set()
    for expr in expressions():
        for labels in LABEL_LISTS.findall(expr):
            assert {x.strip() for x in labels.split(",") if x.strip()} <= CONTRACT_LABELS, expr
        for matchers in MATCHERS.findall(expr):
            names = set(re.findall(r"([a-z_]+)\s*[!=]~?", matchers))
            assert names <= CONTRACT_LABELS, expr
        bare_expr = MATCHERS.sub("", LABEL_LISTS.sub("", expr))
        used |= set(re.findall(r"(?<![\w:])((?:ondine|gen_ai)_[a-z_]+)", bare_expr))
    bare = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    assert bare - set(semconv.PROMETHEUS_NAMES) == set()
    # What the alerts need from the instrumentation's side of the contract is all there.
    for name in (
        "ondine_runs_total",
        "ondine_rows_failed_total",
        "ondine_rows_skipped_total",
        "ondine_run_budget_usd",
        "ondine_last_success_timestamp_seconds",
    ):
        assert name in used


def test_recorded_series_are_defined_or_supplied_by_the_user() -> None:
    recorded = {rule["record"] for rule in shipped_rules() if "record" in rule}
    recorded |= {"ondine:runbook_base_url"}
    example = {rule["record"] for group in groups(THRESHOLDS_EXAMPLE) for rule in group["rules"]}
    for expr in expressions():
        for name in re.findall(r"[a-z_]+:[a-z_0-9]+(?::[a-z_0-9]+)?", expr):
            if USER_SERIES.match(name):
                assert name in example, f"{name}: no example for users"
            else:
                assert name in recorded, f"{name} is used but never recorded"
    defaults = {n.rsplit(":", 1)[1] for n in recorded if n.startswith("ondine:threshold_default:")}
    overrides = {n.rsplit(":", 1)[1] for n in example if n.startswith("ondine:threshold_override:")}
    assert defaults and defaults == overrides, "every default must be overridable, with an example"


def test_no_rule_depends_on_job_or_instance() -> None:
    for expr in expressions():
        for labels in LABEL_LISTS.findall(expr):
            assert not {"job", "instance"} & {x.strip() for x in labels.split(",")}, expr
        assert not re.search(r"\b(job|instance)\s*=~?", expr), expr


def test_stack_alerts_watch_jobs_that_prometheus_scrapes() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    stack = [r for r in shipped_rules([PROMETHEUS / "rules" / "ondine-stack.yml"]) if "alert" in r]
    watched = set()
    for rule in stack:
        for pattern in re.findall(r'job=~"([^"]+)"', str(rule["expr"])):
            watched |= set(pattern.split("|"))
    assert watched and watched <= jobs, watched - jobs
    assert {"pushgateway", "otel-collector", "tempo", "alertmanager"} <= watched
