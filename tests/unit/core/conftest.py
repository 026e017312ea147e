"""The core's tests run a real store and runtime in this process against a scripted
backend (``tests/helpers/scripted_backend.py``); the guard tests plant violations in a
copy of the source tree (``plant``)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.scripted_backend import backend, runtime  # noqa: F401 - fixtures
from tests.unit.core.test_import_graph import PACKAGES, ROOT, modules


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the four packages, to plant violations in."""
    root = tmp_path_factory.mktemp("tree")
    for directory in PACKAGES.values():
        shutil.copytree(ROOT / directory, root / directory,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture
def plant(tree_copy: Path) -> Iterator[Callable[[str, str], dict[str, Path]]]:
    """``plant(path, source)`` writes a module into the copy and returns the copy's
    modules; every planted file is removed after the test."""
    planted: list[Path] = []

    def _plant(path: str, source: str) -> dict[str, Path]:
        target = tree_copy / path
        assert not target.exists(), path
        target.write_text(source, encoding="utf-8")
        planted.append(target)
        return modules(tree_copy)

    yield _plant
    for path in planted:
        path.unlink()
