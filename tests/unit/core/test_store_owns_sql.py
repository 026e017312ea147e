"""All SQL is in the store's typed tables (``parheliad/store/``): no other daemon module
touches a connection (``tx.conn``, ``.execute(...)``), so every query has a name, a
docstring and a row type, and the schema can change in one package. Seen failing on a
query planted in a copy of the tree."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

from tests.helpers import pysource
from tests.unit.core.test_import_graph import ROOT, modules

STORE = "parheliad.store"
SQL_CALLS = frozenset({"execute", "executemany", "executescript", "execute_fetchall"})


def raw_sql(mods: dict[str, Path]) -> dict[str, set[int]]:
    """Daemon modules outside the store that touch a connection, with the lines."""
    found: dict[str, set[int]] = {}
    for name, path in mods.items():
        if not name.startswith("parheliad.") or name == STORE or name.startswith(STORE + "."):
            continue
        for node in ast.walk(pysource.parse(path.read_text(encoding="utf-8"))):
            touches = (isinstance(node, ast.Attribute) and node.attr == "conn") or (
                isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in SQL_CALLS)
            if touches:
                found.setdefault(name, set()).add(node.lineno)
    return found


def test_no_daemon_module_outside_the_store_runs_sql() -> None:
    assert raw_sql(modules(ROOT)) == {}


@pytest.mark.parametrize("source", [
    "def busy(tx, sid):\n    return tx.conn.execute('SELECT 1').fetchone()\n",
    "async def count(store):\n    return await store.reader.execute_fetchall('SELECT 1')\n",
], ids=["writer-unit", "reader"])
def test_the_rule_sees_a_planted_query(tmp_path: Path, source: str) -> None:
    shutil.copytree(ROOT / "parheliad", tmp_path / "parheliad",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "parheliad" / "core" / "planted.py").write_text(source, encoding="utf-8")
    found = raw_sql({n: p for n, p in modules(tmp_path).items() if n.startswith("parheliad")})
    assert found.get("parheliad.core.planted") == {2}
