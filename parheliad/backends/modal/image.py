"""The worker's image on Modal, built from the SDK object passed in (never imports modal).

An environment's recipe (:class:`parheliad.environments.model.ImageRecipe`) gives the
base -- Debian slim with a Python, a registry image (``add_python`` when the
environment names a Python), or the repository's Dockerfile -- then its ``apt`` and
``run`` layers. Parhelia's own layers always come last, in this order: a check that the
base can run the worker (Debian or Ubuntu, glibc, Python 3.11+ as ``python``: refused
at build time, with the reason, not at task time), git, curl, tmux and sshd, Node 22
and Claude Code pinned to ``CLAUDE_CODE_VERSION``, the image's environment, and the
worker's sources (``modal_worker`` and ``parhelia``), mounted at start (``copy=False``)
so that a change to them does not rebuild the image. Modal caches the layers by their
definition: a second build of the same recipe is a lookup.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from parheliad.environments.model import (
    BASE_DEBIAN_SLIM,
    BASE_DOCKERFILE,
    BASE_REGISTRY,
    Base,
    ImageRecipe,
)

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
BASE_CHECK = (
    "echo parhelia-base-check; "
    "command -v apt-get >/dev/null || { echo 'parhelia: the base image has no apt-get: it "
    "must be Debian or Ubuntu based' >&2; exit 1; }; "
    "ldd --version >/dev/null 2>&1 || { echo 'parhelia: the base image has no glibc "
    "(a musl image such as Alpine cannot run Claude Code)' >&2; exit 1; }; "
    "python -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo 'parhelia: "
    "the base image has no Python 3.11 or newer as python: name one (python = \"3.12\") "
    "to have it added' >&2; exit 1; }"
)
"""A registry image or Dockerfile base must be able to run the worker and Claude Code;
this layer refuses one that cannot, with the reason, when the image is built."""
DOCKERFILE_NAME = "Dockerfile"
CONTEXT_DIR = "context"
"""In a Dockerfile build's private directory: the Dockerfile, and its context."""


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _base(sdk: Any, base: Base, build_dir: Path | None) -> Any:
    if base.kind == BASE_DEBIAN_SLIM:
        return sdk.Image.debian_slim(python_version=base.python or python_version())
    if base.kind == BASE_REGISTRY:
        image = sdk.Image.from_registry(base.image, add_python=base.python or None)
    elif base.kind == BASE_DOCKERFILE:
        if build_dir is None:
            raise ValueError("a Dockerfile base needs its build directory")
        image = sdk.Image.from_dockerfile(
            build_dir / DOCKERFILE_NAME, context_dir=build_dir / CONTEXT_DIR,
            build_args=dict(base.build_args), add_python=base.python or None)
    else:
        raise ValueError(f"unknown base kind {base.kind!r}")
    return image.run_commands(BASE_CHECK)


def worker_image(sdk: Any, claude_version: str = CLAUDE_CODE_VERSION,
                 recipe: ImageRecipe | None = None, build_dir: Path | None = None) -> Any:
    """The image definition (lazy: nothing is built until ``build``/``Sandbox.create``);
    without a recipe, the default environment's (Debian slim, the daemon's Python)."""
    recipe = recipe or ImageRecipe(base=Base(BASE_DEBIAN_SLIM, python=python_version()))
    image = _base(sdk, recipe.base, build_dir)
    if recipe.apt:
        image = image.apt_install(*recipe.apt)
    if recipe.run:
        image = image.run_commands(*recipe.run)
    return (
        image.apt_install(*APT_PACKAGES)
        .run_commands(
            f"curl -fsSL https://deb.nodesource.com/setup_{NODE_MAJOR}.x | bash -",
            "apt-get install -y --no-install-recommends nodejs",
            f"npm install -g @anthropic-ai/claude-code@{claude_version}",
            "claude --version",
        )
        .env(IMAGE_ENV)
        .add_local_python_source(*WORKER_SOURCES, copy=False)
    )
