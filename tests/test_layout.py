"""The layout's rules, checked on the source: no import circle, and imports point down.

    app.py, server/      the process: settings, command line, waitress, composition
    admin/               the control panel (a client of the SCIM service)
    scim/                the SCIM service and its API blueprint
    storage/             the repository: documents, not SCIM, not HTTP

Every import counts, also one inside a function or under ``TYPE_CHECKING``: a circle hidden
there is still a circle for the reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("server", "admin", "scim", "storage", "bench")

# What each layer may not import (by top-level name).
FORBIDDEN = {
    "storage": {"scim", "admin", "server", "app", "bench", "flask", "werkzeug"},
    "scim": {"admin", "server", "app", "bench"},
    "admin": {"server", "app", "bench"},
    "server": {"app", "bench"},
}


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for app.py and every module of the packages."""
    found = {"app": ROOT / "app.py"}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The project modules (and top-level names outside it) that ``name`` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # "from scim import constants" imports the module scim.constants.
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in MODULES else base)
    return targets


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _project_edges(name: str) -> set[str]:
    return {target for target in GRAPH[name] if target in MODULES and target != name}


def test_no_module_imports_itself_back_through_a_circle() -> None:
    # Tarjan's strongly connected components: a component of two or more is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(_project_edges(node)):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for name in sorted(MODULES):
        if name not in index:
            visit(name)
    assert circles == []


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_imports_point_down(layer: str) -> None:
    wrong = {
        (name, target)
        for name, targets in GRAPH.items()
        if name == layer or name.startswith(layer + ".")
        for target in targets
        if target.split(".")[0] in FORBIDDEN[layer]
    }
    assert wrong == set()


def test_the_scim_service_knows_no_flask() -> None:
    """Only the blueprints (scim/api) turn HTTP into service calls (STYLE.md, "The shape")."""
    wrong = {
        (name, target)
        for name, targets in GRAPH.items()
        if name.startswith("scim") and not name.startswith("scim.api")
        for target in targets
        if target.split(".")[0] == "flask"
    }
    assert wrong == set()


def test_every_package_says_what_lives_there() -> None:
    for name, path in MODULES.items():
        if path.name == "__init__.py" and name != "bench":
            docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
            assert docstring, f"{path.relative_to(ROOT)} has no docstring"
