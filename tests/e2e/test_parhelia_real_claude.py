"""The whole stack with the REAL Claude Code CLI: CLI -> daemon -> local backend -> worker
-> claude -> the local fake of the Messages API."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_anthropic import FakeAnthropic, reply, tool_use
from tests.helpers.daemon import RunningDaemon, start_daemon
from tests.helpers.gitrepo import git, init_repo
from tests.helpers.harness import Harness, kill_workers

pytestmark = pytest.mark.claude


@pytest.fixture
def stack(claude_bin: Path, parhelia_home: Path, tmp_path: Path, request: pytest.FixtureRequest
          ) -> Iterator[tuple[Harness, FakeAnthropic]]:
    backoff = getattr(request, "param", {}).get("backoff_seconds", 0.2)
    with FakeAnthropic() as fake:
        (parhelia_home / "config.toml").write_text(
            f"[agent]\ncommand = ['{claude_bin}']\n"
            "[heartbeat]\ninterval_seconds = 0.5\n"
            f"[recovery]\nbackoff_seconds = {backoff}\n")
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
    task: dict[str, Any] = out.get("task", out)
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


def _kill_worker(harness: Harness, task_id: str) -> None:
    container = harness.task(task_id)["container_id"]
    backend_id = sqlite3.connect(harness.home / "state" / "parheliad.db").execute(
        "SELECT backend_id FROM containers WHERE id = ?", (container,)).fetchone()[0]
    os.kill(int(backend_id.split("@")[0]), signal.SIGKILL)


def _write(workspace: Path, name: str, content: str) -> Any:
    return tool_use("Write", {"file_path": str(workspace / name), "content": content})


def test_real_claude_resumed_after_sigkill_gets_every_earlier_turn(
        stack: tuple[Harness, FakeAnthropic], tmp_path: Path) -> None:
    """Four quick turns, then the worker is SIGKILLed the moment the fifth request arrives,
    without waiting for any checkpoint: the resumed conversation holds all four turns and
    none of them is done again."""
    harness, fake = stack
    repo = tmp_path / "repo"
    make_repo(repo)
    prompt = "Create step1.txt to step5.txt, one per turn. MARKER-ORIGINAL-PROMPT"
    task_id, workspace = queued(harness, prompt, repo)
    fake.add_replies(*[reply(f"Step {i}.", _write(workspace, f"step{i}.txt", f"{i}\n"))
                       for i in range(1, 5)],
                     reply("Thinking about step five...", delay_s=60))  # killed waiting
    harness.run("task", "dispatch", check=True)
    assert fake.wait_for(lambda reqs: sum(r.kind == "main" for r in reqs) >= 5, timeout=90), \
        fake.summary()
    _kill_worker(harness, task_id)
    fake.clear_requests()
    fake.set_script([reply("Step 5.", _write(workspace, "step5.txt", "5\n")),
                     reply("All five done.")])

    task = harness.wait(task_id, timeout=120)
    assert task["status"] == "completed", (task, fake.summary())
    assert task["restarts"] == 1
    # The resumed run is the one whose requests carry the continuation prompt (a request
    # the killed agent had in flight may still be recorded after the clear).
    resumed = [r for r in fake.main_requests if "interrupted" in r.messages_text()]
    assert resumed, fake.summary()
    first = resumed[0]
    assert "MARKER-ORIGINAL-PROMPT" in first.messages_text()
    writes = [b["input"]["file_path"] for m in first.messages if m.get("role") == "assistant"
              and isinstance(m.get("content"), list) for b in m["content"]
              if b.get("type") == "tool_use" and b.get("name") == "Write"]
    assert writes == [str(workspace / f"step{i}.txt") for i in range(1, 5)], writes
    results = [b for m in first.messages if m.get("role") == "user"
               and isinstance(m.get("content"), list) for b in m["content"]
               if b.get("type") == "tool_result"]
    assert len(results) == 4 and not any(r.get("is_error") for r in results)
    # No turn redone: after the resume only step five was written.
    after = [b["input"]["file_path"] for r in resumed for m in r.messages[-1:]
             if m.get("role") == "assistant" and isinstance(m.get("content"), list)
             for b in m["content"] if b.get("type") == "tool_use"]
    assert all("step5" in p for p in after), after
    for i in range(1, 6):
        assert (workspace / f"step{i}.txt").read_text() == f"{i}\n"


@pytest.mark.parametrize("stack", [{"backoff_seconds": 4}], indirect=True)
def test_real_claude_subagent_transcript_survives_a_kill_and_a_lost_machine(
        stack: tuple[Harness, FakeAnthropic], tmp_path: Path) -> None:
    """The agent runs a subagent (the Agent/Task tool, in the foreground) before the kill;
    the session's files on disk are then lost (as a Modal sandbox's are): the resumed
    session's config dir holds the subagent's transcript again, from the checkpoint."""
    harness, fake = stack
    repo = tmp_path / "repo"
    make_repo(repo)
    task_id, workspace = queued(harness, "Use a subagent, then write notes.txt", repo)
    fake.add_replies(
        reply("Delegating.", tool_use("Agent", {
            "description": "survey the repo", "prompt": "Say SUBAGENT-MARKER and stop.",
            "subagent_type": "general-purpose", "run_in_background": False})),
        reply("SUBAGENT-MARKER: nothing to report."),  # the subagent's only turn
        reply("Writing notes.", _write(workspace, "notes.txt", "notes\n")),
        reply("Almost there...", delay_s=60))  # killed waiting for this
    harness.run("task", "dispatch", check=True)
    assert fake.wait_for(lambda reqs: sum(r.kind == "main" for r in reqs) >= 4, timeout=90), \
        fake.summary()
    session = harness.task(task_id)["session_id"]

    def subagent_checkpointed() -> bool:
        for e in harness.events("--task", task_id, "--type", "checkpoint_created"):
            data = e["data"] or {}
            if data.get("trigger") == "turn" and (data.get("stats") or {}).get(
                    "conversation_files", 0) >= 3:  # transcript, subagent .jsonl and .meta
                return True
        return False

    deadline = time.monotonic() + 60
    while not subagent_checkpointed():
        assert time.monotonic() < deadline, "no checkpoint with the subagent's transcript"
        time.sleep(0.2)
    config = harness.home / "data" / "claude" / session
    before = sorted(p.relative_to(config).as_posix() for p in config.rglob("subagents/*"))
    assert any(p.endswith(".jsonl") for p in before), before
    fake.clear_requests()
    fake.set_script([reply("Done with notes.")])
    _kill_worker(harness, task_id)
    # The machine is lost: nothing of the session remains on disk (done within the
    # recovery's 4 s backoff; the agent died with its worker).
    time.sleep(0.5)
    shutil.rmtree(config)
    shutil.rmtree(workspace)
    task = harness.wait(task_id, timeout=120)
    assert task["status"] == "completed", (task, fake.summary())
    after = sorted(p.relative_to(config).as_posix() for p in config.rglob("subagents/*"))
    assert set(before) <= set(after), (before, after)
    sub = next(config / p for p in before if p.endswith(".jsonl"))
    assert "SUBAGENT-MARKER" in sub.read_text()
    assert (workspace / "notes.txt").read_text() == "notes\n"
    restored = [e["data"] for e in harness.events("--task", task_id, "--type",
                                                   "workspace_restored")]
    assert restored[-1]["source"] == "checkpoint"


def test_real_claude_runs_git_status_and_sees_the_users_uncommitted_change(
        stack: tuple[Harness, FakeAnthropic], tmp_path: Path) -> None:
    """The workspace is a repository at the base commit with the upload's uncommitted
    changes present: the real CLI's Bash tool runs `git status` and `git log` there."""
    harness, fake = stack
    repo = tmp_path / "repo"
    base = make_repo(repo)
    (repo / "README.md").write_text("# project\nuncommitted line\n")
    (repo / "notes.md").write_text("untracked\n")
    task_id, _ = queued(harness, "Look at the repository state", repo)
    fake.add_replies(
        reply("Checking git.", tool_use("Bash", {"command": "git status --porcelain",
                                                 "description": "Show git status"})),
        reply("And the log.", tool_use("Bash", {"command": "git log --format=%H",
                                                "description": "Show git log"})),
        reply("Seen."))
    harness.run("task", "dispatch", check=True)
    task = harness.wait(task_id, timeout=120)
    assert task["status"] == "completed", (task, fake.summary())
    results = [str(b.get("content")) for r in fake.main_requests
               for b in r.last_user_content() if b.get("type") == "tool_result"]
    assert len(results) >= 2, fake.summary()
    output = "\n".join(results)
    assert " M README.md" in output and "?? notes.md" in output and base in output, output
