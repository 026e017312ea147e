"""Rendering of the systemd user unit and the launchd agent for ``daemon install``.

The templates live in ``parhelia_cli/templates`` (copies of the repository's
``systemd/`` and ``launchd/`` files, kept identical by a test) so that an installed
wheel has them. Every path written into them is absolute.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import sys
from pathlib import Path

from parhelia import paths

TEMPLATES = Path(__file__).with_name("templates")
SYSTEMD_TEMPLATE = TEMPLATES / "parheliad.service"
LAUNCHD_TEMPLATE = TEMPLATES / "dev.parhelia.parheliad.plist"
LAUNCHD_LABEL = "dev.parhelia.parheliad"
SYSTEMD_SOCKET = "%t/parhelia/parheliad.sock"
PASSED_ENV = ("PARHELIA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME")


def daemon_argv() -> list[str]:
    """Absolute argv of the daemon: the ``parheliad`` console script beside this Python,
    else on PATH, else ``sys.executable -m parheliad``."""
    beside = Path(sys.executable).parent / "parheliad"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside.absolute())]
    found = shutil.which("parheliad")
    if found:
        return [str(Path(found).absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "parheliad"]


def env_file(p: paths.Paths) -> Path:
    """Where the user keeps the daemon's credentials (read by the systemd unit)."""
    return p.config_file.parent / "parheliad.env"


def systemd_unit_path() -> Path:
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home).absolute() / "systemd" / "user" / "parheliad.service"


def launchd_plist_path() -> Path:
    return Path.home().absolute() / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"


def _systemd_quote(value: str) -> str:
    """One systemd word: specifiers (%) and variables ($) escaped, double-quoted."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{escaped.replace("$", "$$")}"'


def _systemd_env(name: str, value: str, specifiers: bool = False) -> str:
    text = value if specifiers else value.replace("%", "%%")
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'Environment="{name}={text}"'


def systemd_unit(p: paths.Paths, explicit_socket: str | None = None,
                 argv: list[str] | None = None) -> str:
    """The unit text. The socket is ``%t/parhelia/parheliad.sock`` unless the CLI's own
    resolution says otherwise (``--socket``, ``PARHELIA_SOCKET`` or ``PARHELIA_HOME``)."""
    argv = argv or daemon_argv()
    exec_start = " ".join(_systemd_quote(a) if any(c in a for c in ' "\\%$\'') else a
                          for a in argv)
    custom = bool(explicit_socket or os.environ.get("PARHELIA_SOCKET")
                  or os.environ.get("PARHELIA_HOME"))
    socket_line = _systemd_env("PARHELIA_SOCKET", str(p.socket)) if custom else \
        _systemd_env("PARHELIA_SOCKET", SYSTEMD_SOCKET, specifiers=True)
    extra = [_systemd_env(name, str(Path(os.environ[name]).absolute()))
             for name in PASSED_ENV if os.environ.get(name)]
    text = SYSTEMD_TEMPLATE.read_text()
    text = text.replace("Environment=PARHELIA_SOCKET=@SOCKET@", socket_line)
    text = text.replace("@EXEC_START@", exec_start)
    text = text.replace('Environment="PATH=@PATH@"',
                        _systemd_env("PATH", os.environ.get("PATH", os.defpath)))
    text = text.replace("@EXTRA_ENVIRONMENT@\n", "".join(f"{e}\n" for e in extra))
    text = text.replace("@ENV_FILE@", str(env_file(p).absolute()).replace("%", "%%"))
    return text


def launchd_plist(p: paths.Paths, explicit_socket: str | None = None,
                  argv: list[str] | None = None) -> str:
    """The agent plist: absolute ProgramArguments (with ``--socket``), no forking."""
    with LAUNCHD_TEMPLATE.open("rb") as f:
        plist = plistlib.load(f)
    plist["ProgramArguments"] = [*(argv or daemon_argv()), "--socket", str(p.socket.absolute())]
    env = plist["EnvironmentVariables"]
    env["PATH"] = os.environ.get("PATH", os.defpath)
    for name in PASSED_ENV:
        if os.environ.get(name):
            env[name] = str(Path(os.environ[name]).absolute())
    log = str((p.state_dir / "parheliad.stderr.log").absolute())
    plist["StandardOutPath"] = plist["StandardErrorPath"] = log
    return plistlib.dumps(plist, sort_keys=False).decode()
