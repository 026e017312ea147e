"""The real Claude Code CLI (pinned) on a private repository, end to end: `task create
--repo URL --pr` -> the daemon clones with the GitHub token -> the agent edits the
workspace (the fake Messages API scripts it) -> completed -> the branch pushed and the pull
request opened on the loopback GitHub, its body the agent's answer. The token never
reaches the agent: its own `env` shows it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_anthropic import FakeAnthropic, reply, tool_use
from tests.helpers.daemon import RunningDaemon, start_daemon
from tests.helpers.fake_gh import fake_gh
from tests.helpers.fake_github import FakeGitHub
from tests.helpers.git_server import GitServer
from tests.helpers.harness import Harness, kill_workers
from tests.helpers.waiting import wait_for
from tests.integration.repos.common import (
    FILES,
    NAME,
    OWNER,
    files_holding,
    github_config,
    token_forms,
)

pytestmark = pytest.mark.claude

ANSWER = "Updated app.py so that it prints v2."


@pytest.fixture
def stack(claude_bin: Path, parhelia_home: Path, tmp_path: Path, git_server: GitServer,
          fake_github: FakeGitHub) -> Iterator[tuple[Harness, FakeAnthropic]]:
    with FakeAnthropic() as fake:
        (parhelia_home / "config.toml").write_text(
            f"[agent]\ncommand = ['{claude_bin}']\n[heartbeat]\ninterval_seconds = 0.5\n"
            + github_config(git_server, fake_github))
        home = tmp_path / "home"
        home.mkdir()
        tools = fake_gh(tmp_path / "tools")
        daemon: RunningDaemon = start_daemon(
            parhelia_home, ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=fake.url,
            HOME=str(home), CLAUDE_CODE_MAX_RETRIES="0", NO_PROXY="127.0.0.1,localhost",
            GITHUB_TOKEN=git_server.token, GH_TOKEN="",
            PATH=f"{tools}:{os.environ['PATH']}")
        try:
            yield Harness(daemon), fake
        finally:
            daemon.stop()
            kill_workers(parhelia_home)


def test_real_claude_on_a_private_repo_ends_with_a_pull_request(
        stack: tuple[Harness, FakeAnthropic], git_server: GitServer,
        fake_github: FakeGitHub) -> None:
    harness, fake = stack
    git_server.create(OWNER, NAME, FILES)
    fake.add_replies(
        reply("I'll update the greeting.",
              tool_use("Bash", {"command": "printf \"print('v2')\\n\" > app.py && env > "
                                           "agent-env.txt", "description": "edit"})),
        reply(ANSWER))
    url = git_server.url(OWNER, NAME)
    task_id = harness.json("task", "create", "Make app.py print v2", "--repo", url, "--pr",
                           "--permission-mode", "bypassPermissions")["id"]
    task = harness.wait(task_id, timeout=180)
    assert task["status"] == "completed", (task, fake.summary())
    assert ANSWER in task["result"]["text"]

    def opened() -> list[dict[str, object]] | None:
        return harness.events("--task", task_id, "--type", "pull_request_opened") or None

    event = wait_for(opened, 60, what="the pull request")[0]["data"]
    assert isinstance(event, dict)
    pr = fake_github.pull(OWNER, NAME, int(event["number"]))
    assert pr["title"] == "Make app.py print v2" and pr["base"]["ref"] == "main"
    assert ANSWER in pr["body"] and "app.py" in pr["body"]
    branch = f"parhelia/{task_id}"
    shown = subprocess.run(["git", "-C", str(git_server.repo(OWNER, NAME)), "show",
                            f"{branch}:app.py"], capture_output=True, text=True, check=True)
    assert shown.stdout == "print('v2')\n"
    dumped = subprocess.run(["git", "-C", str(git_server.repo(OWNER, NAME)), "show",
                             f"{branch}:agent-env.txt"], capture_output=True, text=True,
                            check=True).stdout
    assert "PATH=" in dumped and git_server.token not in dumped
    assert "GITHUB_TOKEN" not in dumped
    assert harness.task(task_id)["pull_request"]["url"] == pr["html_url"]
    assert files_holding([harness.home], token_forms(git_server.token)) == []
