"""The layout's rules, checked on the source: imports point cli -> bench -> service -> worker -> model, and
Redis is reached only through worker/store.py."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("model", "worker", "service", "bench", "cli")  # each may import only those before it


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imports_of(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name.split(".")[0] for alias in node.names}
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return {node.module.split(".")[0]}
    return set()


def _imports(path: Path) -> set[str]:
    """Top-level names of every module imported anywhere in the file, function bodies included."""
    return {name for node in ast.walk(ast.parse(path.read_text(), str(path))) for name in _imports_of(node)}


@pytest.mark.parametrize("package", LAYERS)
def test_imports_point_down_the_layers(package):
    above = set(LAYERS[LAYERS.index(package) + 1:])
    wrong = {str(p.relative_to(ROOT)): sorted(_imports(p) & above) for p in _modules(package)}
    assert not {p: names for p, names in wrong.items() if names}, f"{package}/ may not import {sorted(above)}"


def _reaches_redis(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if "redis" in _imports_of(node):
            found.append(f"line {node.lineno}: imports redis")
        elif isinstance(node, ast.Attribute) and node.attr in ("r", "_r") and not (
                isinstance(node.value, ast.Name) and node.value.id == "self"):
            found.append(f"line {node.lineno}: .{node.attr} of another object")
    return found


def test_worker_and_service_reach_redis_only_through_the_store():
    store = ROOT / "worker" / "store.py"
    offenders = {str(p.relative_to(ROOT)): found for package in ("worker", "service") for p in _modules(package)
                 if p != store and (found := _reaches_redis(p))}
    assert not offenders, f"Redis outside worker/store.py: {offenders}"
    assert _reaches_redis(store)  # the check sees an import of redis where there is one


def test_every_package_says_what_it_holds_and_may_import():
    for package in LAYERS:
        doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text()))
        assert doc and "import" in doc, f"{package}/__init__.py needs a docstring saying what it may import"
