"""Run a command with a real pseudo-terminal of a given size as its terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios
from collections.abc import Mapping, Sequence


def in_pty(argv: Sequence[str], env: Mapping[str, str], *, columns: int = 100,
           rows: int = 40, stderr_tty: bool = True, stdin_tty: bool = True,
           timeout: float = 120) -> tuple[int, str, str]:
    """(exit code, what the terminal showed, stderr when it was a pipe). The terminal is
    ``columns`` x ``rows`` (TIOCSWINSZ; ``COLUMNS``/``LINES`` are removed from ``env``
    so the program measures the terminal itself); without ``stdin_tty`` stdin is
    /dev/null (nobody answers a question)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    os.set_blocking(master, False)
    clean = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen(list(argv), stdin=slave if stdin_tty else subprocess.DEVNULL,
                            stdout=slave,
                            stderr=slave if stderr_tty else subprocess.PIPE,
                            env={"TERM": "xterm-256color", **clean})
    os.close(slave)
    shown = bytearray()
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    chunk = b""
                if chunk:
                    shown += chunk
                    continue
            if proc.poll() is not None:
                break
        err = proc.stderr.read().decode() if proc.stderr else ""
        return proc.wait(timeout), shown.decode(errors="replace"), err
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
