"""The worker's image on Modal, built from the SDK object passed in (never imports modal).

Debian slim with the daemon's Python, git, curl, ca-certificates, tmux, Node 22 and
Claude Code pinned to ``CLAUDE_CODE_VERSION``; the worker's sources (``modal_worker`` and
``parhelia``) are added LAST and mounted at start (``copy=False``), so a change to them
does not rebuild the image. Modal caches the layers: a second build of the same recipe
is a lookup.
"""

from __future__ import annotations

import sys
from typing import Any

CLAUDE_CODE_VERSION = "2.1.332"
"""The Claude Code release the image installs; the same as CI's pin (.ci/claude-version,
a test keeps them equal)."""

NODE_MAJOR = 22
APT_PACKAGES = ("git", "curl", "ca-certificates", "tmux", "gnupg", "openssh-server")
WORKER_SOURCES = ("modal_worker", "parhelia")
IMAGE_ENV = {
    # Modal containers run as root: Claude Code refuses bypassPermissions as root unless
    # it knows it runs in a sandbox.
    "IS_SANDBOX": "1",
    "DISABLE_AUTOUPDATER": "1",
    "PYTHONUNBUFFERED": "1",
}


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def worker_image(sdk: Any, claude_version: str = CLAUDE_CODE_VERSION) -> Any:
    """The image definition (lazy: nothing is built until ``build``/``Sandbox.create``)."""
    return (
        sdk.Image.debian_slim(python_version=python_version())
        .apt_install(*APT_PACKAGES)
        .run_commands(
            f"curl -fsSL https://deb.nodesource.com/setup_{NODE_MAJOR}.x | bash -",
            "apt-get install -y --no-install-recommends nodejs",
            f"npm install -g @anthropic-ai/claude-code@{claude_version}",
            "claude --version",
        )
        .env(IMAGE_ENV)
        .add_local_python_source(*WORKER_SOURCES, copy=False)
    )
