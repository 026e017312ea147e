"""Is a path ours? The one check the daemon and the CLI make before trusting a file,
a directory or a socket: owned by this user (or root) and not writable by others.

Another local user who owns, or can write, a daemon's home, its config or its socket
directory could plant an agent command, read prompts or impersonate the daemon. The
answer is a reason for people (``None`` when the path is fine), used in E401 errors.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from parhelia.paths import absolute

if TYPE_CHECKING:
    from pathlib import Path


def _writable_by_others(st: os.stat_result) -> bool:
    """World-writable, or group-writable by a group that is not just this user (a
    "user private group", umask 002 on many distributions, is no one else)."""
    if st.st_mode & stat.S_IWOTH:
        return True
    return bool(st.st_mode & stat.S_IWGRP) and not _private_group(st.st_gid)


def _private_group(gid: int) -> bool:
    try:
        import grp
        import pwd

        me = pwd.getpwuid(os.geteuid()).pw_name
        group = grp.getgrgid(gid)
    except (ImportError, KeyError):
        return False
    return gid == os.getegid() and group.gr_name == me and set(group.gr_mem) <= {me}


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
    if _writable_by_others(st) and not writable_by_others_ok and not sticky_dir:
        return (f"{path} is writable by other users (mode {oct(stat.S_IMODE(st.st_mode))}); "
                f"chmod go-w {path}")
    return None


def dir_problem(path: Path, *, allow_sticky: bool = False) -> str | None:
    """A directory the daemon keeps state in or listens in: not a symbolic link, ours,
    not writable by others (a sticky directory such as /tmp, when ``allow_sticky``:
    nobody can replace what we put there)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{path} cannot be inspected ({exc.strerror})"
    if stat.S_ISLNK(st.st_mode):
        if not _owner_ok(st.st_uid):  # a link another user planted (root's, e.g. macOS
            return (f"{path} is a symbolic link (to {os.readlink(path)}) made by "  # /tmp,
                    f"uid {st.st_uid}")  # and our own are followed and checked)
        try:
            st = os.stat(path)
        except OSError as exc:
            return f"{path} is a symbolic link that cannot be followed ({exc.strerror})"
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    if allow_sticky and st.st_mode & stat.S_ISVTX:
        return None
    if st.st_uid != os.geteuid():
        return f"{path} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()})"
    if _writable_by_others(st):
        return (f"{path} is writable by other users (mode {oct(stat.S_IMODE(st.st_mode))}); "
                f"chmod go-w {path}")
    return None


def file_problem(path: Path) -> str | None:
    """A config-like file: the file and the directory holding it must be ours and not
    writable by others (a writable directory lets someone replace the file)."""
    return problem(path) or (problem(path.parent) if path.exists() else None)


def _peer_uid(sock_path: str | os.PathLike[str], timeout: float) -> int | None:
    """The uid of the process listening on ``sock_path`` (Linux ``SO_PEERCRED``); None
    where the platform cannot say or nothing accepts the connection."""
    import socket
    import struct

    if not hasattr(socket, "SO_PEERCRED"):
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(os.fspath(sock_path))
        except OSError:
            return None
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def _and_parents(path: str) -> list[str]:
    """``path`` and each directory above it, up to the root (``Path.parents`` in
    ``os.path`` terms: ``path`` is absolute)."""
    out = [path]
    while (parent := os.path.dirname(out[-1])) != out[-1]:
        out.append(parent)
    return out


def _chain_problem(path: str | os.PathLike[str]) -> str | None:
    """A component on the way to ``path`` (as given, and as resolved) that another user
    could swap: a symbolic link they made, or a directory they own or may write to
    (a sticky one excepted), as sshd's StrictModes checks. Checking the final target
    is not enough: a link of theirs can be pointed elsewhere right after the check."""
    given = absolute(path)
    for chain in (given, os.path.realpath(given)):
        for component in _and_parents(chain):
            try:
                st = os.lstat(component)
            except FileNotFoundError:
                continue
            except OSError as exc:
                return f"{component} cannot be inspected ({exc.strerror})"
            if stat.S_ISLNK(st.st_mode):
                if not _owner_ok(st.st_uid):
                    return (f"{component} is a symbolic link (to {os.readlink(component)}) "
                            f"made by uid {st.st_uid}")
            elif stat.S_ISDIR(st.st_mode):
                if not _owner_ok(st.st_uid):
                    return (f"the directory {component} belongs to uid {st.st_uid}, not to "
                            f"you (uid {os.geteuid()})")
                if _writable_by_others(st) and not st.st_mode & stat.S_ISVTX:
                    return (f"the directory {component} is writable by other users (mode "
                            f"{oct(stat.S_IMODE(st.st_mode))})")
    return None


def socket_problem(sock_path: str | os.PathLike[str], timeout: float = 1.0) -> str | None:
    """Why the daemon socket at ``sock_path`` must not be spoken to, or None: the socket
    and its directory must be this user's (a directory others can write lets them swap
    the socket) and, where the platform tells, so must the process listening on it."""
    me = os.geteuid()
    why = _chain_problem(sock_path)
    if why is not None:
        return why
    directory = os.path.dirname(absolute(sock_path))  # Path.parent: `..` kept
    for path, what in ((directory, "socket directory"), (sock_path, "socket")):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"the {what} {path} cannot be inspected ({exc.strerror})"
        if what == "socket directory" and st.st_mode & stat.S_ISVTX:
            continue  # /tmp-like: nobody else can replace our socket in a sticky directory
        if st.st_uid != me:
            return f"the {what} {path} belongs to uid {st.st_uid}, not to you (uid {me})"
        if what == "socket directory" and _writable_by_others(st):
            return (f"the socket directory {path} is writable by other users (mode "
                    f"{oct(stat.S_IMODE(st.st_mode))})")
    peer = _peer_uid(sock_path, timeout)
    if peer is not None and peer != me:
        return f"the daemon on {sock_path} runs as uid {peer}, not as you (uid {me})"
    return None
