"""Nothing a task did is lost when its worker (or the daemon) dies."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.helpers.harness import Harness, fake_prompt, readable_by_agents
from tests.helpers.waiting import wait_for


def worker_pid(harness: Harness, task_id: str) -> int:
    container = harness.task(task_id)["container_id"]
    data = harness.json("task", "show", task_id)
    assert data
    rows = sqlite3.connect(harness.home / "state" / "parheliad.db").execute(
        "SELECT backend_id FROM containers WHERE id = ?", (container,)).fetchall()
    return int(rows[0][0].split("@")[0])


def turn_checkpoints(harness: Harness, task_id: str) -> list[dict]:
    return [e for e in harness.events("--task", task_id, "--type", "checkpoint_created")
            if (e["data"] or {}).get("trigger") == "turn"]


@pytest.mark.long
def test_sigkill_of_worker_resumes_with_the_conversation(harness_factory) -> None:
    harness = harness_factory()
    prompt = fake_prompt({"write": "before.txt", "content": "written before the kill\n"},
                         {"turn": True}, {"sleep": 30},
                         {"write": "after.txt", "content": "written after the resume\n"},
                         {"turn": True})
    task_id = harness.create(prompt)
    wait_for(lambda: turn_checkpoints(harness, task_id), what="a turn checkpoint")
    first_session = harness.task(task_id)["session_id"]
    os.kill(worker_pid(harness, task_id), signal.SIGKILL)

    task = harness.wait(task_id, timeout=90)
    assert task["status"] == "completed", task
    assert task["restarts"] == 1
    assert task["session_id"] == first_session  # same session, same conversation
    ws = harness.workspace(task_id)
    assert (ws / "before.txt").read_text() == "written before the kill\n"
    assert (ws / "after.txt").read_text() == "written after the resume\n"
    earlier = int((ws / ".fake_agent_resumed").read_text())
    assert earlier >= 2  # the resumed agent was given the earlier conversation
    types = [e["type"] for e in harness.events("--task", task_id)]
    assert "task_recovering" in types
    assert types.count("container_started") == 2
    assert "Resumed with" in task["result"]["text"]


def test_sigkill_of_daemon_mid_task_applies_every_event_once(harness_factory,
                                                            tmp_path: Path) -> None:
    harness = harness_factory(readable_by_agents(tmp_path))
    gate = tmp_path / "gate"  # the agent's second turn waits for it: no race with the restart
    prompt = fake_prompt({"write": "a.txt", "content": "1"}, {"turn": True},
                         {"wait_file": str(gate)},
                         {"write": "b.txt", "content": "2"}, {"turn": True})
    task_id = harness.create(prompt)
    wait_for(lambda: turn_checkpoints(harness, task_id), what="a turn checkpoint")
    pid = worker_pid(harness, task_id)
    harness.daemon.kill()
    time.sleep(1.0)
    os.kill(pid, 0)  # the worker kept going without the daemon
    harness.daemon.start()
    wait_for(lambda: any(e["type"] == "container_adopted"
                         for e in harness.events("--task", task_id)), what="the adoption")
    gate.touch()
    task = harness.wait(task_id, timeout=60)
    assert task["status"] == "completed"
    assert task["restarts"] == 0  # re-adopted, not restarted
    container = task["container_id"]
    events = harness.events("--container", container)
    assert any(e["type"] == "container_adopted" for e in events)
    db = sqlite3.connect(harness.home / "state" / "parheliad.db")
    seqs = [row[0] for row in db.execute(
        "SELECT container_seq FROM events WHERE container_id = ? AND container_seq > 0",
        (container,))]
    beats = db.execute("SELECT COUNT(*) FROM heartbeats WHERE container_id = ?",
                       (container,)).fetchone()[0]
    spool = (harness.home / "data" / "volume" / "spool" / f"{container}.jsonl").read_text()
    records = [json.loads(line) for line in spool.splitlines()]
    assert len(seqs) == len(set(seqs))  # nothing applied twice
    assert len(seqs) + beats == len(records)  # nothing lost
    assert sorted(seqs + [r["seq"] for r in records if r["type"] == "heartbeat"]) == \
        list(range(1, len(records) + 1))


def test_rollback_restores_an_older_tree_exactly(harness_factory) -> None:
    harness = harness_factory()
    prompt = fake_prompt({"write": "one.txt", "content": "one"}, {"turn": True}, {"sleep": 1.5},
                         {"write": "two.txt", "content": "two"},
                         {"write": "one.txt", "content": "one, edited"}, {"turn": True})
    task_id = harness.create(prompt)
    assert harness.wait(task_id)["status"] == "completed"
    session = harness.task(task_id)["session_id"]
    first_turn = turn_checkpoints(harness, task_id)[0]
    cp_id = first_turn["data"]["checkpoint_id"]
    out = harness.json("checkpoint", "rollback", cp_id, "-y")
    assert out["restored"]["id"] == cp_id
    assert out["safety_checkpoint"]["id"]  # taken first
    ws = harness.workspace(task_id)
    files = sorted(p.relative_to(ws).as_posix() for p in ws.rglob("*") if p.is_file())
    assert files == ["one.txt"]
    assert (ws / "one.txt").read_text() == "one"
    listed = harness.json("checkpoint", "list", session)["checkpoints"]
    assert out["safety_checkpoint"]["id"] in [c["id"] for c in listed]
    assert harness.json("checkpoint", "verify", cp_id)["ok"] is True


def test_rollback_of_a_running_session_to_its_start(harness_factory) -> None:
    """The start checkpoint holds no conversation: the session runs afresh from it (a stale
    transcript on disk must not make the agent refuse its own session id)."""
    harness = harness_factory()
    prompt = fake_prompt({"write": "a.txt", "content": "a"}, {"turn": True}, {"sleep": 5},
                         {"write": "b.txt", "content": "b"}, {"turn": True})
    task_id = harness.create(prompt)
    wait_for(lambda: turn_checkpoints(harness, task_id), what="a turn checkpoint")
    start = next(e["data"]["checkpoint_id"]
                 for e in harness.events("--task", task_id, "--type", "checkpoint_created")
                 if e["data"]["trigger"] == "start")
    out = harness.json("checkpoint", "rollback", start, "-y")
    assert out["resumed"] is True
    task = harness.wait(task_id, timeout=60)
    assert task["status"] == "completed", task
    ws = harness.workspace(task_id)
    assert (ws / "a.txt").read_text() == "a" and (ws / "b.txt").read_text() == "b"
    assert not (ws / ".fake_agent_resumed").exists()  # a fresh run, not a --resume


@pytest.mark.long
def test_sigterm_of_worker_not_asked_by_the_daemon_resumes(harness_factory) -> None:
    """Someone other than the daemon SIGTERMs the worker (a logout, a user's `kill`, a
    sandbox preempted): it checkpoints and reports ``worker_exited`` (stopped) itself; the
    daemon did not ask, so the task resumes instead of staying running forever."""
    harness = harness_factory()
    prompt = fake_prompt({"write": "before.txt", "content": "before\n"}, {"turn": True},
                         {"sleep": 30}, {"write": "after.txt", "content": "after\n"},
                         {"turn": True})
    task_id = harness.create(prompt)
    wait_for(lambda: turn_checkpoints(harness, task_id), what="a turn checkpoint")
    os.kill(worker_pid(harness, task_id), signal.SIGTERM)

    task = harness.wait(task_id, timeout=60)
    assert task["status"] == "completed", task
    assert task["restarts"] == 1
    ws = harness.workspace(task_id)
    assert (ws / "after.txt").read_text() == "after\n"


def test_a_resume_the_agent_refuses_starts_over_and_task_show_says_so(harness_factory,
                                                                     tmp_path: Path) -> None:
    from parhelia.checkpoint import project_dir

    harness = harness_factory(readable_by_agents(tmp_path))
    gate = tmp_path / "gate"  # opened after the kill: the first run never gets past it
    prompt = fake_prompt({"write": "a.txt", "content": "A\n"}, {"turn": True},
                         {"wait_file": str(gate)},
                         {"write": "b.txt", "content": "B\n"}, {"turn": True})
    task_id = harness.create(prompt)
    wait_for(lambda: turn_checkpoints(harness, task_id), what="a turn checkpoint")
    pid = worker_pid(harness, task_id)
    task = harness.task(task_id)
    ws = harness.workspace(task_id)
    config = harness.home / "data" / "claude" / task["session_id"]
    transcripts = list(project_dir(config, ws).glob("*.jsonl"))
    assert len(transcripts) == 1, sorted(str(p) for p in harness.home.rglob('*.jsonl'))
    # Damage it the way the agent cannot chain (valid JSON, no message ids).
    lines = [json.loads(line) for line in transcripts[0].read_text().splitlines()]
    transcripts[0].write_text("".join(json.dumps({k: v for k, v in e.items() if k != "uuid"})
                                      + "\n" for e in lines))
    os.kill(pid, signal.SIGKILL)
    # Opened once the task is relaunched: the killed worker's agent dies a moment after
    # it, and one that got past the gate meanwhile (under load) went on writing turns the
    # resumed agent could chain.
    wait_for(lambda: harness.task(task_id)["restarts"] >= 1, timeout=60, interval=0.3,
             what="the task relaunched")
    gate.touch()

    task = harness.wait(task_id, timeout=90)
    assert task["status"] == "completed", task
    assert task["restarts"] == 1
    assert (ws / "b.txt").read_text() == "B\n"
    shown = harness.json("task", "show", task_id)
    degraded = shown["resume_degraded"]
    assert len(degraded) == 1, degraded
    assert "No conversation found" in degraded[0]["data"]["reason"]
    text = harness.run("task", "show", task_id, check=True).stdout
    assert "a new conversation from a summary of the stored one" in text


@pytest.mark.long
def test_item7_turn_numbers_continue_across_incarnations(harness_factory) -> None:
    """Issue 27, item 7: after a recovery the events say turn 3, 4..., not turn 1 again,
    and agree with the task's own count."""
    harness = harness_factory()
    prompt = fake_prompt({"write": "a.txt", "content": "a"}, {"turn": True},
                         {"write": "b.txt", "content": "b"}, {"turn": True}, {"sleep": 30},
                         {"write": "c.txt", "content": "c"}, {"turn": True})
    task_id = harness.create(prompt)
    wait_for(lambda: len(harness.events("--task", task_id, "--type",
                                        "agent_turn_completed")) >= 2, what="two turns")
    wait_for(lambda: turn_checkpoints(harness, task_id), what="a turn checkpoint")
    os.kill(worker_pid(harness, task_id), signal.SIGKILL)
    task = harness.wait(task_id, timeout=90)
    assert task["status"] == "completed" and task["restarts"] == 1, task
    turns = [e for e in harness.events("--task", task_id, "--type", "agent_turn_completed")]
    said = [int(e["message"].split()[-1]) for e in turns]
    assert said == sorted(said) and said[-1] >= 3, said  # no "turn 1" after the recovery
    assert said[-1] == turns[-1]["data"]["task_turns"] <= task["usage"]["turns"]
    incarnations = {e["container_id"] for e in turns}
    assert len(incarnations) == 2
    assert turns[-1]["data"]["turns"] < turns[-1]["data"]["task_turns"]
