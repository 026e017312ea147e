"""`checkpoint`, `session` and `resume` through the real CLI against a real parheliad
running the scripted fake Claude on the local backend."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers.harness import Harness, fake_prompt, readable_by_agents
from tests.helpers.waiting import wait_for


@pytest.fixture
def h(harness_factory) -> Harness:  # noqa: F811
    return harness_factory()




def ok(h: Harness, *args: str) -> str:
    proc = h.run(*args, check=True)
    return proc.stdout


def test_inspect_and_resume_a_finished_session(harness_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    h: Harness = harness_factory(readable_by_agents(tmp_path))
    gate = tmp_path / "gate"
    task_id = h.create(fake_prompt({"write": "one.txt", "content": "one\n"}, {"turn": True},
                                   {"wait_file": str(gate)},
                                   {"write": "two.txt", "content": "two\n"},
                                   {"write": "one.txt", "content": "one, edited\n"},
                                   {"turn": True}))
    # The first turn is checkpointed while the agent waits: a turn that ends as the agent
    # finishes is covered by the completion checkpoint instead (the worker takes one).
    wait_for(lambda: any((e["data"] or {}).get("trigger") == "turn" for e in
                         h.events("--task", task_id, "--type", "checkpoint_created")),
             timeout=60, what="the first turn's checkpoint")
    gate.touch()
    assert h.wait(task_id)["status"] == "completed"
    sid = h.task(task_id)["session_id"]

    # sessions: listed like tasks (all of them); --active leaves the completed out
    assert sid in ok(h, "session", "list") and sid not in ok(h, "session", "list", "--active")
    listed = h.json("session", "list")["sessions"]
    mine = next(s for s in listed if s["id"] == sid)
    assert (mine["task_id"], mine["status"]) == (task_id, "completed")
    shown = ok(h, "session", "show", sid[:8])
    assert f"Session {sid}" in shown and f"Latest checkpoint: {mine['latest_checkpoint_id']}" \
        in shown

    # checkpoints: newest first, from start to completion
    cps = h.json("checkpoint", "list", sid)["checkpoints"]
    triggers = [c["trigger"] for c in cps]
    assert triggers[0] == "completion" and triggers[-1] == "start" and "turn" in triggers
    start, last = cps[-1]["id"], cps[0]["id"]

    # a stopped session is checkpointed from its last state on disk
    made = h.run("checkpoint", "create", sid, "-m", "by hand", check=True)
    cp_id = made.stdout.strip()
    assert "(trigger manual): 2 file(s)" in made.stderr
    again = h.json("checkpoint", "list", sid, "--limit", "1")["checkpoints"][0]
    assert (again["id"], again["manual"], again["message"]) == (cp_id, True, "by hand")
    assert "manual *" in ok(h, "checkpoint", "list", sid)

    # show: environment and stats for people, the manifest as an object for machines
    text = ok(h, "checkpoint", "show", last)
    for part in ("Trigger:      completion", "Agent:         2.1.332-fake",
                 "Model:         claude-fake-1", "Conversation: 1 file(s)", "Git",
                 "not a git repository"):
        assert part in text, part
    data = h.json("checkpoint", "show", last)
    assert data["id"] == last
    tree = {e["path"]: e for e in data["manifest"]["tree"]}
    assert set(tree) == {"one.txt", "two.txt"}
    assert json.loads(ok(h, "checkpoint", "show", last, "--manifest"))["id"] == last

    # diff: table, patch, conversation
    out = ok(h, "checkpoint", "diff", start, last, "--files", "--conversation")
    assert "added\tone.txt\t" in out and "2 added, 0 removed, 0 modified" in out
    assert "+one, edited" in out and "+two" in out
    assert "[assistant] Done." in out and "[user] Do the thing." in out
    diff = h.json("checkpoint", "diff", start, last)
    assert sorted((f["path"], f["change"], f["new_size"]) for f in diff["files"]) == [
        ("one.txt", "added", 12), ("two.txt", "added", 4)]
    assert diff["patch"] is None and diff["turns_added"] == []

    # verify, gc
    assert ok(h, "checkpoint", "verify", last).startswith(f"OK: {last}: ")
    gc = h.json("checkpoint", "gc", "--dry-run")
    assert gc["dry_run"] is True and gc["removed_checkpoint_ids"] == []  # all recent
    assert cp_id in [c["id"] for c in h.json("checkpoint", "list", sid)["checkpoints"]]

    # the guided view of a finished session, then resume it and follow to the end
    guide = h.run("session", "recover", sid)
    assert guide.returncode == 0
    assert "What happened" in guide.stdout and f"task {task_id} is completed" in guide.stdout
    latest = guide.stdout.split("Latest checkpoints (newest first)\n", 1)[1]
    first_row = next(line for line in latest.splitlines() if "cp-" in line)
    assert first_row.split()[:2] == [cp_id, "manual"]
    assert f"parhelia session recover {sid} --action resume" in guide.stdout
    assert f"parhelia session recover {sid} --action restart" in guide.stdout
    done = h.run("resume", sid, "--sync", timeout=90)
    assert done.returncode == 0, done.stderr
    assert "Resumed with" in done.stdout and "Status:   completed" in done.stdout
    assert h.task(task_id)["session_id"] == sid  # the same session, the same conversation
    waited = ok(h, "session", "recover", sid, "--action", "wait")
    assert waited == f"Nothing changed: session {sid} is completed, task {task_id} is " \
                     "completed.\n"

    # a corrupted blob fails verification with E600 and names it
    blob = tree["two.txt"]["blob"]
    path = h.home / "data" / "volume" / "cas" / "blobs" / blob[:2] / blob
    os.chmod(path, 0o600)
    path.write_bytes(b"tampered\n")
    bad = h.run("checkpoint", "verify", last)
    assert bad.returncode == 1
    assert "FAILED" in bad.stdout and blob in bad.stdout
    assert "Error E600 CHECKPOINT_FAILED" in bad.stderr


def test_a_running_session_checkpoint_rollback_kill_recover(h: Harness) -> None:
    task_id = h.create(fake_prompt({"write": "one.txt", "content": "one\n"}, {"turn": True},
                                   {"sleep": 30}, {"write": "two.txt", "content": "two\n"},
                                   {"turn": True}))
    turn = wait_for(lambda: next(
        (e for e in h.events("--task", task_id, "--type", "checkpoint_created")
         if (e["data"] or {}).get("trigger") == "turn"), None), what="a turn checkpoint")
    turn_cp = turn["data"]["checkpoint_id"]
    task = h.task(task_id)
    sid, container = task["session_id"], task["container_id"]
    active = h.json("session", "list")["sessions"]
    assert [(s["id"], s["status"], s["current_container_id"]) for s in active] == [
        (sid, "headless", container)]

    # the running worker takes a manual checkpoint through the control path
    cp = h.json("checkpoint", "create", sid, "-m", "while running")
    assert (cp["trigger"], cp["manual"], cp["container_id"]) == ("manual", True, container)

    # destructive commands refuse a non-terminal stdin without -y, and change nothing
    for args in (("checkpoint", "rollback", turn_cp), ("session", "kill", sid)):
        refused = h.run(*args)
        assert refused.returncode == 2 and "pass -y" in refused.stderr, refused.stderr
    assert h.task(task_id)["status"] == "running"
    assert not h.events("--session", sid, "--type", "checkpoint_rolled_back")

    # rollback of a running session: safety checkpoint, restore, resume
    rolled = h.json("checkpoint", "rollback", turn_cp, "-y")
    assert rolled["restored"]["id"] == turn_cp and rolled["resumed"] is True
    assert rolled["safety_checkpoint"]["id"] not in (None, turn_cp)
    wait_for(lambda: h.task(task_id)["status"] == "running"
             and h.task(task_id)["container_id"] != container, what="the resumed worker")

    # kill: the task is cancelled, the session stopped
    killed = ok(h, "session", "kill", sid, "-y")
    assert killed.startswith(f"Stopped session {sid} (now stopped).")
    assert h.task(task_id)["status"] == "cancelled"
    assert not h.json("session", "show", sid)["current_container_id"]

    # guided recovery off a terminal prints the guide and exits 0; --action acts
    guide = h.run("session", "recover", sid)
    assert guide.returncode == 0
    assert "Choices" in guide.stdout and "resume " in guide.stdout
    assert "Done since" in guide.stdout
    view = h.json("session", "recover", sid)
    assert view["choices"] == ["resume", "restart", "wait"]
    assert view["recent_checkpoints"][0]["id"] == h.json(
        "session", "show", sid)["latest_checkpoint_id"]
    acted = h.run("session", "recover", sid, "--action", "resume", "--checkpoint", turn_cp)
    assert acted.returncode == 0, acted.stderr
    assert acted.stdout.strip() == task_id
    assert f"Resumed task {task_id} from {turn_cp}" in acted.stderr
    assert h.task(task_id)["status"] in ("pending", "running")
    ok(h, "session", "kill", sid, "-y")

    # bad ids: not found, exit 3
    for args, code in ((("resume", "s-nope"), "E200"), (("checkpoint", "show", "cp-nope"),
                                                         "E202"),
                       (("session", "show", "s-nope"), "E200")):
        proc = h.run(*args)
        assert proc.returncode == 3 and code in proc.stderr, (args, proc.stderr)
