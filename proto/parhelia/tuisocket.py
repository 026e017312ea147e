"""Where a container's interactive TUI listens, and how a terminal attaches to it.

The worker runs the TUI in tmux on a private socket (``modal_worker.tui``, ADR 0020); the
daemon's backends tell the user's terminal how to reach it. Both use this one layout.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

SESSION_NAME = "parhelia"
SOCKET_NAME = "s"
DIR_PREFIX = "parhelia-tmux-"


def socket_path(container_id: str, *, tmp: str | None = None, uid: int | None = None) -> str:
    """Where a container's TUI listens: ``<tmp>/parhelia-tmux-<uid>/<container>/s`` (short,
    whatever the data directory: a Unix socket path has about 100 bytes)."""
    owner = os.geteuid() if uid is None else uid
    base = Path(tmp or tempfile.gettempdir()) / f"{DIR_PREFIX}{owner}"
    return str(base / container_id / SOCKET_NAME)


def unsafe_dir(path: Path) -> str | None:
    """Why ``path`` is not a private directory of this user (None when it is): it must be
    a real directory (no symlink), owned by the effective uid, with no group or other
    permission."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return f"{path} does not exist"
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    if st.st_uid != os.geteuid():
        return f"{path} belongs to uid {st.st_uid}, not {os.geteuid()}"
    if st.st_mode & 0o077:
        return f"{path} is open to other users (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def attach_argv(socket: str, tmux: str = "tmux") -> list[str]:
    """What a user's terminal runs to attach (with ``TMUX`` unset, so it also works
    nested in the user's own tmux). ``-f /dev/null``: should the server be gone, the
    client starts none that would read a configuration."""
    return [tmux, "-S", socket, "-f", os.devnull, "attach-session", "-t", SESSION_NAME]
