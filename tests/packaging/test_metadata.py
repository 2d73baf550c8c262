"""What the package says about itself agrees across pyproject.toml, the code and the docs."""

from __future__ import annotations

import re

import pytest

from ondine_otel.package import _instruments
from ondine_otel.version import __version__
from tests.packaging.test_ops_export import PYPROJECT, REPO


def project() -> dict[str, object]:
    tomllib = pytest.importorskip("tomllib")
    data: dict[str, object] = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    return data


def ondine_requirement() -> str:
    dependencies = project()["dependencies"]
    assert isinstance(dependencies, list)
    (requirement,) = [d for d in dependencies if re.match(r"ondine\b", d)]
    return str(requirement)


def test_instrumented_range_is_the_declared_dependency() -> None:
    """opentelemetry-instrument reads package.py; pip reads pyproject: the same ondine range."""
    (instruments,) = _instruments
    assert instruments.replace(" ", "") == ondine_requirement()


def test_readme_states_the_supported_ondine_range() -> None:
    assert f"`{ondine_requirement()}`" in (REPO / "README.md").read_text(encoding="utf-8")


def test_changelog_has_a_section_for_this_version() -> None:
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in changelog
    assert re.search(rf"^## \[{re.escape(__version__)}\]", changelog, re.MULTILINE)
    assert re.search(rf"^\[{re.escape(__version__)}\]: https://", changelog, re.MULTILINE)
