"""The queue as a user meets it: retries of workspace tasks, held tasks, tasks that
cannot start saying why, and one task that can never fit not blocking the others.
The real daemon, the real CLI as a subprocess, real workers and the fake agent."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.helpers.gitrepo import init_repo
from tests.helpers.harness import Harness, fake_prompt


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


def _wait_reason(harness: Harness, task_id: str, code: str,
                 timeout: float = 30) -> dict[str, Any]:
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


def _wait_event(harness: Harness, task_id: str, kind: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not any(e["type"] == kind for e in harness.events("--task", task_id)):
        assert time.monotonic() < deadline, f"no {kind} for {task_id}"
        time.sleep(0.1)


def test_a_lost_completion_checkpoint_is_not_reported_as_success(harness: Harness) -> None:
    task_id = harness.create(fake_prompt({"sleep": 3}, {"write": "result.txt",
                                                        "content": "the work\n"},
                                         {"turn": True}))
    _wait_event(harness, task_id, "agent_init")  # after the start checkpoint
    session = harness.task(task_id)["session_id"]
    manifests = harness.daemon.paths.volume_dir / "checkpoints" / session
    aside = manifests.with_name(session + ".aside")
    manifests.rename(aside)
    manifests.write_text("the volume cannot take a manifest here\n")  # every put fails
    try:
        task = harness.wait(task_id, timeout=90)
    finally:
        manifests.unlink()
        aside.rename(manifests)
    assert task["status"] == "completed"
    assert (task["status_code"], task["needs_user"]) == ("E600", True)
    assert "could not be saved" in task["status_reason"]
    assert f"checkpoint create {session}" in task["status_reason"]
    events = harness.events("--task", task_id)
    failed = [e for e in events if e["type"] == "checkpoint_failed"
              and '"completion"' in json.dumps(e.get("data"))]
    assert len(failed) >= 2, "the worker did not retry the completion checkpoint"
    assert "task_result_unsaved" in [e["type"] for e in events]

    diff = harness.run("task", "diff", task_id)
    assert diff.returncode != 0 and "E600" in diff.stderr and "No changes" not in diff.stdout
    status = harness.run("status")
    assert status.returncode == 1 and task_id in status.stdout
    assert f"* {task_id}: E600" in harness.run("task", "list", check=True).stdout

    # the work is still in the workspace: saving it from there makes it the result
    harness.run("checkpoint", "create", session, check=True)
    saved = harness.task(task_id)
    assert saved["status"] == "completed" and not saved["needs_user"]
    assert "+the work" in harness.run("task", "diff", task_id, check=True).stdout
    assert harness.run("status").returncode == 0


def test_a_failed_resume_shows_only_its_own_result(
        harness_factory: Callable[..., Harness]) -> None:
    first = harness_factory()
    task_id = first.create(fake_prompt({"turn": True}))
    done = first.wait(task_id)
    assert done["result"]["subtype"] == "success" and done["result"]["text"]
    first.daemon.stop()
    second = harness_factory(ANTHROPIC_API_KEY="")  # the resume cannot start its agent
    second.run("resume", done["session_id"], check=True)
    failed = second.wait(task_id)
    assert failed["status"] == "failed"
    result = failed["result"]
    assert result["error_code"] == "E400"
    assert not result.get("subtype") and not result.get("text"), result
    show = second.run("task", "show", task_id, check=True).stdout
    assert "success" not in show and "Done." not in show


def test_a_retry_waiting_for_budget_leaves_no_stray_manifests(harness: Harness,
                                                              tmp_path: Path) -> None:
    task_id = _workspace_task(harness, tmp_path / "repo", {"turn": True})
    first = harness.wait(task_id)
    harness.run("budget", "set", "0.01", check=True)
    harness.run("task", "retry", task_id, check=True)
    _wait_reason(harness, task_id, "E300")
    time.sleep(2.0)  # four more refused passes
    checkpoints = harness.daemon.paths.volume_dir / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == [first["session_id"]]
    harness.run("budget", "set", "100", check=True)
    second = harness.wait(task_id)
    assert second["status"] == "completed" and second["session_id"] != first["session_id"]


def test_a_task_that_fits_once_reservations_free_keeps_its_place(harness: Harness) -> None:
    harness.run("budget", "set", "1", check=True)
    running = harness.create(fake_prompt({"sleep": 60}, {"turn": True}), "--max-cost", "0.60")
    harness.wait(running, ("running",))
    waits = harness.create(fake_prompt({"turn": True}), "--max-cost", "0.60")
    small = harness.create(fake_prompt({"turn": True}), "--max-cost", "0.10")
    head = _wait_reason(harness, waits, "E300")
    assert not head["needs_user"] and "running tasks release" in head["status_reason"]
    deadline = time.monotonic() + 30
    while f"queued behind task {waits}" not in (harness.task(small)["status_reason"] or ""):
        assert time.monotonic() < deadline, harness.task(small)
        time.sleep(0.2)
    assert harness.task(small)["status"] == "pending"  # it would fit, but waits its turn
    harness.run("task", "cancel", running, check=True)
    assert harness.wait(waits)["status"] == "completed"
    assert harness.wait(small)["status"] == "completed"
    order = [e["task_id"] for e in harness.events("--type", "task_dispatched")]
    assert order.index(waits) < order.index(small)


def test_task_create_says_at_once_when_the_budget_cannot_take_the_task(
        harness: Harness) -> None:
    harness.run("budget", "set", "0.01", check=True)
    proc = harness.run("task", "create", fake_prompt({"turn": True}), "--no-workspace")
    assert proc.returncode == 0, proc.stderr  # created: it stays queued
    task_id = proc.stdout.strip()
    assert task_id.startswith("t-")
    assert "cannot start now: E300" in proc.stderr and "cannot fit the budget" in proc.stderr
    assert harness.task(task_id)["status_code"] == "E300"
    assert harness.run("status").returncode == 1
