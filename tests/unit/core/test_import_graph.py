"""The import graph: the layers of the four packages, and no cycles (docs/adr/0024).

Layers (docs/design.md, "Layout"):

- the contract package ``parhelia`` imports none of the processes;
- the daemon ``parheliad`` imports no worker (``modal_worker``): what both need is a
  format of the contract package;
- the CLI ``parhelia_cli`` (and the MCP bridge in it) imports neither the daemon nor the
  worker: it speaks to the daemon over its socket;
- the worker ``modal_worker`` imports neither the daemon nor the CLI (a sandbox holds
  only the worker and the contract);
- a Click command module (``parhelia_cli/commands/``) imports no other command module:
  what two commands share is a plain module (``parhelia_cli/flows/``...);
- no other module imports a command module either (the MCP bridge and the flows take
  what they share from ``parhelia_cli/flows/``): only the CLI's entry point
  (``parhelia_cli.main``) loads commands, by name, when one runs.

Every import statement counts: at module level, inside functions and classes, under
``if TYPE_CHECKING:``, relative ones, and ``importlib.import_module("...")`` with a
literal name. The guard reads the real tree (it finds the repository by its
``pyproject.toml``, wherever this file moves) and each rule is seen failing on a
violation planted in a copy of it.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import pysource


def _repo_root(start: Path) -> Path:
    for directory in start.parents:
        if (directory / "pyproject.toml").is_file() and (directory / "parheliad").is_dir():
            return directory
    raise RuntimeError(f"no repository above {start}")


ROOT = _repo_root(Path(__file__).resolve())
PACKAGES = {"parheliad": "parheliad", "modal_worker": "modal_worker",
            "parhelia": "proto/parhelia", "parhelia_cli": "parhelia_cli"}
"""Each importable package and its directory in the repository."""


def modules(root: Path) -> dict[str, Path]:
    """Every module of the four packages under ``root`` (generated gRPC code aside)."""
    out = {}
    for package, directory in PACKAGES.items():
        base = root / directory
        for path in base.rglob("*.py"):
            parts = [package, *path.relative_to(base).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            if "v1" in parts or "__pycache__" in parts:  # generated gRPC code
                continue
            out[".".join(parts)] = path
    return out


@dataclass(frozen=True)
class Statement:
    """One import as written: ``module`` (absolute, or relative with ``level`` dots),
    the ``names`` of a ``from`` import, and where it stands."""

    module: str
    names: tuple[str, ...]
    level: int
    nested: bool
    """Inside a function or class body."""
    type_only: bool
    """Under ``if TYPE_CHECKING:``."""


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_module_call(node: ast.AST) -> str | None:
    """The literal name of an ``importlib.import_module("...")`` call."""
    if not (isinstance(node, ast.Call) and node.args
            and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
        return None
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return node.args[0].value if name == "import_module" else None


def _walk(node: ast.AST, *, nested: bool, type_only: bool) -> Iterator[Statement]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import):
            for alias in child.names:
                yield Statement(alias.name, (), 0, nested, type_only)
        elif isinstance(child, ast.ImportFrom):
            yield Statement(child.module or "", tuple(a.name for a in child.names),
                            child.level, nested, type_only)
        elif isinstance(child, ast.If) and _is_type_checking(child):
            for branch, types in ((child.body, True), (child.orelse, type_only)):
                for stmt in branch:
                    yield from _walk(ast.Module([stmt], []), nested=nested, type_only=types)
        else:
            literal = _import_module_call(child)
            if literal is not None:
                yield Statement(literal, (), 0, nested, type_only)
            inner = nested or isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda)
            yield from _walk(child, nested=inner, type_only=type_only)


@functools.lru_cache(maxsize=4096)
def _statements(source: str) -> tuple[Statement, ...]:
    return tuple(_walk(pysource.parse(source), nested=False, type_only=False))


def _absolute(name: str, path: Path, stmt: Statement) -> str:
    """The absolute module a (possibly relative) ``from`` statement names."""
    if stmt.level == 0:
        return stmt.module
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    base = package[: len(package) - (stmt.level - 1)]
    return ".".join([*base, stmt.module] if stmt.module else base)


def graph(mods: dict[str, Path], *, nested: bool = True,
          types: bool = True) -> dict[str, set[str]]:
    """Module -> the modules of ``mods`` it imports. ``from a import b`` names ``a.b``
    when that is a module, else ``a``; ``nested`` counts imports inside functions and
    classes; ``types`` those under ``if TYPE_CHECKING:``."""
    out: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        for stmt in _statements(path.read_text(encoding="utf-8")):
            if (stmt.nested and not nested) or (stmt.type_only and not types):
                continue
            module = _absolute(name, path, stmt)
            subs = [f"{module}.{n}" for n in stmt.names if f"{module}.{n}" in mods]
            deps.update(subs)
            if len(subs) < len(stmt.names) or not stmt.names:
                deps.add(module)
        out[name] = {m for m in deps if m in mods and m != name}
    return out


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


CLI_ENTRY_POINT = "parhelia_cli.main"
"""Loads the command module of the command that runs (``load_command``)."""


def _is_command(module: str) -> bool:
    return module.startswith("parhelia_cli.commands.")


@dataclass(frozen=True)
class Rule:
    name: str
    forbids: Callable[[str, str], bool]
    """``forbids(importer, imported)``."""


def _layer(importer: str, *imported: str) -> Callable[[str, str], bool]:
    return lambda a, b: _in(a, importer) and any(_in(b, p) for p in imported)


RULES = (
    Rule("the daemon imports no worker", _layer("parheliad", "modal_worker")),
    Rule("the CLI imports neither daemon nor worker",
         _layer("parhelia_cli", "parheliad", "modal_worker")),
    Rule("the contract imports no process",
         _layer("parhelia", "parheliad", "parhelia_cli", "modal_worker")),
    Rule("the worker imports neither daemon nor CLI",
         _layer("modal_worker", "parheliad", "parhelia_cli")),
    Rule("a command module imports no other command module",
         lambda a, b: _is_command(a) and _is_command(b)),
    Rule("only the entry point loads a command module",
         lambda a, b: _is_command(b) and not _is_command(a) and a != CLI_ENTRY_POINT),
)
RULE = {rule.name: rule for rule in RULES}


def violations(deps: dict[str, set[str]], rule: Rule) -> set[str]:
    """The edges ``importer -> imported`` of ``deps`` that ``rule`` forbids."""
    return {f"{a} -> {b}" for a, bs in deps.items() for b in bs if rule.forbids(a, b)}


MODAL_SDK_HOME = "parheliad.backends.modal"
"""The one package that imports Modal's SDK (``modal``), lazily (ADR 0015)."""


