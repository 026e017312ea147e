"""Tasks run end to end on the local backend: the real daemon, the real CLI as a
subprocess, real worker processes, and the scripted fake Claude agent."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from pathlib import Path

import psutil

from tests.helpers.daemon import cli_argv
from tests.helpers.gitrepo import git as run_git
from tests.helpers.gitrepo import init_repo
from tests.helpers.harness import Harness, fake_prompt


def test_sync_task_prints_final_text_and_records_usage(harness: Harness) -> None:
    prompt = fake_prompt({"write": "notes.txt", "content": "hi\n"}, {"turn": True})
    proc = harness.run("task", "create", prompt, "--no-workspace", "--sync")
    assert proc.returncode == 0, proc.stderr
    assert "completed" in proc.stdout
    assert "Done." in proc.stdout  # the agent's final text
    task_id = next(w for w in proc.stdout.split() if w.startswith("t-"))
    task = harness.task(task_id)
    assert task["status"] == "completed"
    assert task["usage"]["turns"] >= 1
    assert task["usage"]["input_tokens"] > 0 and task["usage"]["output_tokens"] > 0
    assert float(task["usage"]["api_cost_usd"]) > 0
    assert (harness.workspace(task_id) / "notes.txt").read_text() == "hi\n"
    types = [e["type"] for e in harness.events("--task", task_id)]
    for expected in ("task_created", "task_dispatched", "container_started", "agent_init",
                     "agent_tool_use", "checkpoint_created", "agent_result", "task_completed"):
        assert expected in types
    assert types.index("task_dispatched") < types.index("agent_init") < \
        types.index("task_completed")


def test_prompt_reaches_agent_byte_for_byte(harness: Harness) -> None:
    nasty = ("quotes ' \" `backticks` $(touch /tmp/parhelia-pwned) ${HOME} \\n\n"
             "second line; rm -rf / && echo $((1+1)) | cat > x\n\ttabbed ünïcødé ✓")
    prompt = nasty + "\nFAKE_SCRIPT: " + '[{"echo_prompt": "prompt.txt"}]'
    task_id = harness.create(prompt)
    assert harness.wait(task_id)["status"] == "completed"
    assert (harness.workspace(task_id) / "prompt.txt").read_bytes() == prompt.encode()
    assert not Path("/tmp/parhelia-pwned").exists()


def test_failing_agent_fails_the_task_with_its_code(harness: Harness) -> None:
    proc = harness.run("task", "create", fake_prompt({"fail": "boom"}), "--no-workspace",
                       "--sync")
    assert proc.returncode == 1
    assert "E604" in proc.stdout + proc.stderr
    task_id = harness.json("task", "list")["tasks"][0]["id"]
    task = harness.task(task_id)
    assert task["status"] == "failed"
    assert task["result"]["error_code"] == "E604"


def test_never_ending_agent_is_stopped_by_max_turns(harness: Harness) -> None:
    task_id = harness.create(fake_prompt({"forever": True}), "--max-turns", "3")
    task = harness.wait(task_id)
    assert task["status"] == "failed"
    assert task["result"]["error_code"] == "E604"
    assert "max-turns" in task["result"]["error_message"]


def test_never_ending_agent_is_stopped_by_timeout(harness: Harness) -> None:
    # 300 turns: more than 2 s of the fake's ticking, within the default budget's reservation
    task_id = harness.create(fake_prompt({"forever": True}), "--timeout", "2",
                             "--max-turns", "300")
    task = harness.wait(task_id)
    assert task["status"] == "failed"
    assert task["result"]["error_code"] == "E501"
    assert any(e["type"] == "checkpoint_created" and "timeout" in e["message"]
               for e in harness.events("--task", task_id))


def test_missing_credentials_fail_fast(harness_factory) -> None:
    harness = harness_factory(ANTHROPIC_API_KEY="")
    started = time.monotonic()
    proc = harness.run("task", "create", fake_prompt({"turn": True}), "--no-workspace",
                       "--sync")
    assert proc.returncode == 1
    assert "E400" in proc.stdout + proc.stderr
    assert "ANTHROPIC_API_KEY" in proc.stdout + proc.stderr
    assert time.monotonic() - started < 30  # "within seconds", not the agent's 3-minute retries


def test_cancel_mid_run_stops_the_worker(harness: Harness) -> None:
    task_id = harness.create(fake_prompt({"write": "a.txt", "content": "1"}, {"turn": True},
                                         {"sleep": 60}, {"turn": True}))
    harness.wait(task_id, ("running",))
    deadline = time.monotonic() + 30
    while not any(e["type"] == "agent_turn_completed"
                  for e in harness.events("--task", task_id)):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    container_id = harness.task(task_id)["container_id"]
    proc = harness.run("task", "cancel", task_id)
    assert proc.returncode == 0, proc.stderr
    assert harness.task(task_id)["status"] == "cancelled"
    deadline = time.monotonic() + 20
    while True:
        container = harness.json("task", "show", task_id)
        events = [e["type"] for e in harness.events("--container", container_id)]
        if "container_terminated" in events:
            break
        assert time.monotonic() < deadline, events
        time.sleep(0.2)
    assert not [p for p in psutil.process_iter(["cmdline"])
                if container_id in " ".join(p.info.get("cmdline") or [])]
    assert container  # the task is still there to inspect


def test_workspace_upload_diff_and_pull_branch(harness: Harness, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    head = init_repo(repo, {"app.py": "print('v1')\n", ".gitignore": "build/\n",
                            "build/big.bin": b"\0" * 1000})
    (repo / "untracked.txt").write_text("keep me\n")

    def git(*args: str) -> str:
        return run_git(repo, *args)

    prompt = fake_prompt({"write": "app.py", "content": "print('v2')\n"},
                         {"write": "docs/new.md", "content": "# New\n"}, {"turn": True})
    proc = harness.run("task", "create", prompt, "--sync", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert "Uploaded 3 files" in proc.stdout + proc.stderr  # app.py, .gitignore, untracked.txt
    task_id = harness.json("task", "list")["tasks"][0]["id"]
    ws = harness.workspace(task_id)
    assert (ws / "untracked.txt").exists() and not (ws / "build").exists()

    diff = harness.run("task", "diff", task_id, check=True).stdout
    assert "-print('v1')" in diff and "+print('v2')" in diff and "+# New" in diff
    stat = harness.json("task", "diff", task_id, "--stat")
    assert sorted(f["path"] for f in stat["files"]) == ["app.py", "docs/new.md"]

    status_before = git("status", "--porcelain")
    pull = harness.run("task", "pull", task_id, cwd=repo, check=True)
    assert f"parhelia/{task_id}" in pull.stdout
    assert git("rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git("rev-parse", "HEAD") == head
    assert git("status", "--porcelain") == status_before
    assert (repo / "app.py").read_text() == "print('v1')\n"
    assert git("show", f"parhelia/{task_id}:app.py") == "print('v2')"
    assert git("show", f"parhelia/{task_id}:docs/new.md") == "# New"
    # untracked.txt was uncommitted at upload: the branch's first commit holds it
    assert git("rev-parse", f"parhelia/{task_id}~2") == head
    assert git("show", f"parhelia/{task_id}~1:untracked.txt") == "keep me"

    patch = tmp_path / "out.patch"
    harness.run("task", "pull", task_id, "--patch", str(patch), check=True)
    assert "+print('v2')" in patch.read_text()
    patch.write_text("my own notes\n")
    again = harness.run("task", "pull", task_id, "--patch", str(patch))
    assert again.returncode != 0 and "E101" in again.stderr and "--force" in again.stderr
    assert patch.read_text() == "my own notes\n"
    harness.run("task", "pull", task_id, "--patch", str(patch), "--force", check=True)
    assert "+print('v2')" in patch.read_text()


def test_retry_runs_a_fresh_session_from_checkpoint_zero(harness: Harness) -> None:
    task_id = harness.create(fake_prompt({"fail": "first try fails"}))
    first = harness.wait(task_id)
    assert first["status"] == "failed"
    assert first["option_sources"]["max_turns"] == "default"
    proc = harness.run("task", "retry", task_id, "--max-turns", "9")
    assert proc.returncode == 0, proc.stderr
    second = harness.wait(task_id)
    assert second["session_id"] != first["session_id"]
    assert second["option_sources"]["max_turns"] == "flag"  # task show: who set what
    assert second["option_sources"]["permission_mode"] == "default"
    assert [e["type"] for e in harness.events("--task", task_id)].count("task_retried") == 1


def test_logs_show_the_agent_stream(harness: Harness) -> None:
    task_id = harness.create(fake_prompt({"write": "a.txt", "content": "x"}, {"turn": True}))
    harness.wait(task_id)
    logs = harness.run("task", "logs", task_id, check=True).stdout
    assert "Write" in logs


def test_item5_logs_read_as_a_person_reads_them(harness: Harness) -> None:
    """Issue 27, item 5: `task logs` shows turns, tool calls with their inputs
    summarised, their results and the agent's result; --raw the stream-json."""
    task_id = harness.create(fake_prompt({"write": "notes.txt", "content": "x"}, {"turn": True},
                                         {"bash": "echo hello"}, {"turn": True}))
    harness.wait(task_id)
    logs = harness.run("task", "logs", task_id, check=True).stdout
    lines = logs.splitlines()
    assert lines[0].startswith("== container c-"), logs
    assert "-- turn 1 --" in lines and "-- turn 2 --" in lines, logs
    write = next(line for line in lines if "-> Write:" in line)
    assert write.rstrip().endswith("notes.txt"), write
    assert any("-> Bash: echo hello" in line for line in lines), logs
    assert any(line.lstrip().startswith("<- ") for line in lines), logs
    assert any(line.startswith("== result: success") for line in lines), logs
    assert '{"type"' not in logs.replace(" ", "")
    raw = harness.run("task", "logs", task_id, "--raw", check=True).stdout
    assert all(json.loads(line)["type"] for line in raw.splitlines() if line.strip())


