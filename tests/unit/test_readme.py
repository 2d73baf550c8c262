"""The README's reference sections agree with the code, in both directions.

Users configure from the README's table and build dashboards from its telemetry reference, so a
setting or name added to the code without the README (or left in the README after leaving the
code) is a bug. Sections are found by their headings.

Which names the telemetry reference must list, exactly:

* every module-level string constant of ``semconv`` whose name starts with ``SPAN_``,
  ``ATTR_``, ``EVENT_``, ``GEN_AI_``, ``ERROR_`` or ``OPENINFERENCE_``, and every name in
  ``PROMETHEUS_NAMES``;
* span-name constants ending in ``_PREFIX`` or ``_OPERATION`` are not whole names but the first
  part of one, so they appear as a template, ``{value} {placeholder}`` (``ondine.stage {stage}``,
  ``chat {model}``); examples such as ``chat gpt-4o-mini`` may follow a template.

And nothing else in that section may look like a telemetry name (a lowercase dotted or
snake_case word in backticks), except metric label names: the ``LABEL_*`` values and the
Prometheus spelling of GenAI/error attributes (dots as underscores, e.g.
``gen_ai_request_model``). Names must be in backticks: a bare ``ondine.``/``gen_ai`` name in the
prose fails too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ondine_otel.config import SETTINGS, settings_table
from ondine_otel.telemetry import semconv

README = Path(__file__).resolve().parents[2] / "README.md"
CONFIG_HEADING = "Configuration reference"
TELEMETRY_HEADING = "Telemetry reference"
TABLE_HEADER = ["Argument", "Environment variable", "Default", "Meaning"]

NAME_PREFIXES = ("SPAN_", "ATTR_", "EVENT_", "GEN_AI_", "ERROR_", "OPENINFERENCE_")
TEMPLATE_SUFFIXES = ("_PREFIX", "_OPERATION")
ATTRIBUTE_PREFIXES = ("GEN_AI_", "ERROR_")  # attributes that are also GenAI metric labels

LOOKS_LIKE_NAME = re.compile(r"[a-z][a-z0-9]*(?:[._][a-z0-9]+)+")
SPAN_WITH_SUFFIX = re.compile(r"(?P<prefix>[a-z][a-z0-9_.]*) (?P<rest>\{[a-z_]+\}|[\w./-]+)")
BARE_NAME = re.compile(r"(?<![\w`])(?:ondine|gen_ai)[._][a-z]")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
HEADING = re.compile(r"(#{1,6}) +(.+?) *#*$")


def section(title: str) -> str:
    """The text under heading ``title`` up to the next heading of the same or a higher level."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = level = None
    fenced = False
    for number, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else HEADING.fullmatch(line)
        if match is None:
            continue
        if start is None and match.group(2) == title:
            start, level = number + 1, len(match.group(1))
        elif start is not None and level is not None and len(match.group(1)) <= level:
            return "\n".join(lines[start:number])
    if start is None:
        pytest.fail(f"README.md has no section titled {title!r}")
    return "\n".join(lines[start:])


# --- configuration table -------------------------------------------------------------------


def cells(row: str) -> list[str]:
    parts = re.split(r"(?<!\\)\|", row.strip().strip("|"))
    return [part.strip().replace("\\|", "|") for part in parts]


def unquote(cell: str) -> str:
    return cell[1:-1] if len(cell) > 1 and cell[0] == cell[-1] == "`" else cell


def render_row(name: str, env: str, default: str, meaning: str) -> str:
    """How a row is written: shown on failure so the README can be brought up to date."""
    escaped = [text.replace("|", "\\|") for text in (default, meaning)]
    return f"| `{name}` | `{env}` | {escaped[0]} | {escaped[1]} |"


def config_rows() -> list[list[str]]:
    rows = [cells(line) for line in section(CONFIG_HEADING).splitlines() if line.startswith("|")]
    assert rows, "the configuration reference has no table"
    assert rows[0] == TABLE_HEADER, f"table header should be {TABLE_HEADER}, got {rows[0]}"
    assert set("".join(rows[1])) <= set("-: "), "second row must be the separator"
    body = rows[2:]
    for row in body:
        assert len(row) == 4, f"row needs 4 cells: {row}"
    return body


def test_config_table_lists_exactly_the_settings() -> None:
    rows = config_rows()
    documented = [unquote(row[0]) for row in rows]
    expected = [setting.name for setting in SETTINGS]
    missing = [name for name in expected if name not in documented]
    table = {entry[0]: render_row(*entry) for entry in settings_table()}
    assert not missing, "add to the README's configuration table:\n" + "\n".join(
        table.get(name, name) for name in missing
    )
    extra = sorted(set(documented) - set(expected))
    assert not extra, f"README documents settings TelemetryConfig does not accept: {extra}"
    duplicated = sorted({name for name in documented if documented.count(name) > 1})
    assert not duplicated, f"settings listed twice: {duplicated}"
    assert documented == expected, "keep the table in the order of config.SETTINGS"
    for row in rows:
        assert row[0].startswith("`") and row[1].startswith("`"), f"backticks missing: {row}"


