"""Alert thresholds, read from the shipped Prometheus recording rules.

The alerts keep their defaults as `ondine:threshold_default:<name>` recording rules; the
dashboards draw the same numbers, read from that file at generation time, so a panel's red line
and the alert that pages never disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

RULES = Path(__file__).resolve().parent.parent / "deploy/prometheus/rules/ondine-recording.yml"
_PREFIX = "ondine:threshold_default:"
_VECTOR = re.compile(r"^\s*vector\(\s*([0-9.eE+-]+)\s*\)\s*$")


@dataclass(frozen=True)
class Thresholds:
    row_failure_ratio: float
    spend_usd_per_hour: float
    last_success_max_age_seconds: float
    llm_latency_p95_seconds: float


def read_defaults(path: Path = RULES) -> dict[str, float]:
    """Every `ondine:threshold_default:<name>` of the rules file, as {name: value}."""
    document = yaml.safe_load(path.read_text())
    found: dict[str, float] = {}
    for group in document.get("groups", []):
        for rule in group.get("rules", []):
            record = str(rule.get("record", ""))
            if not record.startswith(_PREFIX):
                continue
            match = _VECTOR.match(str(rule.get("expr", "")))
            if match is None:
                raise ValueError(f"{path}: {record} is not a vector(<number>) constant")
            found[record.removeprefix(_PREFIX)] = float(match.group(1))
    return found


def load(path: Path = RULES) -> Thresholds:
    defaults = read_defaults(path)
    names = Thresholds.__dataclass_fields__
    missing = sorted(set(names) - set(defaults))
    if missing:
        raise ValueError(f"{path} defines no {', '.join(_PREFIX + m for m in missing)}")
    return Thresholds(**{name: defaults[name] for name in names})
