"""A task's environment as the worker applies it, and the words both sides share.

The daemon resolves a repository's environment (``.parhelia/environment.toml``, its
devcontainer.json, or detection from lockfiles: ``parheliad.environments``) and puts
what the worker must do in the worker spec's ``environment`` block
(:class:`WorkerEnvironment`): the non-secret ``env``, the ``setup`` commands (each new
sandbox or machine, before the agent, with the setup secrets), the ``start`` commands
(each incarnation, after the restore), the dependency cache directories and the
commands the agent may run without asking. Image layers (base, ``apt``, ``run``) are the
daemon's and the Modal backend's business; the worker never sees them. Nothing a
repository configures runs on the daemon's side (docs/adr/0050-environments.md).

Standard library only: shipped into the worker's image.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

NETWORK_FULL: Final = "full"
"""The agent reaches any host."""
NETWORK_TRUSTED: Final = "trusted"
"""The agent reaches the model API, the package registries of :data:`TRUSTED_HOSTS` and
the environment's ``allow`` list."""
NETWORK_NONE: Final = "none"
"""The agent reaches the model API only."""
NETWORK_LEVELS: Final[tuple[str, ...]] = (NETWORK_FULL, NETWORK_TRUSTED, NETWORK_NONE)
DEFAULT_NETWORK: Final = NETWORK_TRUSTED
_NETWORK_RANK = {NETWORK_NONE: 0, NETWORK_TRUSTED: 1, NETWORK_FULL: 2}


def network_wider(level: str, than: str) -> bool:
    """Whether ``level`` lets the agent reach more than ``than`` (an unknown level counts
    as the widest): a project file may only narrow the user's own level."""
    top = max(_NETWORK_RANK.values()) + 1
    return _NETWORK_RANK.get(level, top) > _NETWORK_RANK.get(than, top)


RESERVED_PREFIXES: Final[tuple[str, ...]] = (
    "ANTHROPIC_", "CLAUDE_", "PARHELIA_", "MODAL_", "LD_", "DYLD_", "DISABLE_")
