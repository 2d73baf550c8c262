"""`ondine-otel ops export`: the shipped ops files are the repository's, byte for byte.

Run from a checkout, these read the repository's own files; the wheel test
(test_wheel.py) runs the same command from an installed wheel.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ondine_otel.cli.main import main
from ondine_otel.ops import SELECTIONS, files, source_root

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = REPO / "pyproject.toml"


def repo_files(paths: tuple[str, ...] | list[str]) -> set[str]:
    """Every file under the given repository paths, as repository-relative POSIX paths."""
    found: set[str] = set()
    for path in paths:
        target = REPO / path
        if target.is_file():
            found.add(path)
        else:
            found |= {
                p.relative_to(REPO).as_posix()
                for p in target.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts
            }
    return found


def assert_same_files(directory: Path, expected: set[str]) -> None:
    written = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    assert written == expected
    different = [
        name for name in expected if (directory / name).read_bytes() != (REPO / name).read_bytes()
    ]
    assert not different, f"exported files differ from the repository's: {different}"


def all_paths() -> list[str]:
    return [path for paths in SELECTIONS.values() for path in paths]


def test_export_writes_every_ops_file_identical_to_the_repository(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ops"
    assert main(["ops", "export", str(out)]) == 0
    assert_same_files(out, repo_files(all_paths()))
    printed = capsys.readouterr().out
    assert "deploy/prometheus/rules/ondine-alerts.yml" in printed
    assert "grafana/dashboards/ondine-overview.json" in printed


@pytest.mark.parametrize("selection", list(SELECTIONS))
def test_each_selection_writes_only_its_files(tmp_path: Path, selection: str) -> None:
    assert main(["ops", "export", str(tmp_path), f"--{selection}"]) == 0
    assert_same_files(tmp_path, repo_files(SELECTIONS[selection]))


def test_export_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edited = tmp_path / "deploy/prometheus/rules/ondine-alerts.yml"
    edited.parent.mkdir(parents=True)
    edited.write_text("# my edits\n")
    assert main(["ops", "export", str(tmp_path), "--prometheus", "--grafana"]) == 1
    err = capsys.readouterr().err
    assert "already exist" in err and "--force" in err
    assert edited.read_text() == "# my edits\n"
    assert not (tmp_path / "grafana").exists(), "nothing may be written when refusing"
    assert main(["ops", "export", str(tmp_path), "--prometheus", "--force"]) == 0
    assert edited.read_bytes() == (REPO / "deploy/prometheus/rules/ondine-alerts.yml").read_bytes()


def test_wheel_carries_exactly_the_selected_paths() -> None:
    """pyproject's force-include (what the wheel holds) and SELECTIONS name the same paths."""
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    included = config["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert included == {path: f"ondine_otel/ops/files/{path}" for path in all_paths()}


def test_checkout_reads_the_repository_files() -> None:
    assert source_root() == REPO
    assert {f.path for f in files()} == repo_files(all_paths())


@pytest.mark.integration
def test_exported_rules_pass_their_promtool_tests(tmp_path: Path) -> None:
    """Relative references between the files (tests naming ../rules/) hold after export."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    assert main(["ops", "export", str(tmp_path), "--prometheus"]) == 0
    tests = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob("deploy/prometheus/tests/*"))
    assert tests
    done = subprocess.run(
        [promtool, "test", "rules", *tests], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_readme_lists_every_selection() -> None:
    from tests.unit.test_readme import section

    rows = [line for line in section("Ops files").splitlines() if line.startswith("| `--")]
    documented = [row.split("`")[1] for row in rows]
    assert documented == [f"--{name}" for name in SELECTIONS]


def test_docker_image_builds_the_package_with_its_ops_files() -> None:
    """The image runs `pip install .`: hatch needs LICENSE and every force-included path in
    the build context, copied before that step."""
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    before_install = dockerfile[: dockerfile.index("RUN pip install .")]
    copied = {
        source
        for line in before_install.splitlines()
        if line.startswith("COPY ")
        for source in line.split()[1:-1]
    }
    assert {"pyproject.toml", "README.md", "LICENSE", *all_paths()} <= copied
    kept = {
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    }
    assert {"LICENSE", *all_paths()} <= kept
