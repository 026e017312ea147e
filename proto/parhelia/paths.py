"""Where Parhelia keeps things: one resolver shared by the daemon and the CLI.

``PARHELIA_HOME``, when set, holds everything::

    $PARHELIA_HOME/config.toml        user configuration
    $PARHELIA_HOME/state/             database, logs, lock, pid file
    $PARHELIA_HOME/run/parheliad.sock socket (unless PARHELIA_SOCKET says otherwise)
    $PARHELIA_HOME/data/volume/       the local volume

Otherwise the XDG base directories are used. Socket resolution order:
``--socket`` > ``PARHELIA_SOCKET`` > ``$XDG_RUNTIME_DIR/parhelia/parheliad.sock`` >
``<state dir>/run/parheliad.sock``. With ``PARHELIA_HOME`` set and no explicit
socket, the socket lives under ``$PARHELIA_HOME/run`` so that test homes never share
a socket through ``XDG_RUNTIME_DIR``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

SOCKET_NAME = "parheliad.sock"
MAX_SOCKET_PATH_BYTES = 103
"""sun_path is 104 bytes on macOS (108 on Linux) including the NUL: stay portable."""


class Paths:
    """Where one daemon's things are. A plain class (not a dataclass or a NamedTuple,
    which cost the CLI's quick reads more than resolving does); compared by value."""

    __slots__ = ("config_file", "data_dir", "home", "socket", "state_dir")

    def __init__(self, *, home: Path | None, config_file: Path, state_dir: Path,
                 data_dir: Path, socket: Path) -> None:
        self.home, self.config_file, self.state_dir = home, config_file, state_dir
        self.data_dir, self.socket = data_dir, socket

    def _fields(self) -> tuple[Path | None, ...]:
        return self.home, self.config_file, self.state_dir, self.data_dir, self.socket

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Paths) and other._fields() == self._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (f"Paths(home={self.home!r}, config_file={self.config_file!r}, "
                f"state_dir={self.state_dir!r}, data_dir={self.data_dir!r}, "
                f"socket={self.socket!r})")

    @property
    def volume_dir(self) -> Path:
        return self.data_dir / "volume"

    @property
    def database(self) -> Path:
        return self.state_dir / "parheliad.db"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "parheliad.log"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "parheliad.lock"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "parheliad.pid"

    @property
    def workspaces_dir(self) -> Path:
        return self.data_dir / "workspaces"

    def session_dirs(self, session_id: str) -> tuple[Path, Path]:
        """A session's workspace and agent config directory on this machine (where a
        local worker runs it; a checkpoint from disk reads them)."""
        return self.workspaces_dir / session_id, self.data_dir / "claude" / session_id


def _expand(value: str) -> str:
    """``~`` and ``~user`` expanded, as ``Path.expanduser`` does (RuntimeError when the
    home cannot be found: no path under the working directory named ``~user``)."""
    out = os.path.expanduser(value)
    if out.startswith("~"):
        raise RuntimeError(f"Could not determine home directory of {value.split('/')[0]}")
    return out


def _env_path(env: dict[str, str], key: str) -> str | None:
    value = env.get(key, "")
    return _expand(value) if value else None


def absolute(path: str | os.PathLike[str]) -> str:
    """``Path(path).absolute()`` as a string: the working directory joined, nothing
    normalised (``..`` stays: after a symbolic link it is the link target's parent, as
    the kernel sees it; ``os.path.abspath`` would drop it by text)."""
    path = os.fspath(path)
    return path if os.path.isabs(path) else os.path.join(os.getcwd(), path)


def _locations(socket: str | os.PathLike[str] | None,
               env: dict[str, str]) -> tuple[str | None, str, str, str, str]:
    """(home, config file, state dir, data dir, socket) as strings: :func:`resolve`'s
    rules in ``os.path`` terms, so that :func:`socket_path` needs no ``pathlib``."""
    home = _env_path(env, "PARHELIA_HOME")
    join = os.path.join
    if home is not None:
        home = absolute(home)
        config_file = join(home, "config.toml")
        state_dir = join(home, "state")
        data_dir = join(home, "data")
    else:
        user_home = env.get("HOME") or _expand("~")
        config_home = _env_path(env, "XDG_CONFIG_HOME") or join(user_home, ".config")
        state_home = _env_path(env, "XDG_STATE_HOME") or join(user_home, ".local", "state")
        data_home = _env_path(env, "XDG_DATA_HOME") or join(user_home, ".local", "share")
        config_file = join(config_home, "parhelia", "config.toml")
        state_dir = join(state_home, "parhelia")
        data_dir = join(data_home, "parhelia")

    explicit = (_expand(os.fspath(socket)) if socket
                else _env_path(env, "PARHELIA_SOCKET"))
    if explicit is not None:
        sock = absolute(explicit)
    elif home is not None:
        sock = join(home, "run", SOCKET_NAME)
    elif (runtime := _env_path(env, "XDG_RUNTIME_DIR")) is not None:
        sock = join(runtime, "parhelia", SOCKET_NAME)
    else:
        sock = join(state_dir, "run", SOCKET_NAME)
    return home, config_file, state_dir, data_dir, sock


def resolve(socket: str | os.PathLike[str] | None = None,
            env: dict[str, str] | None = None) -> Paths:
    """Resolve all paths from ``env`` (default ``os.environ``) and an explicit socket."""
    from pathlib import Path

    home, config_file, state_dir, data_dir, sock = _locations(
        socket, dict(os.environ if env is None else env))
    return Paths(home=None if home is None else Path(home), config_file=Path(config_file),
                 state_dir=Path(state_dir), data_dir=Path(data_dir), socket=Path(sock))


def socket_path(socket: str | os.PathLike[str] | None = None,
                env: dict[str, str] | None = None) -> str:
    """The daemon socket :func:`resolve` finds, as a string (``pathlib`` is not loaded:
    the quick reads of the CLI run on this)."""
    return _locations(socket, dict(os.environ if env is None else env))[4]


def socket_path_problem(path: str | os.PathLike[str]) -> str | None:
    """A human-readable reason why ``path`` cannot be a Unix socket path, or None."""
    if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
        return (f"socket path is {len(os.fsencode(path))} bytes, more than the "
                f"{MAX_SOCKET_PATH_BYTES} a Unix socket allows: {path}. Set PARHELIA_SOCKET "
                f"or --socket to a shorter path.")
    return None