RESERVED_NAMES: Final[frozenset[str]] = frozenset({
    "PATH", "HOME", "PWD", "SHELL", "USER", "LOGNAME", "TMPDIR", "IS_SANDBOX",
    "NODE_OPTIONS", "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
    "http_proxy", "https_proxy", "all_proxy", "no_proxy",
})
"""Variables an environment may not set or name as a setup secret: the agent's own
(``ANTHROPIC_BASE_URL`` would send its key elsewhere, ``NODE_OPTIONS`` runs code in its
process), Parhelia's and Modal's, the dynamic loader's, and the ones the worker sets."""
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def variable_problem(name: str) -> str | None:
    """Why an environment may not set ``name`` (None when it may)."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        return "is not a variable name (letters, digits and _, not starting with a digit)"
    if name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES):
        return ("is reserved: the agent, Parhelia or the worker sets it (or it would "
                "redirect the agent's model calls)")
    return None


MODEL_API_HOST: Final = "api.anthropic.com"
"""The model API's host (Claude Code 2.1.332's default ``ANTHROPIC_BASE_URL``): always
reachable, whatever the network level."""

TRUSTED_HOSTS: Final[tuple[str, ...]] = (
    # Python
    "pypi.org", "files.pythonhosted.org",
    # JavaScript
    "registry.npmjs.org", "registry.yarnpkg.com", "repo.yarnpkg.com",
    # Rust
    "crates.io", "index.crates.io", "static.crates.io",
    # Go
    "proxy.golang.org", "sum.golang.org",
    # Ruby
    "rubygems.org", "index.rubygems.org",
    # Debian / Ubuntu packages
    "deb.debian.org", "security.debian.org", "archive.ubuntu.com", "security.ubuntu.com",
)
"""The package registries a ``trusted`` agent reaches (their download hosts included)."""

_HOST_RE = re.compile(r"^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
                      r"[A-Za-z]{2,63}$")


def host_problem(host: str) -> str | None:
    """Why ``host`` is not a domain an allowlist can hold (None when it is): a DNS name,
    optionally ``*.`` for its subdomains; no scheme, port, path or bare ``*``."""
    if not isinstance(host, str) or not host:
        return "is empty"
    if len(host) > 253:
        return "is longer than a domain name can be"
    if not _HOST_RE.match(host):
        return "is not a domain name (e.g. pypi.example.com or *.example.com)"
    return None


def model_api_host(base_url: str | None) -> str:
    """The host the agent's model API calls go to (``ANTHROPIC_BASE_URL``'s, else
    :data:`MODEL_API_HOST`)."""
    if base_url:
        host = urlsplit(base_url).hostname
        if host:
            return host
    return MODEL_API_HOST


def agent_hosts(level: str, allow: tuple[str, ...] | list[str], api_host: str
                ) -> list[str] | None:
    """The domains the agent phase may reach at ``level``; None: any (``full``)."""
    if level == NETWORK_FULL:
        return None
    hosts = [api_host]
    if level == NETWORK_TRUSTED:
        hosts += [*TRUSTED_HOSTS, *allow]
    return list(dict.fromkeys(hosts))


@dataclass(frozen=True)
class Step:
    """One setup or start command: ``run`` is a command line for ``sh -c`` (a TOML string,
    a devcontainer string); ``argv`` a program and its arguments, no shell (a
    devcontainer array). ``name`` says which (``setup[1]``, a devcontainer object key)."""

    name: str
    run: str = ""
    argv: tuple[str, ...] = ()

    def command(self) -> list[str]:
        """The argv to execute: ``sh -c RUN`` or ``argv``."""
        return ["sh", "-c", self.run] if self.run else list(self.argv)

    def text(self) -> str:
        """The command as a person reads it."""
        return self.run or " ".join(self.argv)

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "run": self.run, "argv": list(self.argv)}


PHASE_SETUP: Final = "setup"
PHASE_START: Final = "start"

MAX_STEPS: Final = 64
MAX_STEP_CHARS: Final = 16_384
DEFAULT_SETUP_TIMEOUT_SECONDS: Final = 1800.0
FAILURE_TAIL_LINES: Final = 20
"""The failing step's last lines carried by ``setup_failed`` and the task's error."""

PREPARED_SUFFIX: Final = ".parhelia-environment.json"
"""Beside the workspace (``.<workspace name>`` + this): the environment hash a setup
completed for. A worker finding its hash there does not run setup again (a warm start,
or a later incarnation on the same machine); start commands still run."""

CACHE_ROOT_MODAL: Final = "/cache"
"""Where a Modal sandbox mounts its repository's dependency cache volume."""


@dataclass(frozen=True)
class WorkerEnvironment:
    """The spec's ``environment`` block (docs/contracts.md): what the worker applies."""

    hash: str
    env: Mapping[str, str] = field(default_factory=dict)
    """Non-secret variables for setup, start and the agent."""
    setup: tuple[Step, ...] = ()
    start: tuple[Step, ...] = ()
    setup_secrets: tuple[str, ...] = ()
    """Variables of the worker's own environment that setup commands get and nothing else
    does: removed before start commands and the agent."""
    cache_root: str | None = None
    """Where the cache directories live (a Modal volume's mount); None: the machine's
    own (local workers keep the user's caches)."""
    cache_dirs: tuple[str, ...] = ()
    """Directories (``~/.cache/uv``) made links into ``cache_root`` before setup."""
    setup_timeout_seconds: float = DEFAULT_SETUP_TIMEOUT_SECONDS


def cache_slug(directory: str) -> str:
    """The name of ``directory``'s part of the cache volume (``~/.cache/uv`` -> ``cache-uv``)."""
    text = directory.removeprefix("~/").strip("/")
    slug = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return slug or "home"
