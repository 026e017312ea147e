"""The queue as a user meets it: retries of workspace tasks, held tasks, tasks that
cannot start saying why, and one task that can never fit not blocking the others.
The real daemon, the real CLI as a subprocess, real workers and the fake agent."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.gitrepo import init_repo
from tests.integration.conftest import Harness, fake_prompt


def _workspace_task(harness: Harness, repo: Path, *steps: dict[str, object]) -> str:
    init_repo(repo, {"app.py": "print('v1')\n"})
    proc = harness.run("task", "create", fake_prompt(*steps), "--json", cwd=repo, check=True)
    return str(json.loads(proc.stdout)["id"])


def test_retry_of_a_workspace_task_runs_and_completes(harness: Harness, tmp_path: Path) -> None:
    task_id = _workspace_task(harness, tmp_path / "repo",
                              {"write": "app.py", "content": "print('v2')\n"}, {"turn": True})
    first = harness.wait(task_id)
    assert first["status"] == "completed"
    harness.run("task", "retry", task_id, check=True)
    second = harness.wait(task_id, timeout=60)
    assert second["status"] == "completed", second
    assert second["session_id"] != first["session_id"]
    ws = harness.home / "data" / "workspaces" / second["session_id"]
    assert (ws / "app.py").read_text() == "print('v2')\n"
    # the retry started from the upload, and its diff is against the upload
    assert "+print('v2')" in harness.run("task", "diff", task_id, check=True).stdout


def test_session_recover_restart_of_a_workspace_task_runs(harness: Harness,
                                                          tmp_path: Path) -> None:
    task_id = _workspace_task(harness, tmp_path / "repo", {"fail": "first try fails"})
    first = harness.wait(task_id)
    assert first["status"] == "failed"
    harness.run("session", "recover", first["session_id"], "--action", "restart", check=True)
    second = harness.wait(task_id, timeout=60)
    assert second["session_id"] != first["session_id"]
    assert second["status"] == "failed"  # the fake fails again: it ran
    assert second["result"]["error_code"] == "E604"


def test_retry_takes_per_task_overrides(harness: Harness) -> None:
    task_id = harness.create(fake_prompt({"forever": True}), "--max-turns", "2")
    assert harness.wait(task_id)["status"] == "failed"
    out = harness.run("task", "retry", task_id, "--max-turns", "3", "--max-cost", "1.5",
                      "--timeout", "90", "--json", check=True)
    options = json.loads(out.stdout)["options"]
    assert (options["max_turns"], options["max_cost_micros"], options["timeout_seconds"]) == \
        (3, 1_500_000, 90)
    bad = harness.run("task", "retry", task_id, "--max-turns", "5000")
    assert bad.returncode == 2 and "E101" in bad.stderr


def test_no_dispatch_holds_until_task_dispatch(harness: Harness) -> None:
    task_id = harness.create(fake_prompt({"turn": True}), "--no-dispatch")
    time.sleep(2.0)  # four periodic dispatch passes (0.5 s)
    held = harness.task(task_id)
    assert held["status"] == "pending"
    assert "--no-dispatch" in held["status_reason"]
    assert not [e for e in harness.events("--task", task_id) if e["type"] == "task_dispatched"]
    out = harness.run("task", "dispatch", check=True).stdout  # no id: every held task
    assert task_id in out
    assert harness.wait(task_id)["status"] == "completed"


def test_task_dispatch_of_one_id_releases_only_that_one(harness: Harness) -> None:
    a = harness.create(fake_prompt({"turn": True}), "--no-dispatch")
    b = harness.create(fake_prompt({"turn": True}), "--no-dispatch")
    harness.run("task", "dispatch", b, check=True)
    assert harness.wait(b)["status"] == "completed"
    assert harness.task(a)["status"] == "pending"
    unknown = harness.run("task", "dispatch", "t-doesnotexist")
    assert unknown.returncode == 3 and "E201" in unknown.stderr


def _wait_reason(harness: Harness, task_id: str, code: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        task = harness.task(task_id)
        if task["status_code"] == code:
            return task
        assert time.monotonic() < deadline, task
        time.sleep(0.2)


def test_a_task_that_can_never_fit_says_why_and_does_not_block_the_queue(
        harness: Harness) -> None:
    harness.run("budget", "set", "1", check=True)
    # 1000 turns at the estimate's high end is far above $1: it can never fit
    big = harness.create(fake_prompt({"turn": True}), "--max-turns", "1000")
    small = [harness.create(fake_prompt({"turn": True}), "--max-cost", "0.10")
             for _ in range(3)]
    for task_id in small:
        assert harness.wait(task_id)["status"] == "completed"
    task = _wait_reason(harness, big, "E300")
    assert task["status"] == "pending" and task["needs_user"] is True
    assert "cannot fit the budget" in task["status_reason"]
    assert "budget set" in task["status_reason"]
    # one event for the wait, not one per dispatch pass
    refused = [e for e in harness.events("--task", big) if e["type"] == "task_dispatch_refused"]
    assert len(refused) == 1, refused

    show = harness.run("task", "show", big, check=True).stdout
    assert "E300" in show and "cannot fit the budget" in show
    listing = harness.run("task", "list", check=True).stdout
    assert f"* {big}: E300" in listing
    status = harness.run("status")
    assert status.returncode == 1, status.stdout
    assert big in status.stdout and "cannot fit" in status.stdout

    # a --sync caller of such a task sees the reason and does not hang
    sync = harness.run("task", "create", fake_prompt({"turn": True}), "--no-workspace",
                       "--max-turns", "1000", "--sync", timeout=60)
    assert sync.returncode == 4, sync.stdout + sync.stderr
    assert "E300" in sync.stderr and "cannot fit the budget" in sync.stderr

    # raising the ceiling ends the wait without the user touching the task
    harness.run("budget", "set", "500", check=True)
    assert harness.wait(big)["status"] == "completed"


def test_a_held_task_shows_its_reason_in_list_and_json(harness: Harness) -> None:
    task_id = harness.create(fake_prompt({"turn": True}), "--no-dispatch")
    task = harness.task(task_id)
    assert (task["held"], task["needs_user"], task["status_code"]) == (True, True, None)
    assert f"parhelia task dispatch {task_id}" in task["status_reason"]
    assert f"* {task_id}: held" in harness.run("task", "list", check=True).stdout
