"""Credentials for a daemon started by a service manager: ``<config dir>/parheliad.env``.

systemd reads this file itself (``EnvironmentFile=``); launchd cannot, and a daemon
autostarted from a shell without the variables would not see them either, so the
daemon loads it at start: ``NAME=value`` lines, ``#`` comments, optional quotes. A
variable already in the environment wins. The file must be private (not readable by
group or others) — a world-readable credentials file is refused, loudly.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from parhelia import ownership
from parhelia.credentials import CREDENTIAL_VARS, GITHUB_TOKEN_VARS
from parhelia.errors import ParheliaError
from parhelia.paths import Paths

FILE_NAME = "parheliad.env"
LOADED_MARK = "PARHELIA_ENV_FILE_LOADED"
"""Names :func:`load` added to the environment at the daemon's start (never values)."""
_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def env_file(paths: Paths) -> Path:
    return paths.config_file.parent / FILE_NAME


def _checked(path: Path) -> os.stat_result | None:
    """The file's stat when it may be trusted, None when absent; E401 otherwise."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    why = ownership.file_problem(path)
    if why is not None:
        raise ParheliaError("E401", f"{path}: not trusted: {why}")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ParheliaError("E401", f"{path} is readable by other users (mode "
                                    f"{oct(stat.S_IMODE(st.st_mode))}); it holds credentials: "
                                    f"chmod 600 {path}")
    return st


def read(path: Path) -> dict[str, str]:
    """The file's variables (empty when there is no file); E401 when it is not private."""
    if _checked(path) is None:
        return {}
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise ParheliaError("E101", f"{path}:{number}: expected NAME=value")
        name, value = match.group(1), match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


def load(path: Path, environ: dict[str, str] | os._Environ[str] = os.environ) -> list[str]:
    """Add the file's variables missing from ``environ``; the names added (never values).

    The names are remembered in ``environ`` (:data:`LOADED_MARK`) so that
    :func:`effective` can tell the daemon's own environment from the file's values."""
    added = []
    for name, value in read(path).items():
        if name not in environ:
            environ[name] = value
            added.append(name)
    if added:
        environ[LOADED_MARK] = ",".join(added)
    return added


def own_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without what :func:`load` took from the file at the daemon's start."""
    loaded = set(filter(None, environ.get(LOADED_MARK, "").split(",")))
    return {k: v for k, v in environ.items() if k not in loaded and k != LOADED_MARK}


def effective(path: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment as of now: the daemon's own variables, plus the file as it is
    now (re-read on each call, so ``parhelia auth set``/``clear`` need no restart)."""
    env = own_environ(environ)
    for name, value in read(path).items():
        if not env.get(name, "").strip():  # an empty variable is no credential
            env[name] = value
    return env


@dataclass(frozen=True)
class Source:
    """Which credential the daemon will use and where it comes from (never its value)."""

    name: str
    origin: str
    """``"environment"`` (the daemon's own) or ``"env file"``."""


ENVIRONMENT = "environment"
ENV_FILE = "env file"


def credential(path: Path, environ: Mapping[str, str],
               names: tuple[str, ...] = CREDENTIAL_VARS) -> Source | None:
    """The first credential variable set, in ``names`` order (the agent's credential by
    default; :data:`parhelia.credentials.GITHUB_TOKEN_VARS` for the GitHub token)."""
    own = own_environ(environ)
    from_file = read(path)
    for name in names:
        if own.get(name, "").strip():
            return Source(name, ENVIRONMENT)
        if from_file.get(name, "").strip():
            return Source(name, ENV_FILE)
    return None


def _rewrite(path: Path, keep: Callable[[str], bool], extra: str = "") -> bool:
    """Write the file again without the lines ``keep`` refuses, plus ``extra``; created
    0600 (never wider, even for a moment), replaced atomically. Whether a line went."""
    lines = path.read_text().splitlines() if _checked(path) is not None else []
    kept = [raw for raw in lines if keep(raw)]
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write("".join(line + "\n" for line in kept) + extra)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(kept) != len(lines)


def _names(raw: str) -> str | None:
    match = _LINE.match(raw.strip())
    return match.group(1) if match else None


GROUPS = (CREDENTIAL_VARS, GITHUB_TOKEN_VARS)
"""The kinds of credential the file holds, one variable of each at a time."""


def _group(name: str) -> tuple[str, ...]:
    for group in GROUPS:
        if name in group:
            return group
    raise ParheliaError("E101", f"{name} is not a credential variable (one of "
                                + ", ".join(n for g in GROUPS for n in g) + ")")


def set_credential(path: Path, name: str, value: str) -> None:
    """Store one credential, replacing every variable of its kind already in the file
    (one credential of a kind at a time: the first in order would win and hide the new
    one); a credential of the other kind stays."""
    group = _group(name)
    value = value.strip()
    if not value or any(c in value for c in "\r\n\0") or value[0] in "'\"":
        raise ParheliaError("E101", "the credential must be one line, not empty, not quoted")
    _rewrite(path, lambda raw: _names(raw) not in group, f"{name}={value}\n")


def clear_credentials(path: Path, group: tuple[str, ...] = CREDENTIAL_VARS) -> bool:
    """Remove every variable of ``group`` (the agent's credential by default) from the
    file; whether there was one."""
    if _checked(path) is None:
        return False
    return _rewrite(path, lambda raw: _names(raw) not in group)
