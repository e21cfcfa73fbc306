"""The import graph of gradientflow has no cycle.

Every import of a gradientflow module (``import gradientflow.x`` / ``from gradientflow.x import
y``), at module level or inside a function, except under ``if TYPE_CHECKING:``, is read with
``ast`` from every file under src/gradientflow. A lazy import inside a function still makes a
dependency: data flows one way, so lower layers never reach up, not even lazily. The one
exception is the display protocol: ``__str__``, ``__repr__`` and ``_repr_html_`` of a data
class (Trace, Diagnosis, ...) may import the presentation layer that renders it, because Python
and Jupyter call them by name.
"""

from __future__ import annotations

import ast
from pathlib import Path

DISPLAY_HOOKS = frozenset({"__str__", "__repr__", "_repr_html_"})
SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "gradientflow"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module, module: str, is_pkg: bool, modules: set[str]) -> set[str]:
    found: set[str] = set()
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack += node.orelse
        elif isinstance(node, ast.FunctionDef) and node.name in DISPLAY_HOOKS:
            continue
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("gradientflow")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_pkg else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base.startswith("gradientflow"):
                # `from pkg import submodule` depends on the submodule; `from mod import name`
                # on the module that defines the name
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in modules else base)
        else:
            stack += list(ast.iter_child_nodes(node))
    return found


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        targets = _imports(tree, name, path.name == "__init__.py", set(files))
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_the_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 30  # the walk found the package
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