def test_config_table_rows_match_settings_table() -> None:
    documented = {unquote(row[0]): row for row in config_rows()}
    stale = []
    for name, env, default, meaning in settings_table():
        row = documented.get(name)
        if row is not None and [unquote(row[1]), row[2], row[3]] != [env, default, meaning]:
            stale.append(render_row(name, env, default, meaning))
    assert not stale, "README rows out of date; they should read:\n" + "\n".join(stale)


# --- telemetry reference -------------------------------------------------------------------


def contract_names() -> tuple[set[str], set[str]]:
    """(whole names, span-name templates' first parts) that the README must list."""
    names: set[str] = set(semconv.PROMETHEUS_NAMES)
    templates: set[str] = set()
    for constant, value in vars(semconv).items():
        if not constant.startswith(NAME_PREFIXES) or not isinstance(value, str):
            continue
        if constant.startswith("SPAN_") and constant.endswith(TEMPLATE_SUFFIXES):
            templates.add(value)
        else:
            names.add(value)
    return names, templates


def label_names() -> set[str]:
    """Metric label names the metrics table may show besides the contract names."""
    labels = {v for k, v in vars(semconv).items() if k.startswith("LABEL_") and isinstance(v, str)}
    labels |= {
        value.replace(".", "_")
        for constant, value in vars(semconv).items()
        if constant.startswith(ATTRIBUTE_PREFIXES) and isinstance(value, str)
    }
    return labels


def documented_names() -> tuple[set[str], set[str], set[str]]:
    """(names, template first parts, span examples' first parts) in the telemetry section."""
    names: set[str] = set()
    templates: set[str] = set()
    examples: set[str] = set()
    for code in CODE_SPAN.findall(section(TELEMETRY_HEADING)):
        span = SPAN_WITH_SUFFIX.fullmatch(code)
        if span is not None:
            placeholder = span.group("rest").startswith("{")
            (templates if placeholder else examples).add(span.group("prefix"))
        elif LOOKS_LIKE_NAME.fullmatch(code):
            names.add(code)
    return names, templates, examples


def test_contract_has_names_to_check() -> None:
    """Guards the rule above: if semconv's naming changed, this test would check nothing."""
    names, templates = contract_names()
    assert semconv.SPAN_RUN in names and semconv.ATTR_COST_USD in names
    assert semconv.ERROR_TYPE in names and semconv.GEN_AI_TOKEN_TYPE in names
    assert templates == {semconv.SPAN_STAGE_PREFIX, semconv.SPAN_LLM_OPERATION}
    assert set(semconv.PROMETHEUS_NAMES) <= names


def test_telemetry_reference_lists_every_name() -> None:
    names, templates = contract_names()
    found_names, found_templates, _ = documented_names()
    missing = sorted(names - found_names)
    assert not missing, f"add to the README's telemetry reference (in backticks): {missing}"
    missing_templates = sorted(templates - found_templates)
    assert not missing_templates, (
        "add these span names to the telemetry reference as `<name> {placeholder}`: "
        f"{missing_templates}"
    )


def test_telemetry_reference_lists_nothing_else() -> None:
    names, templates = contract_names()
    found_names, found_templates, examples = documented_names()
    unknown = sorted(found_names - names - label_names())
    assert not unknown, f"README telemetry reference names what semconv.py does not: {unknown}"
    unknown_spans = sorted((found_templates | examples) - templates)
    assert not unknown_spans, f"span names not in semconv.py: {unknown_spans}"


def test_telemetry_names_are_in_backticks() -> None:
    prose = CODE_SPAN.sub("", section(TELEMETRY_HEADING))
    bare = sorted({prose[m.start() : m.start() + 30].split()[0] for m in BARE_NAME.finditer(prose)})
    assert not bare, f"put these telemetry names in backticks: {bare}"


# --- links ---------------------------------------------------------------------------------

LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_links_work_on_pypi() -> None:
    """The README is the package's long description: on PyPI a relative link or an in-page
    anchor goes nowhere, so every link is an absolute https URL."""
    links = LINK.findall(README.read_text(encoding="utf-8"))
    assert links, "no links found: the pattern is wrong"
    broken = [link for link in links if not link.startswith("https://")]
    assert not broken, f"links that do not work on PyPI: {broken}"
