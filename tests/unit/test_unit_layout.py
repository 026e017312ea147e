"""The unit layer's refusals (``tests/unit/conftest.py``), each seen on a planted test:
a unit test asking for a fixture that starts real parts is refused at collection, and
one starting a daemon directly fails."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers.daemon import RunningDaemon, daemon_env, start_daemon
from tests.unit import conftest

UNIT = Path(conftest.__file__).parent


def test_a_unit_test_asking_for_a_daemon_fixture_is_refused_at_collection() -> None:
    name = "test_planted.py"  # a test module that does not exist: only its place counts
    planted = SimpleNamespace(fspath=UNIT / "core" / name, nodeid=f"core/{name}::test_x",
                              fixturenames=["tmp_path", "daemon"])
    elsewhere = SimpleNamespace(fspath=UNIT.parent / "integration" / name,
                                nodeid=f"integration/{name}::test_x", fixturenames=["daemon"])
    conftest.pytest_collection_modifyitems(None, [elsewhere])  # type: ignore[arg-type,list-item]
    with pytest.raises(pytest.UsageError, match=r"asks for \['daemon'\]: move it"):
        conftest.pytest_collection_modifyitems(None, [planted])  # type: ignore[arg-type,list-item]


def test_a_unit_test_starting_a_daemon_directly_fails(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="is in tests/unit but starts a real daemon"):
        start_daemon(tmp_path)
    with pytest.raises(pytest.fail.Exception, match="starts a real daemon"):
        RunningDaemon(tmp_path, daemon_env(tmp_path), ()).start(wait=False)
    assert not list(tmp_path.iterdir())  # nothing was started
