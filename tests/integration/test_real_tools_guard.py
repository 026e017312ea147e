"""CI cannot pass with the real-tool tests skipped: a broken Claude Code install (and a
missing MCP Inspector) fails those tests under ``PARHELIA_REQUIRE_REAL_TOOLS=1`` - which
``.ci/run`` sets - and only skips them, loudly, without it. Runs pytest as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers.paths import REPO
from tests.helpers.real_tools import REQUIRE_ENV

TESTS = ["tests/e2e/test_real_claude_fake_api.py::"
         "test_missing_api_key_fails_at_once_without_any_request",
         "tests/integration/cli/test_mcp_server.py::test_mcp_inspector_cli"]


@pytest.fixture(scope="module")
def broken_tools(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("broken")
    claude = base / "claude"
    claude.write_text("#!/bin/sh\necho 'claude: corrupted install' >&2\nexit 1\n")
    claude.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != REQUIRE_ENV}
    env.update(PARHELIA_CLAUDE_BIN=str(claude), PARHELIA_INSPECTOR_BIN=str(base / "missing"))
    return env


def _pytest(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly", "-p",
                           "no:cacheprovider", "-n", "0", "-q", *TESTS], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=240, check=False)


def test_a_broken_claude_install_fails_the_run_when_real_tools_are_required(
        broken_tools: dict[str, str]) -> None:
    run = _pytest({**broken_tools, REQUIRE_ENV: "1"})
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "the real Claude Code CLI is required" in out and "does not answer --version" in out
    assert "the MCP Inspector is required" in out
    assert "skipped" not in out.splitlines()[-1]


def test_without_the_requirement_they_skip_with_a_loud_reason(
        broken_tools: dict[str, str]) -> None:
    run = _pytest(broken_tools)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "2 skipped" in out.splitlines()[-1]
    assert "2 tests needing a real tool did NOT run" in out


def test_ci_run_requires_the_real_tools() -> None:
    script = (REPO / ".ci" / "run").read_text()
    assert f"export {REQUIRE_ENV}=1" in script
    assert script.index(f"export {REQUIRE_ENV}=1") < script.index("\nuv run pytest")


MARKED = ["tests/unit/cli/test_service_files.py::test_systemd_unit_verifies_cleanly",
          "tests/integration/worker/test_tui.py::test_a_socket_directory_planted_in_tmp_is_refused"]
"""A test marked ``requires("systemd-analyze")`` and one marked ``requires("tmux")``."""


@pytest.mark.parametrize("required", [True, False], ids=["ci", "developer"])
def test_a_missing_tmux_or_systemd_fails_ci_and_skips_loudly_elsewhere(
        tmp_path, required: bool) -> None:
    """Planted: a PATH without tmux and systemd-analyze (the tests run nothing else first)."""
    env = {k: v for k, v in os.environ.items() if k != REQUIRE_ENV}
    env["PATH"] = str(tmp_path)
    if required:
        env[REQUIRE_ENV] = "1"
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly", "-p",
                          "no:cacheprovider", "-n", "0", "-q", "-rs", *MARKED], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=240, check=False)
    out = run.stdout + run.stderr
    summary = out.strip().splitlines()[-1]
    if required:
        assert run.returncode == 1, out
        assert "5 errors" in summary and "passed" not in summary, summary
        assert "tmux is required" in out and "systemd-analyze is required" in out
    else:
        assert run.returncode == 0, out
        assert "5 skipped" in summary and "5 tests needing a real tool did NOT run" in out
        assert "apt-get install tmux" in out and "apt-get install systemd" in out


def test_ci_run_installs_tmux_and_systemd() -> None:
    script = (REPO / ".ci" / "run").read_text()
    assert "command -v tmux" in script and "command -v systemd-analyze" in script
    assert script.index("apt-get install") < script.index("\nuv run pytest")
