"""The backend contract holds (docs/adr/0017, ADR 0025): no core module names a backend,
optional capabilities are asked with ``isinstance`` on their protocols (never
``getattr``), copies between the volumes happen in ``core/volsync.py`` only, and each
backend class offers exactly the capabilities and terms it says.

"The core" is every daemon module outside ``parheliad/backends/`` that the daemon's
parts are made of: ``parheliad.core``, ``parheliad.api`` and ``parheliad.store``. Each
rule is seen failing on a violation planted in a copy of the tree.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

from parhelia import backends as vocabulary
from parhelia.backends import BACKENDS
from parheliad.backends import base
from parheliad.backends.local import LocalBackend
from parheliad.backends.modal.backend import ModalBackend
from parheliad.backends.registry import CLASSES, FACTORIES, terms
from tests.helpers import pysource
from tests.unit.core.test_import_graph import ROOT, _absolute, _statements, modules

CORE = ("parheliad.core", "parheliad.api", "parheliad.store")
CONTRACT_MODULES = {"parheliad.backends", "parheliad.backends.base",
                    "parheliad.backends.registry"}
"""What the core may import of ``parheliad/backends/``: the contract and the registry."""
NAMES = frozenset(BACKENDS)
NAMING_CONSTANTS = frozenset(n for n in dir(vocabulary)
                             if n.isupper() and n != "DEFAULT_BACKEND"
                             and isinstance(getattr(vocabulary, n), str)
                             and getattr(vocabulary, n) in NAMES)
"""``LOCAL``, ``MODAL``: a constant of the vocabulary that is one backend's name.
(``DEFAULT_BACKEND`` and ``BACKENDS`` are configuration, not a choice of backend.)"""
COPIES = ("push", "pull")
COPIES_HOME = "parheliad.core.volsync"


@functools.lru_cache(maxsize=4096)
def _parse(source: str) -> ast.Module:
    return pysource.parse(source)


def _in_core(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in CORE)


def naming(mods: dict[str, Path]) -> set[str]:
    """``module: what`` for every place a core module names a backend: it imports a
    backend's module (at any depth, relative or not), a vocabulary constant that is one
    backend's name, or spells a backend's name as a string of its own."""
    found = set()
    for name, path in mods.items():
        if not _in_core(name):
            continue
        source = path.read_text(encoding="utf-8")
        for stmt in _statements(source):
            module = _absolute(name, path, stmt)
            targets = {module} | {f"{module}.{n}" for n in stmt.names
                                  if f"{module}.{n}" in mods}
            found.update(f"{name}: imports {t}" for t in targets
                         if t.startswith("parheliad.backends.") and t not in CONTRACT_MODULES)
            if module == "parhelia.backends":
                found.update(f"{name}: imports {n}" for n in stmt.names
                             if n in NAMING_CONSTANTS)
        for node in ast.walk(_parse(source)):
            if isinstance(node, ast.Attribute) and node.attr in NAMING_CONSTANTS:
                found.add(f"{name}: uses {node.attr}")
            elif isinstance(node, ast.Constant) and node.value in NAMES:
                found.add(f"{name}: spells {node.value!r}")
    return found


def capability_probes(mods: dict[str, Path]) -> set[str]:
    """``module:line`` of every ``getattr``/``hasattr`` on a backend in the core (an
    optional capability is an ``isinstance`` of its protocol, typed, never a probe)."""
    found = set()
    for name, path in mods.items():
        if not _in_core(name):
            continue
        for node in ast.walk(_parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                    node.func.id in ("getattr", "hasattr") and node.args and \
                    "backend" in ast.unparse(node.args[0]).lower():
                found.add(f"{name}:{node.lineno}")
    return found


def copy_calls(mods: dict[str, Path]) -> set[str]:
    """``module:line`` of every ``.push(``/``.pull(`` call in the core outside
    :data:`COPIES_HOME` (the volumes meet at volsync's fixed points only)."""
    found = set()
    for name, path in mods.items():
        if not _in_core(name) or name == COPIES_HOME:
            continue
        for node in ast.walk(_parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr in COPIES:
                found.add(f"{name}:{node.lineno}")
    return found


MODULES = modules(ROOT)


# -- the real tree -----------------------------------------------------------------------


def test_the_rules_read_the_core() -> None:
    assert sum(_in_core(m) for m in MODULES) > 40


def test_no_core_module_names_a_backend() -> None:
    assert naming(MODULES) == set()


def test_capabilities_are_asked_by_protocol_not_probed() -> None:
    assert capability_probes(MODULES) == set()


def test_copies_between_the_volumes_happen_in_volsync_only() -> None:
    assert copy_calls(MODULES) == set()


CAPABILITIES = (base.ArgvAttach, base.DaemonTerminal, base.SshTunnel, base.OwnCredential,
                base.ComputeBilling, base.SelfCheck, base.SecretCloner)
OFFERED = {LocalBackend: {base.ArgvAttach},
           ModalBackend: {base.DaemonTerminal, base.SshTunnel, base.OwnCredential,
                          base.ComputeBilling, base.SelfCheck, base.SecretCloner}}


@pytest.mark.parametrize("cls", list(OFFERED), ids=lambda c: c.__name__)
def test_each_backend_offers_the_capabilities_it_says(cls: type, tmp_path: Path) -> None:
    """Checked on instances (``runtime_checkable`` sees methods), built as the registry
    builds them (the Modal one imports no SDK to be built)."""
    from parhelia.paths import Paths
    from parheliad.config import Config

    paths = Paths(home=tmp_path, config_file=tmp_path / "c.toml", state_dir=tmp_path,
                  data_dir=tmp_path, socket=tmp_path / "s")
    name = next(n for n, where in CLASSES.items() if where.endswith(":" + cls.__name__))
    backend = FACTORIES[name](Config(), paths, {"HOME": str(tmp_path)}, "owner")
    assert type(backend) is cls
    offered = {c for c in CAPABILITIES if isinstance(backend, c)}
    assert offered == OFFERED[cls]
    assert backend.terms is terms(name) is cls.terms  # type: ignore[attr-defined]


def test_every_backend_has_a_class_and_terms() -> None:
    assert tuple(CLASSES) == tuple(FACTORIES) == BACKENDS
    assert terms("local").compute_priced is False and terms("local").free_compute
    modal = terms("modal")
    assert modal.compute_priced and modal.max_task_timeout_seconds == 85_800
    assert "24 h" in modal.timeout_limit
    assert terms("no-such-backend") == base.Terms()


# -- each rule seen failing on a planted violation (``plant``: tests/unit/core/conftest.py)


@pytest.mark.parametrize(("source", "finding"), [
    ("from parheliad.backends.modal import TASK_TIMEOUT_MAX_S\n",
     "imports parheliad.backends.modal"),
    ("def later():\n    from ..backends import local\n    return local\n",
     "imports parheliad.backends.local"),
    ("from parhelia.backends import MODAL\n", "imports MODAL"),
    ("import parhelia.backends as b\n\ndef free(name):\n    return name == b.LOCAL\n",
     "uses LOCAL"),
    ("def free(name):\n    return name == 'local'\n", "spells 'local'"),
], ids=["modal-constant", "relative-deferred", "vocabulary-name", "attribute", "literal"])
def test_the_naming_rule_sees_a_planted_name(plant, source: str, finding: str) -> None:
    found = naming(plant("parheliad/core/planted.py", source)) - naming(MODULES)
    assert any(f.startswith("parheliad.core.planted: " + finding) for f in found), found


def test_the_naming_rule_leaves_the_backends_package_alone(plant) -> None:
    assert naming(plant("parheliad/backends/planted.py", "from parhelia.backends import "
                        "MODAL\nNAME = 'modal'\n")) == naming(MODULES)


def test_the_probe_rule_sees_a_getattr_on_a_backend(plant) -> None:
    found = capability_probes(plant(
        "parheliad/api/planted.py",
        "def opener(backend):\n    return getattr(backend, 'open_terminal', None)\n"))
    assert found - capability_probes(MODULES) == {"parheliad.api.planted:2"}


def test_the_copy_rule_sees_a_pull_outside_volsync(plant) -> None:
    found = copy_calls(plant(
        "parheliad/core/planted.py",
        "async def fetch(backend, local, key):\n    await backend.pull(local, [key])\n"))
    assert found - copy_calls(MODULES) == {"parheliad.core.planted:2"}
