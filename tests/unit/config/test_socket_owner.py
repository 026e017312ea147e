"""The daemon socket's owner check (:func:`parhelia.ownership.socket_problem`) on paths
as the user may give them (``PARHELIA_SOCKET``, ``--socket``): a ``..`` after a symbolic
link is the link target's parent, as the kernel resolves it, not what the text says."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from parhelia.ownership import socket_problem


@pytest.fixture
def layout(tmp_path: Path) -> Iterator[Path]:
    """``link -> evil/inner``; ``evil/run`` is writable by everyone and holds a listening
    socket; ``run`` (what ``link/../run`` reads as by text) does not exist."""
    root = tmp_path / "t"
    (root / "evil" / "inner").mkdir(parents=True)
    (root / "evil" / "run").mkdir()
    os.chmod(root / "evil" / "run", 0o777)  # noqa: S103 - the hole under test
    os.chmod(tmp_path, 0o700)
    (root / "link").symlink_to(root / "evil" / "inner")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(root / "evil" / "run" / "parheliad.sock"))
    listener.listen()
    yield root
    listener.close()


def test_a_dotdot_after_a_link_is_checked_where_it_leads(layout: Path) -> None:
    given = layout / "link" / ".." / "run" / "parheliad.sock"
    assert os.path.exists(given) and not (layout / "run").exists()
    for form in (given, str(given)):
        why = socket_problem(form)
        assert why is not None and "writable by other users" in why, why


def test_a_relative_socket_is_checked_from_the_working_directory(
        layout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(layout / "link")
    why = socket_problem("../run/parheliad.sock")
    assert why is not None and "writable by other users" in why, why
    os.chmod(layout / "evil" / "run", 0o700)
    assert socket_problem("../run/parheliad.sock") is None
