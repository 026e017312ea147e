"""Reading files of an untrusted tree: regular files only, bounded.

A workspace (and the ``.git`` directory inside it) is written by the agent and by whoever
wrote the repository: any name may be a symlink, a FIFO (an ``open`` that never returns),
a device or a huge file. :func:`read_regular` opens without blocking, refuses everything
but a regular file and never reads more than asked.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def read_regular(path: Path, limit: int, *, follow_symlinks: bool = False,
                 truncate: bool = False) -> tuple[bytes, os.stat_result] | None:
    """``(bytes, stat)`` of the regular file at ``path``, or None: missing, not a regular
    file, a symlink (unless ``follow_symlinks``), unreadable, or larger than ``limit``
    (unless ``truncate``: then its first ``limit`` bytes)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_size > limit and not truncate):
            return None
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(limit + 1)[:limit], st
    except OSError:
        return None
    finally:
        os.close(fd)
