"""One daemon per socket: private directories, dial-before-bind, flock, pid file.

grpcio silently unlinks and rebinds a live socket path, so before binding we dial
the socket (someone answers -> refuse, touching nothing) and take an exclusive
``flock`` on the lock file in the state directory (held -> refuse). Only then is a
leftover socket file known to be stale and removed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
from pathlib import Path

import structlog

from parhelia import ownership
from parhelia.paths import Paths, socket_path_problem

log = structlog.get_logger(__name__)

DIAL_TIMEOUT_S = 1.0


class StartupRefused(RuntimeError):
    """The daemon must not start; the message says why and what to do."""


def ensure_private_dir(path: Path, *, socket_dir: bool = False) -> None:
    """Create ``path`` 0700; an existing one must be trusted (ours, no symlink, not
    writable by others — :func:`parhelia.ownership.dir_problem`) or the daemon refuses.

    Only a directory this call created is ever chmodded: an existing one is never
    changed (a socket path in /tmp must not take /tmp's sticky bit away). The state and
    data directories, Parhelia's own, are tightened to 0700 when they are merely
    readable by others; a socket directory may be sticky (/tmp) and is left as it is.
    """
    if not os.path.lexists(path):
        path.mkdir(mode=0o700, parents=True)
        os.chmod(path, 0o700)  # ours, just made: the umask may have widened nothing, but be sure
        return
    why = ownership.dir_problem(path, allow_sticky=socket_dir)
    if why is not None:
        raise StartupRefused(f"refusing to use {path}: {why}; choose another "
                             + ("socket path (PARHELIA_SOCKET / --socket)" if socket_dir
                                else "PARHELIA_HOME") + " or fix its owner and mode")
    mode = stat.S_IMODE(path.stat().st_mode)
    if not socket_dir and mode & 0o077:
        os.chmod(path, 0o700)
        log.warning("daemon.dir_mode_fixed", path=str(path), was=oct(mode))


def check_home(paths: Paths) -> None:
    """``PARHELIA_HOME`` (when set) must be ours and not writable by others: whoever can
    write it can plant a config.toml that chooses the agent command."""
    if paths.home is not None:
        why = ownership.dir_problem(paths.home)
        if why is not None:
            raise StartupRefused(f"refusing PARHELIA_HOME {paths.home}: {why}")


def answering(sock_path: Path, timeout: float = DIAL_TIMEOUT_S) -> bool:
    """Whether something accepts connections on the Unix socket ``sock_path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(sock_path))
        except (FileNotFoundError, ConnectionRefusedError):
            return False
        except OSError as exc:
            if exc.errno in (errno.ENOTSOCK, errno.ECONNREFUSED, errno.ENOENT):
                return False
            raise
    return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _peer_pid(sock_path: Path) -> int | None:
    """The pid a live parheliad reports over gRPC (None if it is not one)."""
    import grpc

    from parhelia.v1 import system_pb2, system_pb2_grpc

    channel = grpc.insecure_channel(f"unix://{sock_path}")
    try:
        reply = system_pb2_grpc.SystemServiceStub(channel).GetStatus(
            system_pb2.GetStatusRequest(), timeout=2.0)
        return int(reply.pid) or None
    except grpc.RpcError:
        return None
    finally:
        channel.close()


class InstanceGuard:
    def __init__(self, paths: Paths, sock_path: Path) -> None:
        self.paths = paths
        self.socket = sock_path
        self._lock_fd: int | None = None

    def acquire(self) -> None:
        """Check the path, refuse if another daemon answers or holds the lock, clean a
        stale socket, write the pid file. Raises :class:`StartupRefused`."""
        problem = socket_path_problem(self.socket)
        if problem:
            raise StartupRefused(problem)
        check_home(self.paths)
        ensure_private_dir(self.paths.state_dir)
        # the volume (agent output, worker logs, blobs), workspaces and transcripts:
        # what is below is created with the process umask, so the top must be private
        ensure_private_dir(self.paths.data_dir)
        ensure_private_dir(self.socket.parent, socket_dir=True)
        if answering(self.socket):
            pid = _peer_pid(self.socket) or _read_pid(self.paths.pid_file)
            who = f"pid {pid}" if pid else "pid unknown"
            raise StartupRefused(f"another parheliad is serving unix://{self.socket}, {who}; "
                                 "stop it first (`parhelia daemon stop`)")
        fd = os.open(self.paths.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = _read_pid(self.paths.pid_file)
            raise StartupRefused(
                f"another parheliad holds {self.paths.lock_file}"
                + (f" (pid {pid})" if pid else "") + "; stop it first "
                "(`parhelia daemon stop`)") from None
        self._lock_fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        if self.socket.exists() or self.socket.is_symlink():
            st = self.socket.lstat()
            if not stat.S_ISSOCK(st.st_mode):
                self.release()
                raise StartupRefused(f"{self.socket} exists and is not a socket; "
                                     "move it away or choose another socket path")
            if st.st_uid != os.geteuid():  # another user's, in a shared (sticky) directory
                self.release(keep_socket=True)
                raise StartupRefused(f"{self.socket} is a socket of uid {st.st_uid}, not "
                                     "yours; it is not removed. Choose another socket path")
            self.socket.unlink()
            log.info("daemon.stale_socket_removed", socket=str(self.socket))
        pid_tmp = self.paths.pid_file.with_suffix(".pid.tmp")
        fd_pid = os.open(pid_tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd_pid, "w") as fh:
            fh.write(f"{os.getpid()}\n")
        os.replace(pid_tmp, self.paths.pid_file)

    def release(self, *, keep_socket: bool = False) -> None:
        """Remove the pid file (if ours) and the socket (unless ``keep_socket``: it is
        not ours), then drop the lock. Idempotent."""
        if self._lock_fd is None:
            return
        if _read_pid(self.paths.pid_file) == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                self.paths.pid_file.unlink()
        with contextlib.suppress(FileNotFoundError):
            if not keep_socket and stat.S_ISSOCK(self.socket.lstat().st_mode):
                self.socket.unlink()
        fd, self._lock_fd = self._lock_fd, None
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