def test_twenty_tasks_never_more_than_four_at_once(harness_factory) -> None:
    harness = harness_factory(orchestrator="max_concurrent_workers = 4\n")
    ids = [harness.create(fake_prompt({"sleep": 0.6}, {"turn": True})) for _ in range(20)]
    for task_id in ids:
        assert harness.wait(task_id, timeout=180)["status"] == "completed"
    running, peak = 0, 0
    for event in sorted(harness.events("--type", "container_started", "--type",
                                       "container_exited", "--type", "container_failed"),
                        key=lambda e: e["id"]):
        running += 1 if event["type"] == "container_started" else -1
        peak = max(peak, running)
    assert peak <= 4
    assert peak >= 2  # they did run in parallel


def test_agent_gets_prompt_on_stdin_and_an_allow_listed_environment(harness_factory) -> None:
    """Another local user can read every command line (/proc/PID/cmdline) and a daemon's
    environment holds more than the agent needs: the prompt is not on the agent's command
    line and a daemon-only variable does not reach it; a 1 MB prompt works."""
    harness = harness_factory(DAEMON_ONLY_TOKEN="daemon-only-value")
    marker = "PROMPT-MARKER-" + "x" * 999_000
    prompt = fake_prompt({"echo_prompt": "prompt.txt"}, {"turn": True}, {"sleep": 30},
                         text=marker)
    proc = subprocess.run([*cli_argv(), "task", "create", "-", "--no-workspace", "--json"],
                          input=prompt, env=harness.daemon.env, capture_output=True, text=True,
                          timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr
    task_id = json.loads(proc.stdout)["id"]

    def agent() -> psutil.Process | None:
        for p in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if any("fake_claude" in a for a in p.info["cmdline"] or []) and \
                        p.environ().get("PARHELIA_HOME") == str(harness.home):
                    return p
        return None

    deadline = time.monotonic() + 60
    while (found := agent()) is None:
        assert time.monotonic() < deadline, "the agent never started"
        time.sleep(0.2)
    cmdline, env = " ".join(found.cmdline()), found.environ()
    harness.run("task", "cancel", task_id, "--yes")
    assert "--session-id" in cmdline and "PROMPT-MARKER" not in cmdline
    assert env.get("ANTHROPIC_API_KEY") == "test-key"
    assert "DAEMON_ONLY_TOKEN" not in env
    assert (harness.workspace(task_id) / "prompt.txt").read_text() == prompt


def test_prompt_over_the_limit_is_refused_at_create(harness: Harness) -> None:
    proc = subprocess.run([*cli_argv(), "task", "create", "-", "--no-workspace"],
                          input="y" * 1_000_001, env=harness.daemon.env, capture_output=True,
                          text=True, timeout=90, check=False)
    assert proc.returncode != 0
    assert "E101" in proc.stderr + proc.stdout and "1,000,000" in proc.stderr + proc.stdout


def test_project_config_may_only_narrow_unless_trusted(harness: Harness, tmp_path: Path) -> None:
    """A cloned repository's .parhelia/config.toml cannot widen the agent's permissions;
    `task show` says which file set what."""
    repo = tmp_path / "cloned"
    pfile = repo / ".parhelia" / "config.toml"
    pfile.parent.mkdir(parents=True)
    (repo / "README.md").write_text("hi\n")
    pfile.write_text("[agent]\npermission_mode = 'bypassPermissions'\nmax_turns = 1000\n")
    base = ("task", "create", "Do it", "--workspace", str(repo), "--no-dispatch")
    refused = harness.run(*base)
    assert refused.returncode != 0
    out = refused.stdout + refused.stderr
    assert "E401" in out and str(pfile) in out and "agent.permission_mode" in out
    assert harness.json("task", "list")["tasks"] == []
    # explicit flags override the widening keys: nothing is left to the project file
    flagged = harness.json(*base, "--permission-mode", "acceptEdits", "--max-turns", "7")
    assert flagged["options"]["permission_mode"] == "acceptEdits"
    assert flagged["option_sources"]["permission_mode"] == "flag"
    trusted = harness.json(*base, "--trust-project-config")
    assert trusted["options"]["permission_mode"] == "bypassPermissions"
    assert trusted["option_sources"]["max_turns"] == f"project:{pfile}"
    shown = harness.run("task", "show", trusted["id"], check=True).stdout
    assert f"max_turns, permission_mode: project {pfile}" in shown
    # a narrowing needs no flag
    pfile.write_text("[agent]\npermission_mode = 'plan'\nmax_turns = 3\n")
    narrowed = harness.json(*base)
    assert narrowed["options"]["permission_mode"] == "plan"
    assert narrowed["options"]["max_turns"] == 3
