"""The real external tools some tests need (the pinned Claude Code CLI, the MCP Inspector,
tmux, systemd-analyze) and root: skip without them on a developer's machine, fail without
them in CI.

``.ci/run`` sets ``PARHELIA_REQUIRE_REAL_TOOLS=1`` (and installs tmux and systemd when
they are missing): a test that would skip because a real tool is missing or broken then
FAILS, so CI cannot go green with those tests skipped. Without the variable the test is
skipped with the reason, and the session ends with a warning naming how many such tests
did not run (``tests/conftest.py``).

A test says what it needs with ``@pytest.mark.requires("tmux")`` (module-wide in
``pytestmark``), checked before it runs (``tests/conftest.py``); a fixture or a test body
that finds out later calls :func:`require`.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

REQUIRE_ENV = "PARHELIA_REQUIRE_REAL_TOOLS"
SKIP_MARK = "[real tool unavailable]"


def required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip() not in ("", "0")


def unavailable(tool: str, reason: str) -> NoReturn:
    """Skip (developer machine) or fail (``PARHELIA_REQUIRE_REAL_TOOLS=1``, CI)."""
    if required():
        pytest.fail(f"{tool} is required ({REQUIRE_ENV}=1, as .ci/run sets) but unusable: "
                    f"{reason}", pytrace=False)
    pytest.skip(f"{SKIP_MARK} {tool}: {reason} (CI fails here: {REQUIRE_ENV}=1)")


ROOT = "root"
REQUIREMENTS = {
    "tmux": "not installed (Debian/Ubuntu: apt-get install tmux; .ci/run installs it)",
    "systemd-analyze": "not installed (Debian/Ubuntu: apt-get install systemd; .ci/run "
                       "installs it)",
    ROOT: "the test acts as another user (chown, setuid) or as a sandbox's root; run it as "
          "root, as .ci/run does in CI",
}
"""What ``requires`` accepts: an executable on PATH, or ``root``; and how to get it."""


def require(name: str, reason: str = "") -> None:
    """Go on when ``name`` (a key of :data:`REQUIREMENTS`) is here, else
    :func:`unavailable` (skip, or fail under ``PARHELIA_REQUIRE_REAL_TOOLS=1``)."""
    if name not in REQUIREMENTS:
        raise ValueError(f"unknown requirement {name!r}: one of {sorted(REQUIREMENTS)}")
    present = os.geteuid() == 0 if name == ROOT else shutil.which(name) is not None
    if not present:
        unavailable(name, f"{reason}: {REQUIREMENTS[name]}" if reason else REQUIREMENTS[name])
