"""The environment every test runs in, whatever the caller's shell exported (ADR 0043).

Parhelia (and what it runs: git, Claude Code, Modal's SDK, grpc) reads the process
environment: a credential changes what ``task create`` does, ``NO_COLOR``/``COLUMNS``
change what the CLI prints, ``PARHELIA_*``/``XDG_*`` where it looks for its daemon,
``HOME`` which ``~/.claude``, ``~/.modal.toml`` and ``~/.gitconfig`` it reads. The
whole suite starts from :func:`apply` (called once, by ``tests/conftest.py``, before
any test module is imported): every such variable is cleared or set to a fixed value
here, and a test that wants one sets it itself. ``tests/unit/test_environment.py``
checks that every variable the product's code reads is covered.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

CLEARED_PREFIXES = ("PARHELIA_", "ANTHROPIC_", "CLAUDE_", "MODAL_", "GIT_", "GRPC_",
                    "XDG_", "LC_", "SSL_", "REQUESTS_", "NODE_", "TMUX", "GH_", "GITHUB_")
"""Whole families: the product's own settings, the agent's credential and settings,
Modal's SDK, git's (``GIT_DIR``...), grpc's, the XDG base directories, locale
categories, CA bundles, node (Claude Code), tmux, the GitHub token and the gh CLI's
settings (``GH_TOKEN``, ``GITHUB_TOKEN``, ``GH_CONFIG_DIR``)."""

CLEARED = frozenset({
    "NO_COLOR", "FORCE_COLOR", "CLICOLOR", "CLICOLOR_FORCE", "COLUMNS", "LINES",
    "SHELL", "ZDOTDIR", "BASH_COMPLETION_USER_DIR", "EDITOR", "VISUAL", "PAGER",
    "SSH_AUTH_SOCK", "NOTIFY_SOCKET", "INVOCATION_ID", "JOURNAL_STREAM", "LANGUAGE",
    "DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
    "http_proxy", "https_proxy", "no_proxy", "all_proxy",
})

HARNESS = frozenset({
    "PARHELIA_CLAUDE_BIN", "PARHELIA_INSPECTOR_BIN", "PARHELIA_REQUIRE_REAL_TOOLS",
    "PARHELIA_HYPOTHESIS_EXAMPLES",
})
"""The test harness's own switches (``.ci/run`` sets them): kept, the product never
reads them."""

BYTECODE = "PYTHONDONTWRITEBYTECODE"
"""Cleared so that the thousands of Python processes the suite starts (CLI calls, daemons,
workers) share one bytecode cache: with it set (as many CI images do) and a clean
checkout, every one of them compiled every module it imported from source (a CLI call
cost 230 ms instead of 70 ms on the 2-core machine). The first process to import a module
writes its cache, the dependencies' included."""

FIXED = {"LANG": "C.UTF-8", "TZ": "UTC", "TERM": "xterm-256color"}

INHERITED = frozenset({"PATH", "TMPDIR", "USER", "LOGNAME"})
"""Kept as the caller has them: where programs are, where temp files go, who runs."""


def covers(name: str) -> bool:
    """Whether :func:`apply` decides the value of the variable ``name``."""
    return (name.startswith(CLEARED_PREFIXES) or name in CLEARED or name in FIXED
            or name in INHERITED or name == "HOME")


def apply(environ: MutableMapping[str, str] | None = None) -> Path:
    """Clear and set the variables above in ``environ`` (default: this process's, which
    every subprocess of a test inherits); ``HOME`` becomes a fresh empty directory.
    Returns that home."""
    env = os.environ if environ is None else environ
    for name in list(env):
        if name in HARNESS:
            continue
        if name.startswith(CLEARED_PREFIXES) or name in CLEARED or name == BYTECODE:
            del env[name]
    env.update(FIXED)
    if environ is None:
        sys.dont_write_bytecode = False  # this process too (BYTECODE)
    home = Path(tempfile.mkdtemp(prefix="parhelia-test-home-"))
    env["HOME"] = str(home)
    return home