def modal_sdk_importers(mods: dict[str, Path]) -> set[str]:
    """The modules outside :data:`MODAL_SDK_HOME` that import the ``modal`` SDK."""
    out = set()
    for name, path in mods.items():
        for stmt in _statements(path.read_text(encoding="utf-8")):
            module = _absolute(name, path, stmt)
            if (module == "modal" or module.startswith("modal.")) and not _in(
                    name, MODAL_SDK_HOME):
                out.add(name)
    return out


def cycles(deps: dict[str, set[str]]) -> list[list[str]]:
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
        for w in sorted(deps[v]):
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

    for v in sorted(deps):
        if v not in index:
            visit(v)
    return found


MODULES = modules(ROOT)
GRAPH = graph(MODULES)

# The store's table modules name ``Store`` and ``Tx`` in type hints only, which
# ``store.py`` and ``tx.py`` import to build them: a cycle of types, not of loading.
TYPE_ONLY_STORE = {"parheliad.store.store", "parheliad.store.tx", "parheliad.store.writer"}


# -- the real tree ------------------------------------------------------------------------


def test_the_guard_reads_the_whole_tree() -> None:
    assert len(MODULES) > 100
    for package in PACKAGES:
        assert sum(_in(m, package) for m in MODULES) >= 5, package
    assert sum(len(deps) for deps in GRAPH.values()) > 300


@pytest.mark.parametrize("rule", RULES, ids=[r.name for r in RULES])
def test_layer_rule_holds(rule: Rule) -> None:
    assert sorted(violations(GRAPH, rule)) == []


def test_only_the_modal_backend_imports_the_modal_sdk() -> None:
    assert modal_sdk_importers(MODULES) == set()


def test_no_import_cycles() -> None:
    """Imports inside functions count: a cycle that loads only because one side defers
    its import still hides which part depends on which."""
    assert cycles(graph(MODULES, types=False)) == []


def test_no_cycles_of_types_but_the_stores() -> None:
    """Type hints included, the only cycle left is the store's own (see
    ``TYPE_ONLY_STORE``); the runtime, checkpoint and session parts take what they use."""
    found = cycles(graph(MODULES, nested=False))
    assert all(m.startswith("parheliad.store.") for c in found for m in c), found
    assert all(set(c) >= TYPE_ONLY_STORE for c in found), found


