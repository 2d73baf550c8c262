"""The wheel alone, in a fresh venv, as a user who ran `pip install ondine-otel` has it.

Builds the wheel the way an installer does (`python -m build`), installs it with its
dependencies into a new virtual environment (uv's cache makes the repeat fast), and from a
directory outside the checkout runs the demo and `ondine-otel ops export`: nothing may come
from the repository. The packaging metadata a user's tools read (license file, py.typed,
classifiers, Project-URLs) is checked in that installation too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from ondine_otel.ops import SELECTIONS
from ondine_otel.telemetry import semconv
from tests.packaging.test_ops_export import REPO, assert_same_files, repo_files

pytestmark = pytest.mark.integration

#: What the installed distribution must say about itself.
_METADATA_PROBE = """
import importlib.metadata as md, json, pathlib, ondine_otel
dist = md.distribution("ondine-otel")
print(json.dumps({
    "package": str(pathlib.Path(ondine_otel.__file__).parent),
    "typed": (pathlib.Path(ondine_otel.__file__).parent / "py.typed").is_file(),
    "license_files": [str(f) for f in dist.files if f.name == "LICENSE"],
    "classifiers": dist.metadata.get_all("Classifier") or [],
    "urls": dist.metadata.get_all("Project-URL") or [],
    "requires_python": dist.metadata["Requires-Python"],
}))
"""


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv holding the freshly built wheel and its dependencies; yields its bin/."""
    work = tmp_path_factory.mktemp("wheel")
    dist = work / "dist"
    run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(REPO)], cwd=work)
    wheels = sorted(dist.glob("ondine_otel-*.whl"))
    assert len(wheels) == 1, wheels
    env_dir = work / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    # uv (a test extra) resolves and installs like pip, from the registry and its cache, in a
    # fraction of pip's time; the venv gets the wheel and its declared dependencies only.
    uv = [sys.executable, "-m", "uv", "pip", "install", "--quiet"]
    run([*uv, "--python", str(bin_dir / "python"), str(wheels[0])], cwd=work)
    yield bin_dir


def user_env() -> dict[str, str]:
    """The environment without anything pointing back at the checkout or a collector."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "ONDINE_OTEL_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    return env


def test_installed_wheel_runs_the_demo(installed: Path, tmp_path: Path) -> None:
    out = run(
        [str(installed / "ondine-otel"), "demo", "--rows", "20", "--metrics-port", "0"],
        cwd=tmp_path,
        env=user_env(),
    )
    assert "ondine-otel demo" in out and "20 rows" in out, out
    assert semconv.SPAN_RUN in out, out


def test_installed_wheel_exports_the_repositorys_ops_files(installed: Path, tmp_path: Path) -> None:
    out = tmp_path / "ops"
    run([str(installed / "ondine-otel"), "ops", "export", str(out)], cwd=tmp_path, env=user_env())
    paths = [path for paths in SELECTIONS.values() for path in paths]
    assert_same_files(out, repo_files(paths))


def test_installed_wheel_metadata(installed: Path, tmp_path: Path) -> None:
    probe = json.loads(
        run([str(installed / "python"), "-c", _METADATA_PROBE], cwd=tmp_path, env=user_env())
    )
    assert not probe["package"].startswith(str(REPO)), "imported the checkout, not the wheel"
    assert probe["typed"], "py.typed is missing: mypy would ignore the package's types"
    assert probe["license_files"], "the LICENSE file is not in the dist-info"
    classifiers = set(probe["classifiers"])
    for expected in (
        "License :: OSI Approved :: MIT License",
        "Operating System :: OS Independent",
        "Typing :: Typed",
        "Programming Language :: Python :: 3.10",
    ):
        assert expected in classifiers
    assert any(c.startswith("Development Status ::") for c in classifiers)
    assert any(c.startswith("Topic ::") for c in classifiers)
    assert probe["urls"], "no Project-URL"
    assert probe["requires_python"] == ">=3.10"
