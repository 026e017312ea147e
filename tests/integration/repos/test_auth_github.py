"""The GitHub token: `auth set --github` (the env file, no restart), GH_TOKEN or
GITHUB_TOKEN, `gh auth token`; `auth status` names the one in force, never its value."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.helpers.fake_gh import fake_gh
from tests.helpers.fake_github import FakeGitHub
from tests.helpers.git_server import GitServer
from tests.helpers.harness import Harness, fake_prompt
from tests.integration.repos.common import (
    FILES,
    NAME,
    OWNER,
    files_holding,
    start,
    token_forms,
)

WORK = fake_prompt({"write": "app.py", "content": "print('v2')\n"}, {"turn": True})


def clone_ok(harness: Harness, git_server: GitServer) -> None:
    task_id = harness.json("task", "create", WORK, "--repo", git_server.url(OWNER, NAME))["id"]
    task = harness.wait(task_id, timeout=60)
    assert task["status"] == "completed", task


def test_auth_set_github_is_used_at_once_and_stored_only_in_the_env_file(
        harness_factory: Callable[..., Harness], git_server: GitServer,
        fake_github: FakeGitHub) -> None:
    git_server.create(OWNER, NAME, FILES)
    harness = start(harness_factory, git_server, fake_github, with_token=False)
    before = harness.json("auth", "status")["github"]
    assert before["name"] is None and before["hosts"] == [git_server.host]
    assert "no token" in harness.run("auth", "status").stdout

    agent = harness.daemon.cli("auth", "set", input="sk-ant-agent-key\n")
    assert agent.returncode == 0, agent.stderr
    proc = harness.daemon.cli("auth", "set", "--github", input=git_server.token + "\n")
    assert proc.returncode == 0 and "Stored GITHUB_TOKEN" in proc.stdout, proc.stderr
    env_file = Path(harness.json("auth", "status")["env_file"])
    text = env_file.read_text()
    assert "ANTHROPIC_API_KEY=sk-ant-agent-key" in text
    assert f"GITHUB_TOKEN={git_server.token}" in text
    status = harness.json("auth", "status")["github"]
    assert (status["name"], status["source"]) == ("GITHUB_TOKEN", "env file")
    said = harness.run("auth", "status").stdout
    assert "GITHUB_TOKEN from the env file" in said and git_server.token not in said

    clone_ok(harness, git_server)  # no restart needed
    needles = token_forms(git_server.token)
    assert files_holding([harness.home], needles, skip=lambda p: p == env_file) == []

    assert harness.daemon.cli("auth", "clear", "--github", "-y").returncode == 0
    text = env_file.read_text()
    assert "GITHUB_TOKEN" not in text and "ANTHROPIC_API_KEY=sk-ant-agent-key" in text
    assert harness.json("auth", "status")["github"]["name"] is None


def test_the_gh_cli_login_serves_and_the_environment_wins(
        harness_factory: Callable[..., Harness], git_server: GitServer,
        fake_github: FakeGitHub) -> None:
    git_server.create(OWNER, NAME, FILES)
    harness = start(harness_factory, git_server, fake_github, with_token=False,
                    gh_token=git_server.token)
    status = harness.json("auth", "status")["github"]
    assert (status["name"], status["source"]) == ("gh auth token", "gh")
    assert "gh CLI's login" in harness.run("auth", "status").stdout
    clone_ok(harness, git_server)
    harness.daemon.stop()

    fake_gh(git_server.root.parent / "tools", "ghp_" + "1" * 36)  # a stale gh login
    harness = start(harness_factory, git_server, fake_github, with_token=False,
                    GH_TOKEN=git_server.token)
    status = harness.json("auth", "status")["github"]
    assert (status["name"], status["source"]) == ("GH_TOKEN", "environment")
    clone_ok(harness, git_server)
