"""Write (or `--check`) the Grafana files of the repository from the Python that defines them.

    python -m grafana.generate           # regenerate grafana/dashboards and grafana/provisioning
    python -m grafana.generate --check   # exit 1 if a committed file differs from the generator
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from . import overview, provisioning_files, thresholds, traceql, traces
from .attributes import KNOWN_ATTRIBUTES
from .variables import substitute

ROOT = Path(__file__).resolve().parent


def _json(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _yaml(document: Any) -> str:
    body = yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=100)
    return provisioning_files.HEADER + body


def render() -> dict[Path, str]:
    """Every generated file (path inside the repository -> content)."""
    limits = thresholds.load()
    boards = {"ondine-overview.json": overview.build(limits), "ondine-traces.json": traces.build()}
    for board in boards.values():
        for query in tempo_queries(board):
            traceql.check(substitute(query), KNOWN_ATTRIBUTES)
    files = {ROOT / "dashboards" / name: _json(board) for name, board in boards.items()}
    files[ROOT / "provisioning/datasources/ondine.yml"] = _yaml(provisioning_files.datasources())
    files[ROOT / "provisioning/dashboards/ondine.yml"] = _yaml(
        provisioning_files.dashboard_provider()
    )
    return files


def tempo_queries(board: dict[str, Any]) -> list[str]:
    return [
        target["query"]
        for panel in board["panels"]
        for target in panel.get("targets", [])
        if target.get("datasource", {}).get("type") == "tempo"
    ]


def stale(files: dict[Path, str]) -> list[Path]:
    return [p for p, text in files.items() if not p.exists() or p.read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grafana.generate", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report stale files")
    args = parser.parse_args(argv)
    files = render()
    outdated = stale(files)
    if args.check:
        for path in outdated:
            print(f"stale: {path.relative_to(ROOT.parent)}", file=sys.stderr)
        return 1 if outdated else 0
    for path in outdated:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path])
        print(f"wrote {path.relative_to(ROOT.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
