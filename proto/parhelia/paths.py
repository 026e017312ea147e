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
from pathlib import Path
from typing import NamedTuple

SOCKET_NAME = "parheliad.sock"
MAX_SOCKET_PATH_BYTES = 103
"""sun_path is 104 bytes on macOS (108 on Linux) including the NUL: stay portable."""


class Paths(NamedTuple):
    """Where one daemon's things are (immutable). A NamedTuple, not a dataclass: the CLI
    resolves these on every call, and ``dataclasses`` loads ``inspect``."""

    home: Path | None
    config_file: Path
    state_dir: Path
    data_dir: Path
    socket: Path

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


def _env_path(env: dict[str, str], key: str) -> Path | None:
    value = env.get(key, "")
    return Path(value).expanduser() if value else None


def resolve(socket: str | os.PathLike[str] | None = None,
            env: dict[str, str] | None = None) -> Paths:
    """Resolve all paths from ``env`` (default ``os.environ``) and an explicit socket."""
    env = dict(os.environ if env is None else env)
    home = _env_path(env, "PARHELIA_HOME")
    user_home = Path(env.get("HOME") or Path.home())
    if home is not None:
        home = home.absolute()
        config_file = home / "config.toml"
        state_dir = home / "state"
        data_dir = home / "data"
    else:
        config_home = _env_path(env, "XDG_CONFIG_HOME") or user_home / ".config"
        state_home = _env_path(env, "XDG_STATE_HOME") or user_home / ".local" / "state"
        data_home = _env_path(env, "XDG_DATA_HOME") or user_home / ".local" / "share"
        config_file = config_home / "parhelia" / "config.toml"
        state_dir = state_home / "parhelia"
        data_dir = data_home / "parhelia"

    explicit = Path(socket).expanduser() if socket else _env_path(env, "PARHELIA_SOCKET")
    if explicit is not None:
        sock = explicit.absolute()
    elif home is not None:
        sock = home / "run" / SOCKET_NAME
    elif (runtime := _env_path(env, "XDG_RUNTIME_DIR")) is not None:
        sock = runtime / "parhelia" / SOCKET_NAME
    else:
        sock = state_dir / "run" / SOCKET_NAME
    return Paths(home=home, config_file=config_file, state_dir=state_dir,
                 data_dir=data_dir, socket=sock)


def socket_path_problem(path: Path) -> str | None:
    """A human-readable reason why ``path`` cannot be a Unix socket path, or None."""
    if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
        return (f"socket path is {len(os.fsencode(path))} bytes, more than the "
                f"{MAX_SOCKET_PATH_BYTES} a Unix socket allows: {path}. Set PARHELIA_SOCKET "
                f"or --socket to a shorter path.")
    return None
