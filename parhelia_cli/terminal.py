"""The user's terminal relayed through the daemon (``session attach`` on Modal, ADR 0022).

The terminal is put in raw mode (every key, Ctrl-B D included, goes to the remote tmux
client), its window size is sent first and again on every SIGWINCH, and the remote PTY's
bytes are written as they come. The terminal's mode is restored however the attach ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import signal
import struct
import sys
import termios
import threading
import tty
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from parhelia_cli.api import Api

READ_CHUNK = 4096
DEFAULT_SIZE = (24, 80)


def window_size(fd: int) -> tuple[int, int]:
    """(rows, cols) of the terminal on ``fd`` (24 x 80 when it is none)."""
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ,
                                                             b"\0" * 8))
    except OSError:
        return DEFAULT_SIZE
    return (rows, cols) if rows and cols else DEFAULT_SIZE


def relay(api: Api, session_id: str, *, stdin: int = 0, stdout: int = 1) -> int:
    """Attach the terminal on ``stdin``/``stdout`` to ``session_id`` until the attach ends;
    the remote exit code (0: the client detached)."""
    from parhelia.v1 import sessions_pb2

    msg = sessions_pb2.TerminalInput
    inbox: queue.Queue[Any] = queue.Queue()
    rows, cols = window_size(stdout)
    inbox.put(msg(session_id=session_id, rows=rows, cols=cols,
                  term=os.environ.get("TERM", "")))

    def requests() -> Iterator[Any]:
        while (item := inbox.get()) is not None:
            yield item

    def keys() -> None:
        while True:
            try:
                data = os.read(stdin, READ_CHUNK)
            except OSError:
                return
            if not data:
                return
            inbox.put(msg(data=data))

    def resized(signum: int, frame: Any) -> None:
        r, c = window_size(stdout)
        inbox.put(msg(rows=r, cols=c))

    saved = termios.tcgetattr(stdin) if os.isatty(stdin) else None
    previous = signal.signal(signal.SIGWINCH, resized) \
        if threading.current_thread() is threading.main_thread() else None
    code = 0
    try:
        if saved is not None:
            tty.setraw(stdin, termios.TCSANOW)
        threading.Thread(target=keys, name="attach-keys", daemon=True).start()
        for out in api.sessions.attach_terminal(requests()):
            if out.data:
                _write_all(stdout, out.data)
            if out.ended:
                code = out.exit_code
                break
    finally:
        inbox.put(None)
        if saved is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        if previous is not None:
            signal.signal(signal.SIGWINCH, previous)
        sys.stdout.flush()
    return code


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
