"""The `haven` package has no import cycles (issue 11: the hub client's modules imported each other).

The graph is built statically, with `ast`, over every module under src/haven. An edge A -> B is any
`import` / `from ... import` in A that names B, at module level AND inside functions: a lazy import
inside a function still ties the two modules together (it only hides the cycle until call time), and
the point is one-way layering. Not counted: imports under `if TYPE_CHECKING:` (never executed) and
`importlib.import_module(...)` with a computed name (registries such as the Auto classes and the
pipeline task table, which are dispatch tables, not layering). Importing `a.b` runs `a/__init__.py`
first; that implicit parent edge is not counted (else every package whose __init__ re-exports a
child would be a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

def package_modules(root: Path = SRC) -> dict[str, tuple[Path, bool]]:
    """{dotted module name: (file, is_package)} for every .py file of the haven package."""
    found = {}
    for path in sorted((root / "haven").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = (path, is_package)
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    nodes, stack = [], [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
            elif isinstance(child, ast.Import | ast.ImportFrom):
                nodes.append(child)
            else:
                stack.append(child)
    return nodes


def import_graph(modules: dict[str, tuple[Path, bool]]) -> dict[str, set[str]]:
    """{module: modules of the package it imports}; each target is the deepest module that exists."""

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    module = f"{base}.{node.module}" if node.module else base
                else:
                    module = node.module or ""
                targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names]
            for target in targets:
                found = owner(target)
                if found and found != name:
                    graph[name].add(found)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def _describe(component: frozenset[str], graph: dict[str, set[str]]) -> str:
    edges = [f"{a} -> {b}" for a in sorted(component) for b in sorted(graph[a] & component)]
    return "; ".join(edges)


def test_the_graph_sees_module_and_function_level_imports(tmp_path):
    """The checker itself: a lazy import inside a function closes a cycle; TYPE_CHECKING does not."""
    pkg = tmp_path / "haven" / "sub"
    pkg.mkdir(parents=True)
    (tmp_path / "haven" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n")
    (pkg / "d.py").write_text("from .c import y\nfrom ..sub import e\n")
    (pkg / "e.py").write_text("import haven.sub.d\n")
    graph = import_graph(package_modules(tmp_path))
    assert graph["haven.sub.a"] == {"haven.sub.b"}
    assert graph["haven.sub.b"] == {"haven.sub.a"}
    assert graph["haven.sub.c"] == set()
    assert graph["haven.sub.d"] == {"haven.sub.c", "haven.sub.e"}
    assert set(strongly_connected(graph)) == {
        frozenset({"haven.sub.a", "haven.sub.b"}),
        frozenset({"haven.sub.d", "haven.sub.e"}),
    }


def test_hub_client_has_no_import_cycles():
    graph = import_graph(package_modules())
    hub = [c for c in strongly_connected(graph) if any(m == "haven.hub" or m.startswith("haven.hub.") for m in c)]
    assert not hub, "import cycles in haven.hub: " + " | ".join(_describe(c, graph) for c in hub)


def test_package_has_no_import_cycles():
    graph = import_graph(package_modules())
    cycles = strongly_connected(graph)
    assert not cycles, "import cycles: " + " | ".join(_describe(c, graph) for c in cycles)
