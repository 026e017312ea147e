"""Fixtures for end-to-end tests that run the REAL Claude Code CLI against the local fake API.

- ``claude_bin``: the pinned CLI (``.ci/cache/claude``, installed by ``.ci/install-claude.sh``)
  or ``$PARHELIA_CLAUDE_BIN``. Absent or broken -> the test is SKIPPED with the reason, or
  FAILS when ``PARHELIA_REQUIRE_REAL_TOOLS=1`` (``.ci/run`` sets it;
  ``tests/helpers/real_tools.py``).
- ``claude_dirs``: fresh HOME, CLAUDE_CONFIG_DIR and workspace (cwd) directories.
- ``fake_anthropic`` / ``fake_anthropic_factory`` (from ``tests/conftest.py``): see
  ``tests/fake_anthropic``.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.claude_env import BIN_ENV_VAR, CACHE_BIN, ClaudeDirs, pinned_version
from tests.helpers.real_tools import required, unavailable

_INSTALL_HINT = "run .ci/install-claude.sh (npm registry unreachable?)"


def _probe_version(path: Path) -> str | None:
    try:
        out = subprocess.run(
            [str(path), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    return out.stdout.split()[0]


CLI = "the real Claude Code CLI"


@pytest.fixture(scope="session")
def claude_bin() -> Path:
    """Path of the real ``claude`` binary; skips (or, required, fails) when it is unusable."""
    pinned = pinned_version()
    override = os.environ.get(BIN_ENV_VAR)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            unavailable(CLI, f"{BIN_ENV_VAR}={override} is not an executable file")
        version = _probe_version(path)
        if version is None:
            unavailable(CLI, f"{BIN_ENV_VAR}={override} does not answer --version")
        if required() and version != pinned:
            unavailable(CLI, f"{BIN_ENV_VAR}={override} reports {version!r}, pinned {pinned}")
        return path
    if not CACHE_BIN.exists():
        unavailable(CLI, f"not installed ({CACHE_BIN} missing): {_INSTALL_HINT}")
    version = _probe_version(CACHE_BIN)
    if version != pinned:
        unavailable(CLI, f"{CACHE_BIN.parent.parent.parent} reports {version!r}, pinned "
                         f"{pinned}: {_INSTALL_HINT}")
    return CACHE_BIN


@pytest.fixture
def claude_dirs(tmp_path: Path) -> ClaudeDirs:
    base = tmp_path.resolve()
    dirs = ClaudeDirs(home=base / "home", config=base / "cfg", cwd=base / "ws")
    for d in (dirs.home, dirs.config, dirs.cwd):
        d.mkdir(mode=0o700)
    return dirs