# -- each rule seen failing on a planted violation -----------------------------------------


def _new(rule: str, planted: dict[str, Path]) -> set[str]:
    """The violations of ``rule`` in the planted tree's graph that the real tree lacks
    (``plant`` is the fixture of ``tests/unit/core/conftest.py``)."""
    return violations(graph(planted), RULE[rule]) - violations(GRAPH, RULE[rule])


def test_the_daemon_rule_sees_an_import_inside_a_function(plant) -> None:
    deps = plant("parheliad/core/planted.py",
                 "def helper():\n    from modal_worker import runner\n    return runner\n")
    assert _new("the daemon imports no worker", deps) == {
        "parheliad.core.planted -> modal_worker.runner"}


@pytest.mark.parametrize(("source", "imported"), [
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from parheliad.config "
     "import Config\n", "parheliad.config"),
    ("class Helper:\n    def run(self):\n        import modal_worker.agent\n",
     "modal_worker.agent"),
], ids=["type-only", "in-a-method"])
def test_the_cli_rule_sees_a_type_only_or_method_import(plant, source, imported) -> None:
    deps = plant("parhelia_cli/planted.py", source)
    assert _new("the CLI imports neither daemon nor worker", deps) == {
        f"parhelia_cli.planted -> {imported}"}


@pytest.mark.parametrize("process", ["parheliad.daemon", "parhelia_cli.main",
                                     "modal_worker.runner"])
def test_the_contract_rule_sees_each_process(plant, process) -> None:
    deps = plant("proto/parhelia/planted.py",
                 f"import importlib\n\ndef load():\n    return importlib.import_module("
                 f"{process!r})\n")
    assert _new("the contract imports no process", deps) == {f"parhelia.planted -> {process}"}


def test_the_worker_rule_sees_an_import_in_a_try(plant) -> None:
    deps = plant("modal_worker/planted.py",
                 "try:\n    from parheliad.store import rows\n"
                 "except ImportError:\n    rows = None\n")
    assert _new("the worker imports neither daemon nor CLI", deps) == {
        "modal_worker.planted -> parheliad.store.rows"}


@pytest.mark.parametrize("source", [
    "from . import task\n",
    "def later():\n    from parhelia_cli.commands.task import task\n    return task\n",
], ids=["relative", "deferred"])
def test_the_command_rule_sees_a_relative_or_deferred_import(plant, source) -> None:
    deps = plant("parhelia_cli/commands/planted.py", source)
    assert _new("a command module imports no other command module", deps) == {
        "parhelia_cli.commands.planted -> parhelia_cli.commands.task"}


@pytest.mark.parametrize(("path", "source"), [
    ("parhelia_cli/mcp_server/tools/planted.py",
     "from parhelia_cli.commands.task import submit_task\n"),
    ("parhelia_cli/flows/planted.py",
     "def later():\n    from ..commands import session\n    return session\n"),
], ids=["bridge", "flow"])
def test_the_entry_point_rule_sees_the_bridge_or_a_flow_import_a_command(
        plant, path: str, source: str) -> None:
    """What the MCP bridge imported from ``commands/`` before issue 23 (``submit_task``,
    ``follow``...) is refused wherever it comes back from."""
    deps = plant(path, source)
    importer = path.removesuffix(".py").replace("/", ".")
    imported = "parhelia_cli.commands.task" if "task" in source else \
        "parhelia_cli.commands.session"
    assert _new("only the entry point loads a command module", deps) == {
        f"{importer} -> {imported}"}
    assert not RULE["only the entry point loads a command module"].forbids(
        CLI_ENTRY_POINT, imported)


def test_the_modal_sdk_rule_sees_an_import_outside_the_backend(plant, tree_copy) -> None:
    plant("parheliad/core/planted.py", "def sandbox():\n    import modal.exception\n")
    plant("parheliad/backends/modal/planted.py", "import modal\n")
    assert modal_sdk_importers(modules(tree_copy)) == {"parheliad.core.planted"}


def test_the_cycle_check_sees_a_cycle_closed_inside_a_function(plant) -> None:
    plant("parheliad/core/planted_a.py", "from parheliad.core import planted_b\n")
    deps = graph(plant("parheliad/core/planted_b.py",
                       "def back():\n    from parheliad.core import planted_a\n"
                       "    return planted_a\n"))
    new = [c for c in cycles(deps) if c not in cycles(GRAPH)]
    assert new == [["parheliad.core.planted_a", "parheliad.core.planted_b"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
