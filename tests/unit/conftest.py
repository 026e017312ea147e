"""Unit tests: this process, files and a real SQLite store; nothing that starts a daemon,
the real CLI as a subprocess, workers or the real Claude Code CLI. Asking for a fixture
that does is refused at collection, and starting a daemon directly (``start_daemon``, a
``RunningDaemon``) fails the test, so a test that needs one goes to
``tests/integration`` (or ``tests/e2e``) where the layout says so."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from parheliad.store import Store, open_store
from parheliad.store.rows import EventRow

REAL_PARTS = frozenset({"daemon", "cli", "client", "shared_daemon", "shared_client", "harness",
                        "harness_factory", "claude_bin", "modal_standin"})
"""Fixtures that start real parts: not for unit tests."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unit = Path(__file__).parent
    for item in items:
        if unit not in Path(str(item.fspath)).parents:
            continue
        wanted = REAL_PARTS & set(getattr(item, "fixturenames", ()))
        if wanted:
            raise pytest.UsageError(
                f"{item.nodeid} is in tests/unit but asks for {sorted(wanted)}: move it to "
                f"tests/integration or tests/e2e")


@pytest.fixture(autouse=True)
def _no_real_daemon(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit test that starts a daemon itself fails, saying where it belongs."""
    from tests.helpers import daemon

    monkeypatch.setattr(daemon, "REFUSED", f"{request.node.nodeid} is in tests/unit but "
                        "starts a real daemon: move it to tests/integration or tests/e2e")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A real store on a fresh database; ``store.published`` lists the events it handed
    to the bus after each commit, in order."""
    published: list[EventRow] = []
    s = await open_store(tmp_path / "db.sqlite", on_commit=published.extend)
    s.published = published  # type: ignore[attr-defined]
    yield s
    await s.close()
