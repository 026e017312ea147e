"""The PTY of an attach, inside the sandbox (``python -m modal_worker tty ...``).

Modal 1.6.4's ``Sandbox.exec(..., pty=True)`` gives the exec a PTY sized once, from the
calling process's terminal (the daemon has none), and has no call to resize it later. So
an attach runs ``tty attach ID ROWS COLS -- ARGV``: it records which PTY it got under the
attach id, sets the size the user's terminal has, and becomes ARGV (``tmux attach``).
Each window resize is then ``tty resize ID ROWS COLS`` in another exec: the kernel
delivers SIGWINCH to the PTY's foreground process group (the tmux client), which redraws
at the new size. ``tty hangup ID`` sends SIGHUP there (a tmux client detaches) when the
user's connection is gone, so no phantom client stays attached.

Records live in a private directory (0700, this user's, never a symlink): a PTY path is
only ever read from there, and only a character device owned by this user is touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import stat
import struct
import sys
import tempfile
import termios
from pathlib import Path

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MAX_SIZE = 10_000
DIR_PREFIX = "parhelia-tty-"


class TtyError(Exception):
    pass


def registry() -> Path:
    """This user's private directory of attach records (created 0700, checked)."""
    path = Path(tempfile.gettempdir()) / f"{DIR_PREFIX}{os.geteuid()}"
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise TtyError(f"{path} is not a private directory of this user")
    return path


def check_id(value: str) -> str:
    if not ID_RE.match(value):
        raise TtyError(f"invalid attach id {value!r}")
    return value


def check_size(rows: int, cols: int) -> tuple[int, int]:
    if not (1 <= rows <= MAX_SIZE and 1 <= cols <= MAX_SIZE):
        raise TtyError(f"invalid window size {rows}x{cols}")
    return rows, cols


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def get_size(fd: int) -> tuple[int, int]:
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return rows, cols


def attach(attach_id: str, rows: int, cols: int, argv: list[str]) -> int:
    """Record this PTY under ``attach_id``, size it, then become ``argv``."""
    check_id(attach_id)
    check_size(rows, cols)
    if not argv:
        raise TtyError("no command to run")
    if not os.isatty(0):
        raise TtyError("standard input is not a terminal (run it in an exec with a PTY)")
    record = registry() / attach_id
    fd = os.open(record, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{os.getpid()} {os.ttyname(0)}")  # the pid stays: ARGV replaces us
    set_size(0, rows, cols)
    os.execvp(argv[0], argv)  # noqa: S606 (an argv, never a shell: tmux attach)
    return 127  # not reached


def _record(attach_id: str) -> tuple[int, str]:
    """(pid of the attached client, its PTY) as recorded by :func:`attach`."""
    record = registry() / check_id(attach_id)
    try:
        fd = os.open(record, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise TtyError(f"no attach {attach_id}") from None
    with os.fdopen(fd) as fh:
        pid, _, path = fh.read(300).strip().partition(" ")
    if not pid.isdigit() or not path.startswith("/dev/"):
        raise TtyError(f"attach {attach_id}: unreadable record")
    return int(pid), path


def _open_tty(attach_id: str) -> int:
    _pid, path = _record(attach_id)
    tty = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_NOFOLLOW)
    st = os.fstat(tty)
    if not stat.S_ISCHR(st.st_mode) or st.st_uid != os.geteuid():
        os.close(tty)
        raise TtyError(f"{path} is not a terminal of this user")
    return tty


def resize(attach_id: str, rows: int, cols: int) -> int:
    check_size(rows, cols)
    tty = _open_tty(attach_id)
    try:
        set_size(tty, rows, cols)
    finally:
        os.close(tty)
    return 0


def controlling_tty(pid: int) -> tuple[int, int] | None:
    """(major, minor) of the controlling terminal of ``pid`` (``/proc``), None if none."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat_line.rpartition(")")[2].split()
    tty_nr = int(fields[4]) if len(fields) > 4 and fields[4].lstrip("-").isdigit() else 0
    if tty_nr <= 0:
        return None
    return (tty_nr >> 8) & 0xFFF, (tty_nr & 0xFF) | ((tty_nr >> 12) & 0xFFF00)


def hangup(attach_id: str) -> int:
    """SIGHUP to the attached client (the process the attach became), if it still has the
    attach's PTY as its terminal (a reused pid is left alone); forget the record."""
    try:
        pid, path = _record(attach_id)
        rdev = os.stat(path).st_rdev
    except (TtyError, OSError):
        return 0  # already gone
    try:
        if controlling_tty(pid) == (os.major(rdev), os.minor(rdev)):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGHUP)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(registry() / attach_id)
    return 0


def main(argv: list[str]) -> int:
    """``tty attach ID ROWS COLS -- ARGV...`` | ``tty resize ID ROWS COLS`` |
    ``tty hangup ID``."""
    try:
        if len(argv) >= 5 and argv[0] == "attach" and argv[4] == "--":
            return attach(argv[1], int(argv[2]), int(argv[3]), argv[5:])
        if len(argv) == 4 and argv[0] == "resize":
            return resize(argv[1], int(argv[2]), int(argv[3]))
        if len(argv) == 2 and argv[0] == "hangup":
            return hangup(argv[1])
        raise TtyError("usage: tty attach ID ROWS COLS -- ARGV | tty resize ID ROWS COLS | "
                       "tty hangup ID")
    except (TtyError, ValueError, OSError) as exc:
        print(f"tty: {exc}", file=sys.stderr)
        return 2
