"""The whole stack with the REAL Claude Code CLI: CLI -> daemon -> local backend -> worker
-> claude -> the local fake of the Messages API."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningDaemon, start_daemon
from tests.fake_anthropic import FakeAnthropic, reply, tool_use
from tests.gitrepo import git, init_repo
from tests.integration.conftest import Harness, kill_workers

pytestmark = pytest.mark.claude


@pytest.fixture
def stack(claude_bin: Path, parhelia_home: Path, tmp_path: Path
          ) -> Iterator[tuple[Harness, FakeAnthropic]]:
    with FakeAnthropic() as fake:
        (parhelia_home / "config.toml").write_text(
            f"[agent]\ncommand = ['{claude_bin}']\n"
            "[heartbeat]\ninterval_seconds = 0.5\n"
            "[checkpoint]\nmin_turn_interval_seconds = 0\n"
            "[recovery]\nbackoff_seconds = 0.2\n")
        home = tmp_path / "home"
        home.mkdir()
        daemon: RunningDaemon = start_daemon(
            parhelia_home, ANTHROPIC_API_KEY="test-key", ANTHROPIC_BASE_URL=fake.url,
            HOME=str(home), CLAUDE_CODE_MAX_RETRIES="0", NO_PROXY="127.0.0.1,localhost")
        try:
            yield Harness(daemon), fake
        finally:
            daemon.stop()
            kill_workers(parhelia_home)


def make_repo(path: Path) -> str:
    return init_repo(path, {"README.md": "# project\n"})


def queued(harness: Harness, prompt: str, repo: Path) -> tuple[str, Path]:
    """Create the task without dispatching it, so the workspace path (the reserved session
    id) is known before the fake model is told which absolute path to write."""
    out = harness.json("task", "create", prompt, "--workspace", str(repo), "--no-dispatch")
    task: dict[str, Any] = out["task"]
    workspace = harness.home / "data" / "workspaces" / task["source"]["workspace_id"]
    return task["id"], workspace


def test_real_claude_writes_a_file_and_task_pull_brings_it_back(
        stack: tuple[Harness, FakeAnthropic], tmp_path: Path) -> None:
    harness, fake = stack
    repo = tmp_path / "repo"
    base = make_repo(repo)
    task_id, workspace = queued(harness, "Write hello.py printing hello", repo)
    fake.add_replies(
        reply("I'll create the file.",
              tool_use("Write", {"file_path": str(workspace / "hello.py"),
                                 "content": "print('hello')\n"})),
        reply("Created hello.py."))
    harness.run("task", "dispatch", check=True)
    task = harness.wait(task_id, timeout=120)
    assert task["status"] == "completed", (task, fake.summary())
    assert task["usage"]["turns"] >= 1
    assert task["usage"]["input_tokens"] > 0 and task["usage"]["output_tokens"] > 0
    assert float(task["usage"]["api_cost_usd"]) > 0
    assert "Created hello.py." in task["result"]["text"]
    assert fake.main_requests and fake.main_requests[0].api_key_is("test-key")

    harness.run("task", "pull", task_id, cwd=repo, check=True)
    assert git(repo, "show", f"parhelia/{task_id}:hello.py") == "print('hello')"
    assert git(repo, "rev-parse", f"parhelia/{task_id}~1") == base
    assert not (repo / "hello.py").exists()


def test_real_claude_resumed_after_sigkill_gets_the_earlier_messages(
        stack: tuple[Harness, FakeAnthropic], tmp_path: Path) -> None:
    harness, fake = stack
    repo = tmp_path / "repo"
    make_repo(repo)
    prompt = "Create step1.txt, then step2.txt. MARKER-ORIGINAL-PROMPT"
    task_id, workspace = queued(harness, prompt, repo)
    fake.add_replies(
        reply("Step one.", tool_use("Write", {"file_path": str(workspace / "step1.txt"),
                                              "content": "one\n"})),
        reply("Thinking about step two...", delay_s=60))  # killed while waiting for this
    harness.run("task", "dispatch", check=True)
    assert fake.wait_for(lambda reqs: sum(r.kind == "main" for r in reqs) >= 2, timeout=90), \
        fake.summary()
    # Let the turn checkpoint with the transcript land before the kill.
    deadline = time.monotonic() + 30
    while not [e for e in harness.events("--task", task_id, "--type", "checkpoint_created")
               if (e["data"] or {}).get("trigger") == "turn"]:
        assert time.monotonic() < deadline, "no turn checkpoint"
        time.sleep(0.2)
    fake.clear_requests()
    fake.set_script([reply("Step two.", tool_use("Write", {
        "file_path": str(workspace / "step2.txt"), "content": "two\n"})), reply("Both done.")])
    container = harness.task(task_id)["container_id"]
    backend_id = sqlite3.connect(harness.home / "state" / "parheliad.db").execute(
        "SELECT backend_id FROM containers WHERE id = ?", (container,)).fetchone()[0]
    os.kill(int(backend_id.split("@")[0]), signal.SIGKILL)

    task = harness.wait(task_id, timeout=120)
    assert task["status"] == "completed", (task, fake.summary())
    assert task["restarts"] == 1
    # The resumed run is the one whose requests carry the continuation prompt (a request
    # the killed agent had in flight may still be recorded after the clear).
    resumed = [r for r in fake.main_requests if "interrupted" in r.messages_text()]
    assert resumed, fake.summary()
    text = resumed[0].messages_text()
    assert "MARKER-ORIGINAL-PROMPT" in text  # the earlier conversation came along
    assert "step1.txt" in text
    assert (workspace / "step1.txt").read_text() == "one\n"
    assert (workspace / "step2.txt").read_text() == "two\n"
