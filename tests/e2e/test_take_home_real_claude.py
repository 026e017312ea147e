"""Take it home, and send it away (issue 16, item 5), with the REAL Claude Code CLI against
the fake Messages API on both sides of the move:

- a task's conversation is pulled with `session pull --to DIR`, then the real CLI run by
  the user in DIR with `--resume UUID` (their own CLAUDE_CONFIG_DIR) sends it whole;
- a conversation made locally with the real CLI is sent with `task create --from-session`,
  and the task's first request to the API carries it.
"""

from __future__ import annotations

import json
import os
import stat
import uuid
from pathlib import Path

import pytest

from tests.e2e.claude_env import claude_argv, claude_env, run_claude, transcript_path
from tests.e2e.test_parhelia_real_claude import make_repo, queued
from tests.e2e.test_parhelia_real_claude import stack as stack  # noqa: F401  (the fixture)
from tests.fake_anthropic import FakeAnthropic, reply, tool_use
from tests.helpers.gitrepo import git
from tests.helpers.harness import Harness

pytestmark = pytest.mark.claude


def _user_dirs(tmp_path: Path) -> tuple[Path, Path]:
    home, config = tmp_path / "user-home", tmp_path / "user-claude"
    home.mkdir()
    config.mkdir(mode=0o700)
    return home, config


def test_session_pull_then_the_real_cli_resumes_the_remote_conversation_locally(
        stack: tuple[Harness, FakeAnthropic], claude_bin: Path, tmp_path: Path) -> None:
    harness, fake = stack
    repo = tmp_path / "repo"
    make_repo(repo)
    task_id, workspace = queued(harness, "Write notes.txt. MARKER-REMOTE-PROMPT", repo)
    fake.add_replies(
        reply("Writing it.", tool_use("Write", {"file_path": str(workspace / "notes.txt"),
                                                "content": "remote work\n"})),
        reply("MARKER-REMOTE-ANSWER notes.txt is written."))
    harness.run("task", "dispatch", check=True)
    task = harness.wait(task_id, timeout=120)
    assert task["status"] == "completed", (task, fake.summary())

    user_home, user_config = _user_dirs(tmp_path)
    dest = tmp_path / "taken home"  # a space: the printed command must quote it
    out = harness.run("session", "pull", task_id, "--to", str(dest),
                      env={"CLAUDE_CONFIG_DIR": str(user_config)})
    assert out.returncode == 0, out.stderr
    session = harness.task(task_id)["session_id"]
    agent_uuid = harness.json("session", "show", session)["agent_session_id"]
    command = out.stdout.strip().splitlines()[-1]
    assert command == f"cd '{dest}' && claude --resume {agent_uuid}", out.stdout

    # The workspace: the task's file, in a repository at the base commit.
    assert (dest / "notes.txt").read_text() == "remote work\n"
    assert (dest / "README.md").read_text() == "# project\n"
    assert "notes.txt" in git(dest, "status", "--porcelain")
    assert "Parhelia agent" not in (dest / ".git" / "config").read_text()
    # The conversation: in the user's config, under the project dir of DIR, 0600.
    installed = transcript_path(user_config, dest, agent_uuid)
    assert installed.is_file()
    assert stat.S_IMODE(installed.stat().st_mode) == 0o600

    # The user's own CLI, in DIR, resumes it: its first request carries the remote turns.
    fake.clear_requests()
    fake.add_replies(reply("MARKER-LOCAL-ANSWER continuing here."))
    env = claude_env(fake.url, config_dir=user_config, home=user_home)
    run = run_claude(claude_argv(claude_bin, "What did you write?", session_id=agent_uuid,
                                 resume=True), env=env, cwd=dest, timeout=120)
    assert run.returncode == 0, run.describe()
    first = fake.main_requests[0].messages_text()
    assert "MARKER-REMOTE-PROMPT" in first and "MARKER-REMOTE-ANSWER" in first, first[-2000:]
    assert "What did you write?" in first

    # A second pull into the same directory, or over the installed conversation, is refused.
    again = harness.run("session", "pull", task_id, "--to", str(dest),
                        env={"CLAUDE_CONFIG_DIR": str(user_config)})
    assert again.returncode == 1 and "E103" in again.stderr and "not empty" in again.stderr


def test_a_local_conversation_is_continued_by_a_task(
        stack: tuple[Harness, FakeAnthropic], claude_bin: Path, tmp_path: Path) -> None:
    harness, fake = stack
    repo = tmp_path / "repo"
    make_repo(repo)
    user_home, user_config = _user_dirs(tmp_path)
    local_uuid = str(uuid.uuid4())
    fake.add_replies(reply("MARKER-LOCAL-ANSWER I looked at the README."))
    env = claude_env(fake.url, config_dir=user_config, home=user_home)
    run = run_claude(claude_argv(claude_bin, "Read the README. MARKER-LOCAL-PROMPT",
                                 session_id=local_uuid), env=env, cwd=repo, timeout=120)
    assert run.returncode == 0, run.describe()
    local = transcript_path(user_config, repo, local_uuid)
    before = local.read_bytes()

    fake.clear_requests()
    fake.add_replies(reply("MARKER-TASK-ANSWER carried on remotely."))
    created = harness.run("task", "create", "Now carry on. MARKER-TASK-PROMPT",
                          "--from-session", local_uuid, "--json", cwd=repo, check=True,
                          env={"CLAUDE_CONFIG_DIR": str(user_config)})
    task_id = json.loads(created.stdout)["id"]
    task = harness.wait(task_id, timeout=120)
    assert task["status"] == "completed", (task, fake.summary())
    first = fake.main_requests[0].messages_text()
    assert "MARKER-LOCAL-PROMPT" in first and "MARKER-LOCAL-ANSWER" in first, first[-2000:]
    assert "MARKER-TASK-PROMPT" in first
    session = harness.json("session", "show", task["session_id"])
    assert session["agent_session_id"] == local_uuid
    assert local.read_bytes() == before  # the local conversation is left as it was
    assert os.stat(local).st_mode & 0o777 == 0o600
