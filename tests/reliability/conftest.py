"""The `figures` fixture: each fault test records its row of docs/reliability.md.

A row is the fault, what the user sees, what is guaranteed and the figure measured in this
run. With ONDINE_RELIABILITY_FIGURES=path set (`make reliability` does it) the rows of the
session are written there as JSON, each with its test's outcome, and
`python -m tests.reliability.report` renders the table from that file. Without the variable
nothing is written, so `make test` leaves the docs alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

FIGURES_ENV = "ONDINE_RELIABILITY_FIGURES"


@dataclass
class Row:
    fault: str
    sees: str
    guaranteed: str
    measured: str
    test: str = ""
    outcome: str = "passed"
    order: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


_rows: list[Row] = []


class Figures:
    """Per-test recorder; `record()` may be called once per fault the test covers."""

    def __init__(self, test: str) -> None:
        self.test = test
        self.rows: list[Row] = []

    def record(
        self, fault: str, sees: str, guaranteed: str, measured: str, **extra: Any
    ) -> None:
        row = Row(fault, sees, guaranteed, measured, self.test, order=len(_rows), extra=extra)
        self.rows.append(row)
        _rows.append(row)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A row recorded by a test that then failed is marked failed (the table says so)."""
    report = yield
    recorder = getattr(item, "_figures", None)
    if recorder is not None and report.failed:
        for row in recorder.rows:
            row.outcome = "failed"
    return report


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    recorder = Figures(request.node.nodeid)
    request.node._figures = recorder  # read by the report hook above
    return recorder


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get(FIGURES_ENV)
    if not target or not _rows:
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(r) for r in _rows], indent=2) + "\n")

