"""The real external tools some tests need (the pinned Claude Code CLI, the MCP Inspector):
skip without them on a developer's machine, fail without them in CI.

``.ci/run`` sets ``PARHELIA_REQUIRE_REAL_TOOLS=1``: a test that would skip because a real
tool is missing or broken then FAILS, so CI cannot go green with those tests skipped.
Without the variable the test is skipped with the reason, and the session ends with a
warning naming how many such tests did not run (``tests/conftest.py``).
"""

from __future__ import annotations

import os
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
