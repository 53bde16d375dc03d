"""The import graph of ``fcp_tune`` has no cycle (read from the source, nothing imported).

Every module is parsed with :mod:`ast`; each ``import`` / ``from ... import`` of an
``fcp_tune`` module (at any depth, lazy imports inside functions included, ``if
TYPE_CHECKING:`` blocks left out: they never run) is an edge. Importing ``a.b.c`` also runs
the ``__init__`` of every package above it, so that is an edge too, except to the
importer's own packages (a package's ``__init__`` may re-export its own modules).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "fcp_tune"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, me: str, is_package: bool, required: set[str] | None = None) -> set[str]:
    """Every module name ``tree`` imports at run time (relative imports resolved).

    ``required`` collects the names that must be modules (``import X``, ``from X import ...``).
    """
    found: set[str] = set()
    required = set() if required is None else required

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            required.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = me.split(".") if is_package else me.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            required.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # kept if a module
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the ``fcp_tune`` modules importing it runs (the root package's trivial ``__init__`` left out)."""
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        edges: set[str] = set()
        for target in _imports(ast.parse(path.read_text(), str(path)), name, path.name == "__init__.py"):
            if target not in files:
                continue
            parts = target.split(".")
            for k in range(2, len(parts) + 1):  # the module and every package above it
                dep = ".".join(parts[:k])
                if dep != name and not name.startswith(dep + ".") and dep in files:
                    edges.add(dep)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or ``None`` (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_fcp_tune_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 50 and "fcp_tune.policy.core" in graph["fcp_tune.planner.api"] | graph["fcp_tune.policy"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_imported_fcp_tune_module_exists():
    # A stale name (a renamed module) must fail here, not resolve to another checkout's copy.
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    files.update({module_name(p / "__init__.py"): p for p in ROOT.rglob("*") if p.is_dir()})  # namespace packages
    missing = []
    for name, path in files.items():
        if path.suffix != ".py":
            continue
        required: set[str] = set()
        _imports(ast.parse(path.read_text(), str(path)), name, path.name == "__init__.py", required)
        missing += [f"{name}: {t}" for t in required if t.split(".")[0] == "fcp_tune" and t not in files]
    assert not missing, missing


def test_policy_package_does_not_import_the_planner():
    graph = import_graph()
    for name, deps in graph.items():
        if name == "fcp_tune.policy" or name.startswith("fcp_tune.policy."):
            assert not [d for d in deps if d.startswith("fcp_tune.planner")], name


@pytest.mark.parametrize(
    "graph, cycle",
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"a"}}, ["a", "a"]),
    ],
)
def test_find_cycle_finds_a_planted_cycle(graph, cycle):
    assert find_cycle(graph) == cycle


def test_graph_sees_lazy_relative_and_package_imports(tmp_path):
    src = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from fcp_tune.x import hidden\n"
        "def f():\n    from .sib import thing\n"
        "import fcp_tune.pkg.mod\n"
    )
    found = _imports(ast.parse(src), "fcp_tune.pkg.me", False)
    assert "fcp_tune.pkg.sib" in found and "fcp_tune.pkg.mod" in found
    assert not any(t.startswith("fcp_tune.x") for t in found)
