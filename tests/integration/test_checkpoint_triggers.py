"""Checkpoints are taken when the issue says: at start, after turns, before risky
commands (a PreToolUse hook), on demand, and at completion."""

from __future__ import annotations

from tests.helpers.harness import Harness, fake_prompt


def checkpoints(harness: Harness, task_id: str) -> list[dict]:
    return [e["data"] for e in harness.events("--task", task_id, "--type", "checkpoint_created")]


def test_risky_bash_is_checkpointed_before_it_runs(harness: Harness) -> None:
    prompt = fake_prompt({"write": "keep.txt", "content": "precious"},
                         {"bash": "rm  -rf ./build"}, {"turn": True},
                         {"bash": "ls -la"}, {"turn": True})
    task_id = harness.create(prompt)
    assert harness.wait(task_id)["status"] == "completed"
    cps = checkpoints(harness, task_id)
    triggers = [c["trigger"] for c in cps]
    assert triggers[0] == "start" and triggers[-1] == "completion"
    pre = [c for c in cps if c["trigger"] == "pre_tool"]
    assert len(pre) == 1  # `ls -la` is not risky
    assert "rm -rf ./build" in pre[0]["message"]
    events = harness.events("--task", task_id)
    order = [e["type"] for e in events]
    first_pre = next(i for i, e in enumerate(events)
                     if e["type"] == "checkpoint_created" and e["data"]["trigger"] == "pre_tool")
    assert first_pre < order.index("agent_turn_completed")  # before the command's turn ended


def test_manual_checkpoint_of_a_running_session(harness: Harness) -> None:
    prompt = fake_prompt({"write": "a.txt", "content": "a"}, {"turn": True}, {"sleep": 20})
    task_id = harness.create(prompt)
    harness.wait(task_id, ("running",))
    session = harness.task(task_id)["session_id"]
    import time

    deadline = time.monotonic() + 20
    while "agent_turn_completed" not in [e["type"] for e in harness.events("--task", task_id)]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    out = harness.json("checkpoint", "create", session, "-m", "before lunch")
    cp = out.get("checkpoint", out)
    assert cp["trigger"] == "manual" and cp["message"] == "before lunch"
    assert cp["manual"] is True
    shown = harness.json("checkpoint", "show", cp["id"])
    manifest = shown.get("manifest") or {}
    assert any(entry["path"] == "a.txt" for entry in manifest.get("tree", []))
    harness.run("task", "cancel", task_id, check=True)
