"""Grafana's template variables replaced by concrete values, to check and run the queries.

Grafana fills `$__rate_interval`, `$__range`... at query time; tools that parse or execute a
query (promtool, Prometheus' HTTP API, the TraceQL checker) need them replaced first.
"""

from __future__ import annotations

import re

DEFAULTS: dict[str, str] = {
    "__rate_interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "__interval": "15s",
    "job": "ondine",
    "pipeline": "ondine",
    "model": "gpt-4o-mini",
    "min_run_duration": "1m",
    "run_id": "00000000-0000-4000-8000-000000000000",
    "trace_id": "0af7651916cd43dd8448eb211c80319c",
}

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def substitute(text: str, values: dict[str, str] | None = None) -> str:
    """`text` with `$name`, `${name}` and `${name:format}` replaced; unknown names raise."""
    table = {**DEFAULTS, **(values or {})}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in table:
            raise KeyError(f"no value for ${name} in {text!r}")
        return table[name]

    return _VARIABLE.sub(replace, text)
