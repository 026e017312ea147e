"""`task create --sync` and `task watch` as a user follows a task, through the real CLI
against a real parheliad running the scripted fake Claude: each line shows the task as
it was at its event, and re-attaching shows what happened before."""

from __future__ import annotations

import re

import pytest

from tests.helpers.harness import Harness, fake_prompt

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def h(harness_factory) -> Harness:  # noqa: F811
    return harness_factory()


def test_sync_lines_show_the_state_at_each_event(h: Harness) -> None:
    # Three quick turns: their records reach the daemon together, so the task row is
    # already at turn 3 when the first of them is announced.
    prompt = fake_prompt({"turn": True}, {"turn": True}, {"turn": True})
    proc = h.run("task", "create", prompt, "--no-workspace", "--sync")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    init = next(line for line in lines if "] agent_init:" in line)
    assert "| turn 0 |" in init, proc.stdout
    turns = [line for line in lines if "] agent_turn_completed:" in line]
    assert turns, proc.stdout
    for line in turns:
        said = re.search(r"agent_turn_completed: turn (\d+)", line)
        shown = re.search(r"\| turn (\d+) \|", line)
        assert said and shown and said.group(1) == shown.group(1), line
    assert "[running |" in init  # not its final state
    done = next(line for line in lines if "] task_completed:" in line)
    assert "[completed |" in done


def test_watch_shows_the_backlog_when_reattaching(h: Harness) -> None:
    task_id = h.create(fake_prompt({"turn": True}, {"sleep": 2}, {"turn": True}))
    h.wait(task_id, ("running",))
    proc = h.run("task", "watch", task_id)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"Events of task {task_id}, from its creation:" in out
    backlog = out[out.index("Events of task"):]
    for kind in ("task_created", "task_dispatched", "task_completed"):
        assert f"] {kind}:" in backlog, (kind, out)
    ids_in_order = [line for line in backlog.splitlines() if "] task_created:" in line]
    assert len(ids_in_order) == 1  # the backlog and the stream do not repeat an event


def test_item7_watch_replays_the_whole_history_in_order(h: Harness) -> None:
    """Issue 27, item 7: `task watch` of a task with far more than 20 events replays all
    of them, oldest first, and the state line follows them (it restarted at turn 0)."""
    steps = [step for i in range(12) for step in
             ({"write": f"f{i}.txt", "content": str(i)}, {"turn": True})]
    task_id = h.create(fake_prompt(*steps))
    task = h.wait(task_id)
    assert task["status"] == "completed", task
    everything = h.events("--task", task_id)
    assert len(everything) > 40
    out = h.run("task", "watch", task_id).stdout
    lines = [line for line in out.splitlines() if re.match(r"\[\d", line)]
    kinds = [re.search(r"\] (\w+):", line).group(1) for line in lines]  # type: ignore[union-attr]
    assert kinds == [e["type"] for e in everything], out
    turns = [int(m.group(1)) for line in lines if (m := re.search(r"\| turn (\d+) \|", line))]
    assert turns == sorted(turns) and turns[-1] == task["usage"]["turns"], out
    last_turn = next(line for line in reversed(lines) if "] agent_turn_completed:" in line)
    said = re.search(r"agent_turn_completed: turn (\d+)", last_turn)
    shown = re.search(r"\| turn (\d+) \|", last_turn)
    assert said and shown and said.group(1) == shown.group(1), last_turn
