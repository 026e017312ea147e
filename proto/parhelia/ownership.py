"""Is a path ours? The one check the daemon and the CLI make before trusting a file,
a directory or a socket: owned by this user (or root) and not writable by others.

Another local user who owns, or can write, a daemon's home, its config or its socket
directory could plant an agent command, read prompts or impersonate the daemon. The
answer is a reason for people (``None`` when the path is fine), used in E401 errors.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


def _owner_ok(uid: int) -> bool:
    return uid in (os.geteuid(), 0)


def problem(path: Path, *, writable_by_others_ok: bool = False,
            follow_symlinks: bool = True) -> str | None:
    """Why ``path`` cannot be trusted, or None (also None when it does not exist)."""
    try:
        st = os.stat(path, follow_symlinks=follow_symlinks)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{path} cannot be inspected ({exc.strerror})"
    if not follow_symlinks and stat.S_ISLNK(st.st_mode):
        return f"{path} is a symbolic link"
    if not _owner_ok(st.st_uid):
        return f"{path} is owned by uid {st.st_uid}, not by you (uid {os.geteuid()})"
    sticky_dir = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
    if st.st_mode & _OTHERS_WRITE and not writable_by_others_ok and not sticky_dir:
        return (f"{path} is writable by other users (mode {oct(stat.S_IMODE(st.st_mode))}); "
                f"chmod go-w {path}")
    return None


def file_problem(path: Path) -> str | None:
    """A config-like file: the file and the directory holding it must be ours and not
    writable by others (a writable directory lets someone replace the file)."""
    return problem(path) or (problem(path.parent) if path.exists() else None)
