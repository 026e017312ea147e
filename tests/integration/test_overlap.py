"""Overlap warnings: two live tasks of the same repository that changed the same paths
both show it (task show, task list) and each records an ``overlap_detected`` event;
tasks that changed different files do not. Paths are hostile (an escape sequence, a
very long name) and reach the terminal escaped and shortened."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers.gitrepo import init_repo
from tests.helpers.harness import Harness, fake_prompt, wait_for

HOSTILE = "src/\x1b]0;pwned\x07" + "/".join(["d" * 120] * 3) + "/x.txt"


def _create(harness: Harness, repo: Path, *files: str) -> str:
    steps: list[dict[str, Any]] = [{"write": f, "content": f"{f[-8:]} by a task\n"}
                                   for f in files]
    prompt = fake_prompt(*steps, {"turn": True}, {"sleep": 60})
    out = harness.json("task", "create", prompt, "--workspace", str(repo))
    return str(out["id"])


def _turn_checkpointed(harness: Harness, task_id: str) -> bool:
    return any(e["data"].get("trigger") == "turn" for e in
               harness.events("--task", task_id, "--type", "checkpoint_created"))


def test_same_paths_warn_both_tasks_and_different_paths_do_not(harness: Harness,
                                                                tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    init_repo(repo, {"README.md": "base\n"})
    a = _create(harness, repo, "shared.txt", HOSTILE, "a-only.txt")
    b = _create(harness, repo, "b-only.txt")
    wait_for(lambda: _turn_checkpointed(harness, a) and _turn_checkpointed(harness, b), 60,
             "turn checkpoints of a and b")
    c = _create(harness, repo, "shared.txt", HOSTILE)
    try:
        def overlap_events() -> dict[str, Any] | None:
            found = {e["task_id"]: e for e in harness.events("--type", "overlap_detected")}
            return found if {a, c} <= set(found) else None

        by_task = wait_for(overlap_events, 60, "an overlap_detected event for a and c")
        assert set(by_task) == {a, c}  # b changed other files: no event for it
        assert by_task[a]["data"]["other_task_id"] == c
        assert by_task[c]["data"]["other_task_id"] == a
        assert sorted(by_task[a]["data"]["paths"]) == sorted(["shared.txt", HOSTILE])
        assert by_task[a]["data"]["path_count"] == 2
        assert by_task[a]["level"] == "warning"

        shown_a = harness.task(a)
        assert [o["task_id"] for o in shown_a["overlaps"]] == [c]
        assert sorted(shown_a["overlaps"][0]["paths"]) == sorted(["shared.txt", HOSTILE])
        assert [o["task_id"] for o in harness.task(c)["overlaps"]] == [a]
        assert harness.task(b)["overlaps"] == []

        show = harness.run("task", "show", a, check=True).stdout
        assert f"task {c} also changed 2 of the same path(s)" in show
        assert "shared.txt" in show
        assert "\x1b" not in show and "\x07" not in show  # escaped, not sent to the terminal
        assert "\\x1b]0;pwned\\x07" in show
        overlap_line = next(line for line in show.splitlines() if "Overlap:" in line)
        assert len(overlap_line) < len(HOSTILE)  # long paths shortened

        listing = harness.run("task", "list", check=True).stdout
        assert f"! {a}: task {c} also changed 2" in listing
        assert f"! {c}: task {a} also changed 2" in listing
        assert f"! {b}" not in listing
        assert "\x1b" not in listing and "\x07" not in listing

        # Once a task has ended, the overlap is gone from the other (still running).
        harness.run("task", "cancel", a, check=True)
        harness.wait(a, ("cancelled",))
        wait_for(lambda: harness.task(c)["overlaps"] == [], 60, "the overlap to clear")
        assert harness.task(c)["status"] == "running"
    finally:
        for task_id in (a, b, c):
            harness.run("task", "cancel", task_id)
