"""Reading files of an untrusted tree: regular files only, bounded.

A workspace (and the ``.git`` directory inside it) is written by the agent and by whoever
wrote the repository: any name may be a symlink, a FIFO (an ``open`` that never returns),
a device or a huge file. :func:`read_regular` opens without blocking, refuses everything
but a regular file and never reads more than asked.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_beneath(root: Path | str, path: Path | str, flags: int) -> int:
    """Open ``path`` (``root`` or a path under it) with ``flags``, resolving every component
    below ``root`` without following a symlink, through directory file descriptors. A
    worker reading a tree its sandboxed agent writes (the workspace, the agent's config
    dir) from outside the sandbox: the agent may swap a directory for a symlink to the
    user's home between a walk and a read; ``O_NOFOLLOW`` on the last name alone would
    still go through it. ``OSError`` (``ELOOP``, ``ENOTDIR``, ``EXDEV`` for a path that
    is not under ``root``)."""
    rel = os.path.relpath(path, root)
    parts = [] if rel == "." else rel.split(os.sep)
    if os.path.isabs(rel) or ".." in parts:
        raise OSError(errno.EXDEV, f"{path} is not under {root}")
    if not parts:
        return os.open(root, flags | os.O_CLOEXEC)
    dfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            nfd = os.open(part, _DIR_FLAGS, dir_fd=dfd)
            os.close(dfd)
            dfd = nfd
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    finally:
        os.close(dfd)


def read_regular(path: Path, limit: int, *, follow_symlinks: bool = False,
                 truncate: bool = False, root: Path | None = None
                 ) -> tuple[bytes, os.stat_result] | None:
    """``(bytes, stat)`` of the regular file at ``path``, or None: missing, not a regular
    file, a symlink (unless ``follow_symlinks``), unreadable, or larger than ``limit``
    (unless ``truncate``: then its first ``limit`` bytes). With ``root``, no directory
    below ``root`` is followed either (:func:`open_beneath`)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags) if root is None else open_beneath(root, path, flags)
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
