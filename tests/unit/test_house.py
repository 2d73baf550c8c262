"""The house rules the import graph and the runtime rely on, checked on the source with `ast`.

- No import of ondine_otel inside a function (the way to hide an import circle). The command
  line is the exception: it defers the demo's imports so that `ondine-otel check` starts fast.
- No mutable module-level state outside the runtime: every lock, map, set, list, flag or
  registry the package keeps lives in `ondine_otel.runtime.runtime.Runtime`.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ondine_otel"
RUNTIME = PACKAGE / "runtime" / "runtime.py"
LAZY_IMPORTS_ALLOWED = {PACKAGE / "cli"}

#: Classes whose instances are immutable values or identities, not state.
_VALUE_CLASSES = {
    "Decimal", "UUID", "TypeVar", "ContextVar", "InstrumentationScope", "MappingProxyType",
    "Literal", "Path", "RunSnapshot",
}  # fmt: skip


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _callee(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def _mutable(name: str, value: ast.expr | None) -> bool:
    """A container literal bound to a non-constant name, or a new instance of a class (a
    lock, a registry, a map...) that is not a plain value. Functions that build parsers or
    look up loggers and context keys return no state of ours."""
    if value is None:
        return False
    constant = name.lstrip("_").isupper()
    if isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)):
        return not constant
    if isinstance(value, ast.Call):
        callee = _callee(value)
        if callee in ("dict", "list", "set", "defaultdict", "deque"):
            return True
        return callee[:1].isupper() and callee not in _VALUE_CLASSES
    return False


def test_no_ondine_otel_import_inside_a_function() -> None:
    found = []
    for path in _modules():
        if any(path.is_relative_to(allowed) for allowed in LAZY_IMPORTS_ALLOWED):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith(
                    "ondine_otel"
                ):
                    found.append(f"{path.relative_to(PACKAGE)}:{inner.lineno}")
                if isinstance(inner, ast.Import) and any(
                    alias.name.startswith("ondine_otel") for alias in inner.names
                ):
                    found.append(f"{path.relative_to(PACKAGE)}:{inner.lineno}")
    assert not found, f"imports of ondine_otel inside functions: {found}"


def test_no_mutable_module_state_outside_the_runtime() -> None:
    found = []
    for path in _modules():
        tree = ast.parse(path.read_text())
        for node in tree.body:
            targets: list[ast.expr] = []
            value: ast.expr | None = None
            if isinstance(node, ast.Assign):
                targets, value = node.targets, node.value
            elif isinstance(node, ast.AnnAssign):
                targets, value = [node.target], node.value
            for target in targets:
                name = target.id if isinstance(target, ast.Name) else "__all__"
                if path != RUNTIME and name != "__all__" and _mutable(name, value):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {name}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Global) and path != RUNTIME:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} global {node.names}")
    assert not found, f"mutable module-level state outside the runtime: {found}"


def test_the_checks_see_what_they_look_for() -> None:
    """The detectors themselves: a planted dict and a planted call are caught."""
    planted = ast.parse(
        "_cache = {}\n_lock = threading.Lock()\nREGISTRY = Registry()\n"
        "logger = logging.getLogger('x')\n_LIMITS = {'a': 1}\n_ZERO = UUID(int=0)"
    )
    pairs = [
        (node.targets[0].id, node.value)
        for node in planted.body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    ]
    assert [_mutable(name, value) for name, value in pairs] == [
        True, True, True, False, False, False,
    ]  # fmt: skip
