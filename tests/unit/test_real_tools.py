"""``requires`` and ``require`` (tests/helpers/real_tools.py): a missing tool or root
skips a test on a developer's machine, with the reason and how to get it, and fails it
under PARHELIA_REQUIRE_REAL_TOOLS=1 (CI) - seen on planted absences."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.helpers import real_tools
from tests.helpers.real_tools import REQUIRE_ENV, SKIP_MARK, require


@pytest.fixture
def nothing_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)


@pytest.mark.parametrize("name", sorted(real_tools.REQUIREMENTS))
def test_a_missing_requirement_skips_with_how_to_get_it(nothing_installed, monkeypatch,
                                                        name: str) -> None:
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        require(name, "for the planted test")
    message = str(skipped.value)
    assert SKIP_MARK in message and name in message and "for the planted test" in message
    assert real_tools.REQUIREMENTS[name] in message


@pytest.mark.parametrize("name", sorted(real_tools.REQUIREMENTS))
def test_a_missing_requirement_fails_in_ci(nothing_installed, monkeypatch, name: str) -> None:
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=f"{name} is required"):
        require(name)


def test_a_present_requirement_lets_the_test_run(monkeypatch) -> None:
    monkeypatch.setenv(REQUIRE_ENV, "1")
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: f"/usr/bin/{name}")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    for name in real_tools.REQUIREMENTS:
        require(name)
    with pytest.raises(ValueError, match="unknown requirement"):
        require("docker")
