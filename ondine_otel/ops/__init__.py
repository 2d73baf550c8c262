"""The ops files (dashboards, rules, Alertmanager and Collector configs) for this version.

Why they travel with the package: the dashboards and alert rules query the metric names this
very version emits, so a user who installed from PyPI needs the matching copies without
cloning. The wheel carries them under ``ondine_otel/ops/files/`` (``force-include`` in
pyproject.toml, from the repository's ``deploy/`` and ``grafana/``); in a checkout (an
editable install) they are read from the repository itself. Either way they keep their
repository paths, so relative references between them (promtool tests naming
``../rules/...``) hold after ``export()``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

__all__ = ["SELECTIONS", "ExistingFiles", "OpsFile", "export", "files", "source_root"]

#: Each selection of ``ondine-otel ops export`` and the repository paths it writes.
SELECTIONS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "grafana": ("grafana/dashboards", "grafana/provisioning"),
        "prometheus": ("deploy/prometheus", "deploy/RUNBOOKS.md"),
        "alertmanager": ("deploy/alertmanager",),
        "collector": ("deploy/otel-collector",),
        "tempo": ("deploy/tempo",),
        "kubernetes": ("deploy/k8s",),
    }
)

_PACKAGE = Path(__file__).resolve().parent
_BUNDLED = _PACKAGE / "files"  # where the wheel puts them
_CHECKOUT = _PACKAGE.parents[1]  # the repository root, for an editable install
_SKIPPED = ("__pycache__",)


@dataclass(frozen=True)
class OpsFile:
    """One file: its repository path (also its path under the export directory) and source."""

    path: str
    source: Path


class ExistingFiles(FileExistsError):
    """``export()`` would overwrite files; nothing was written."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        shown = ", ".join(str(p) for p in paths[:3]) + (" ..." if len(paths) > 3 else "")
        super().__init__(f"{len(paths)} file(s) already exist: {shown}")


def source_root() -> Path:
    """The directory holding ``deploy/`` and ``grafana/``: the wheel's copy, else the checkout."""
    for root in (_BUNDLED, _CHECKOUT):
        if all((root / path).exists() for paths in SELECTIONS.values() for path in paths):
            return root
    raise FileNotFoundError(
        "the ops files are missing from this installation: reinstall ondine-otel from its "
        "wheel, or run from a complete checkout"
    )


def files(selections: Iterable[str] | None = None) -> list[OpsFile]:
    """The files of ``selections`` (all when None), sorted by repository path."""
    chosen = list(SELECTIONS) if selections is None else list(selections)
    unknown = [name for name in chosen if name not in SELECTIONS]
    if unknown:
        raise ValueError(f"unknown selection(s) {unknown}; choose from {list(SELECTIONS)}")
    root = source_root()
    found: dict[str, OpsFile] = {}
    for name in chosen:
        for path in SELECTIONS[name]:
            for source in _walk(root / path):
                relative = source.relative_to(root).as_posix()
                found[relative] = OpsFile(relative, source)
    return [found[key] for key in sorted(found)]


def _walk(path: Path) -> Iterator[Path]:
    if path.is_file():
        yield path
        return
    for child in sorted(path.rglob("*")):
        if child.is_file() and not any(part in _SKIPPED for part in child.parts):
            yield child


def export(
    directory: Path, selections: Iterable[str] | None = None, *, overwrite: bool = False
) -> list[Path]:
    """Copy the selected files under ``directory``, keeping their repository paths.

    Refuses (``ExistingFiles``) before writing anything when a target exists, unless
    ``overwrite``: a user's edited copy of a rule file is not silently replaced.
    """
    chosen = files(selections)
    targets = [directory / f.path for f in chosen]
    if not overwrite:
        existing = [target for target in targets if target.exists()]
        if existing:
            raise ExistingFiles(existing)
    for item, target in zip(chosen, targets, strict=True):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(item.source, target)
    return targets
