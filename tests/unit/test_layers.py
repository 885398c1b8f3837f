"""The architecture holds: no import cycle, no layer importing one above it, one driver module.

docs/architecture.md draws the layers; this test is what keeps the drawing true. Every
``import`` counts, including those inside functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ledger", "projections", "cli")
LIMIT = 400  # lines; a longer module says why in a line starting with "Size:" in its docstring


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module of ours (and every third-party top-level name) that ``name`` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            out.add(target)
            # `from pkg import module` names a module, not an attribute
            named = (f"{target}.{alias.name}" for alias in node.names)
            out.update(m for m in named if m in MODULES)
    return out


def _ours(target: str) -> str | None:
    """The module of ours ``target`` names (its longest known prefix), if any."""
    parts = target.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


GRAPH = {
    name: {m for t in _imports(name, path) if (m := _ours(t)) is not None and m != name}
    for name, path in MODULES.items()
}
THIRD_PARTY = {name: {t.split(".")[0] for t in _imports(name, path)} for name, path in MODULES.items()}


def test_no_import_cycle() -> None:
    # Packages' __init__ modules are left out: importing a submodule runs them, but they hold nothing here.
    inits = {n for n, path in MODULES.items() if path.name == "__init__.py"}
    graph = {n: deps - inits for n, deps in GRAPH.items() if n not in inits}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep):], dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


APPLICATION = (  # layer 3
    "ledger.application", "ledger.ingest", "ledger.verify", "ledger.monthly", "ledger.support_read",
    "ledger.month_read", "ledger.checkpoint")


def _layer(module: str) -> int:
    """0 domain, 1 persistence, 2 projections, 3 application and ingest, 4 composition root, 5 edges."""
    if module.startswith("cli"):
        return 5
    if module == "ledger.bootstrap":
        return 4
    if module.startswith(APPLICATION):
        return 3
    if module.startswith("projections"):
        return 2
    if module.startswith("ledger.persistence"):
        return 1
    return 0


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_layer_imports_one_above_it(module: str) -> None:
    above = sorted(dep for dep in GRAPH[module] if _layer(dep) > _layer(module))
    assert not above, f"{module} (layer {_layer(module)}) imports {above}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_drivers_only_in_their_backend(module: str) -> None:
    if module.startswith("ledger.persistence.postgres"):
        return
    assert "psycopg" not in THIRD_PARTY[module], module
    assert "psycopg_pool" not in THIRD_PARTY[module], module
    assert not any(t.startswith("eventsourcing.postgres") for t in _imports(module, MODULES[module])), module


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_size(module: str) -> None:
    path = MODULES[module]
    text = path.read_text(encoding="utf-8")
    lines = text.count("\n")
    if lines <= LIMIT:
        return
    doc = ast.get_docstring(ast.parse(text)) or ""
    assert any(line.startswith("Size:") for line in doc.splitlines()), (
        f"{path.relative_to(ROOT)} has {lines} lines and no 'Size:' reason in its docstring"
    )


def test_the_graph_is_not_empty() -> None:
    # The checks above would pass vacuously on a parse that found nothing.
    assert len(MODULES) > 20
    assert GRAPH["ledger.events"]
    assert any(GRAPH[m] for m in MODULES if m.startswith("cli"))
