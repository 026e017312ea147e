"""`session attach` on Modal through the real SDK: an exec with a PTY (the stand-in's task
command router) in the sandbox runs `tmux attach` on the TUI's socket; keys go in, the
screen comes out, window resizes reach the tmux client, Ctrl-B D detaches, and a client
whose user went away is hung up.

A real tmux server stands in for the worker's TUI at the socket the worker uses (in the
sandbox's own /tmp)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from parhelia.tuisocket import socket_path
from parhelia.volume import LocalVolume
from parheliad.backends.modal import ModalTerminal
from tests.helpers.modal_backend import make_backend, script, start, worker_spec
from tests.helpers.real_tools import require
from tests.modal_host import state

pytestmark = pytest.mark.requires("tmux")


@pytest.fixture
def tui() -> Iterator[list[list[str]]]:
    """The tmux servers ``_attach`` starts, killed afterwards."""
    require("root", "the sandbox's socket path is root's (/tmp/parhelia-tmux-0)")
    servers: list[list[str]] = []
    yield servers
    for tmux in servers:
        subprocess.run([*tmux, "kill-server"], capture_output=True, check=False)


async def _attach(modal_standin: Any, tmp_path: Path, servers: list[list[str]], cid: str,
                  rows: int, cols: int, term: str) -> tuple[ModalTerminal, list[str]]:
    """A sandbox for ``cid`` (its worker idles), a tmux server whose pane echoes what is
    typed at the socket the worker's TUI uses in the sandbox's own /tmp, then an attach
    through a PTY exec: (the terminal, the tmux command of that server)."""
    backend = make_backend(modal_standin)
    spec = worker_spec(backend, script({"sleep": 60}), cid)
    sb_id = await start(backend, LocalVolume(tmp_path / "local"), spec)
    socket = Path(socket_path(cid, tmp=state.sandbox_tmp(sb_id), uid=0))
    await _until(lambda: socket.parent.parent.parent.is_dir())  # the sandbox's /tmp
    socket.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    tmux = ["tmux", "-S", str(socket), "-f", "/dev/null"]
    subprocess.run([*tmux, "new-session", "-d", "-s", "parhelia", "-x", "80", "-y", "24",
                    "cat"], check=True)
    servers.append(tmux)
    return await backend.open_terminal(sb_id, cid, backend.terminal_argv(cid), rows, cols,
                                       term), tmux


def _tmux(tmux: list[str], *args: str) -> str:
    return subprocess.run([*tmux, *args], capture_output=True, text=True,
                          check=False).stdout.strip()


async def _until(check: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


async def test_attach_types_sees_resizes_and_detaches_through_a_pty_exec(
        modal_standin, tmp_path: Path, tui: list[list[str]]) -> None:
    term, tmux = await _attach(modal_standin, tmp_path, tui, "c-att-1", 30, 100,
                               "xterm-256color")
    screen = bytearray()

    async def read() -> None:
        async for chunk in term.output():
            screen.extend(chunk)

    reader = asyncio.create_task(read())
    await _until(lambda: _tmux(tmux, "list-clients", "-F", "#{client_width}x"
                               "#{client_height}") == "100x30")
    await term.write(b"typed-through-the-pty\r")
    await _until(lambda: "typed-through-the-pty" in _tmux(tmux, "capture-pane", "-p"))
    await _until(lambda: b"typed-through-the-pty" in screen)

    await term.resize(40, 120)  # SIGWINCH reaches the tmux client
    await _until(lambda: _tmux(tmux, "list-clients", "-F", "#{client_width}x"
                               "#{client_height}") == "120x40")

    await term.write(b"\x02d")  # Ctrl-B D
    await asyncio.wait_for(reader, 20)
    assert await term.wait() == 0
    assert _tmux(tmux, "list-clients") == ""
    assert b"detached" in bytes(screen)
    assert _tmux(tmux, "has-session", "-t", "parhelia") == ""  # the TUI goes on


def test_the_stdin_calls_of_an_attach_exist_in_the_installed_sdk() -> None:
    """The recorder of test_sdk_signatures does not follow ``proc.stdin``: pinned here."""
    import inspect

    import modal.io_streams

    assert hasattr(modal.io_streams.StreamWriter.drain, "aio")
    inspect.signature(modal.io_streams.StreamWriter.write).bind(None, b"keys")


async def test_a_client_whose_user_went_away_is_hung_up(
        modal_standin, tmp_path: Path, tui: list[list[str]]) -> None:
    term, tmux = await _attach(modal_standin, tmp_path, tui, "c-att-2", 24, 80, "xterm")
    await _until(lambda: _tmux(tmux, "list-clients") != "")
    await term.close()
    await _until(lambda: _tmux(tmux, "list-clients") == "")
