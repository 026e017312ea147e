"""The GitHub token the daemon uses for clones of private repositories and for pull
requests, and where it comes from (never its value: ``auth status`` names the source).

In this order: ``GH_TOKEN`` or ``GITHUB_TOKEN`` in the daemon's own environment, then in
its env file (``parhelia auth set --github`` writes ``GITHUB_TOKEN`` there; ADR 0018:
re-read at each use, no restart), then ``gh auth token --hostname HOST`` when the ``gh``
CLI is installed and logged in. A Modal task may also clone with the Modal secret
``github-token`` (:mod:`parheliad.core.repo_source`); the daemon never sees that value.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from parhelia import envfile, gitremote
from parhelia.credentials import GITHUB_STORED_VAR, GITHUB_TOKEN_VARS

GH_TIMEOUT = 10.0
GH_ENV = ("PATH", "HOME", "USER", "LOGNAME", "XDG_CONFIG_HOME", "XDG_STATE_HOME",
          "XDG_DATA_HOME", "GH_CONFIG_DIR", "LANG", "LC_ALL", *gitremote.PASSED)
"""What ``gh auth token`` gets of the daemon's environment: where its config lives, and
never a token variable (it would print that back instead of its own login)."""
GH = "gh auth token"
GH_SOURCE = "gh"


@dataclass(frozen=True)
class Token:
    """A token and where it came from; ``repr`` never shows the value."""

    value: str = field(repr=False)
    name: str
    """``GH_TOKEN``, ``GITHUB_TOKEN`` or ``gh auth token``."""
    source: str
    """``environment`` (the daemon's own), ``env file`` or ``gh``."""

    def describe(self, env_file: Path | None = None) -> str:
        if self.source == GH_SOURCE:
            return "the gh CLI's login (`gh auth token`)"
        if self.source == envfile.ENV_FILE:
            return f"{self.name} from the env file" + (f" {env_file}" if env_file else "")
        return f"{self.name} from the daemon's environment"


def from_environment(env_file: Path, environ: Mapping[str, str]) -> Token | None:
    """``GH_TOKEN``/``GITHUB_TOKEN`` of the daemon's environment or env file (E401 when
    the file is not private)."""
    found = envfile.credential(env_file, environ, GITHUB_TOKEN_VARS)
    if found is None:
        return None
    if found.origin == envfile.ENVIRONMENT:
        value = envfile.own_environ(environ).get(found.name, "")
    else:
        value = envfile.read(env_file).get(found.name, "")
    value = value.strip()
    return Token(value, found.name, found.origin) if value else None


def from_gh(hostname: str, environ: Mapping[str, str], gh: str | None = None) -> Token | None:
    """The token of the ``gh`` CLI's login for ``hostname`` (None without gh or a login)."""
    program = gh or shutil.which("gh", path=environ.get("PATH"))
    if program is None:
        return None
    env = {k: v for k, v in environ.items() if k in GH_ENV}
    env["GH_PROMPT_DISABLED"] = "1"
    env["NO_COLOR"] = "1"
    try:
        proc = subprocess.run([program, "auth", "token", "--hostname", hostname], env=env,
                              capture_output=True, timeout=GH_TIMEOUT, check=False,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = proc.stdout.decode(errors="replace").strip()
    if proc.returncode != 0 or not value or any(c.isspace() for c in value):
        return None
    return Token(value, GH, GH_SOURCE)


def find(hostname: str, env_file: Path, environ: Mapping[str, str] | None = None
         ) -> Token | None:
    """The GitHub token for ``hostname``, in the order of the module docstring."""
    env = os.environ if environ is None else environ
    return from_environment(env_file, env) or from_gh(hostname, env)


def ways(host: str, env_file: Path, modal_secret: str | None = None) -> str:
    """Every way to give the daemon a GitHub token, in words (E400's message)."""
    out = (f"store one with `parhelia auth set --github` (kept in {env_file}, read again at "
           f"each use: no restart), export {GITHUB_STORED_VAR} or {GITHUB_TOKEN_VARS[0]} "
           "where the daemon runs, or log in with `gh auth login"
           + (f" --hostname {host}" if host != "github.com" else "") + "` (the daemon asks "
           "`gh auth token`)")
    if modal_secret:
        out += (f"; for a Modal task, a clone can also use the Modal secret {modal_secret!r} "
                f"(`modal secret create {modal_secret} GITHUB_TOKEN=...`)")
    return out + ". The token needs read access to clone, and for `task pr` Contents and " \
        "Pull requests write access (a classic token: the `repo` scope)."
