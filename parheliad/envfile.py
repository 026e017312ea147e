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
from pathlib import Path

from parhelia import ownership
from parhelia.errors import ParheliaError
from parhelia.paths import Paths

FILE_NAME = "parheliad.env"
_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def env_file(paths: Paths) -> Path:
    return paths.config_file.parent / FILE_NAME


def load(path: Path, environ: dict[str, str] | os._Environ[str] = os.environ) -> list[str]:
    """Add the file's variables missing from ``environ``; the names added (never values)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return []
    why = ownership.file_problem(path)
    if why is not None:
        raise ParheliaError("E401", f"{path}: not trusted: {why}")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ParheliaError("E401", f"{path} is readable by other users (mode "
                                    f"{oct(stat.S_IMODE(st.st_mode))}); it holds credentials: "
                                    f"chmod 600 {path}")
    added = []
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
        if name not in environ:
            environ[name] = value
            added.append(name)
    return added
