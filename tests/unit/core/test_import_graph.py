"""The import graph: no module imports itself back through others, and the daemon does
not depend on the worker's process (``modal_worker.runner``).

A cycle works only as long as the modules happen to load in one order, and hides
which part depends on which. Module-level imports count, and those under
``if TYPE_CHECKING:`` too (a reader and mypy see them); for the runner rule, imports
inside functions as well.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"parheliad": ROOT / "parheliad", "modal_worker": ROOT / "modal_worker",
            "parhelia": ROOT / "proto" / "parhelia", "parhelia_cli": ROOT / "parhelia_cli"}


def _modules() -> dict[str, Path]:
    out = {}
    for package, root in PACKAGES.items():
        for path in root.rglob("*.py"):
            parts = [package, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            if "v1" in parts:  # generated gRPC code
                continue
            out[".".join(parts)] = path
    return out


MODULES = _modules()


# The store's table modules name ``Store`` and ``Tx`` in type hints only, which
# ``store.py`` and ``tx.py`` import to build them: a cycle of types, not of loading.
TYPE_ONLY_STORE = {"parheliad.store.store", "parheliad.store.tx", "parheliad.store.writer"}


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(nodes: list[ast.stmt], *, nested: bool, types: bool = True) -> Iterator[str]:
    """The modules named by the import statements in ``nodes``: ``from a import b``
    names ``a.b`` when that is a module, else ``a``; ``nested`` also walks function
    bodies; ``types`` includes the ``if TYPE_CHECKING:`` blocks."""
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                yield sub if sub in MODULES else node.module
        elif isinstance(node, ast.If):
            if types or not _is_type_checking(node):
                yield from _imports(node.body + node.orelse, nested=nested, types=types)
        elif nested:
            yield from _imports([n for n in ast.iter_child_nodes(node)
                                 if isinstance(n, ast.stmt)], nested=True, types=types)


def _graph(*, nested: bool, types: bool = True) -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        body = ast.parse(path.read_text(encoding="utf-8")).body
        graph[name] = {m for m in _imports(body, nested=nested, types=types)
                       if m in MODULES and m != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    assert _cycles(_graph(nested=False, types=False)) == []


def test_no_cycles_of_types_but_the_stores() -> None:
    """Type hints included, the only cycle left is the store's own (see
    ``TYPE_ONLY_STORE``); the runtime, checkpoint and session parts take what they use."""
    cycles = _cycles(_graph(nested=False))
    assert all(m.startswith("parheliad.store.") for c in cycles for m in c), cycles
    assert all(set(c) >= TYPE_ONLY_STORE for c in cycles), cycles


def test_the_cycle_check_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_daemon_never_imports_the_worker_process() -> None:
    graph = _graph(nested=True)
    offenders = sorted(m for m, deps in graph.items()
                       if m.startswith("parheliad") and "modal_worker.runner" in deps)
    assert offenders == []
