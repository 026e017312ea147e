"""Conventions every command follows, checked across all of them through the real CLI
against a real parheliad running the scripted fake Claude: one ``--json`` shape for
show/create/action commands, and one confirmation rule for destructive commands."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import time

import pytest

from tests.helpers.daemon import cli_argv
from tests.helpers.harness import Harness, fake_prompt

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def h(harness_factory) -> Harness:  # noqa: F811
    return harness_factory()


@pytest.mark.long
def test_every_show_and_create_prints_the_resource_itself(h: Harness) -> None:
    created = h.json("task", "create", fake_prompt({"write": "a.txt", "content": "a\n"},
                                                   {"turn": True}), "--no-workspace")
    task_id = created["id"]
    assert task_id.startswith("t-") and created["status"] in ("pending", "running")
    assert h.wait(task_id)["status"] == "completed"
    task = h.json("task", "show", task_id)
    sid, cid = task["session_id"], task["container_id"]
    checkpoints = h.json("checkpoint", "list", sid)["checkpoints"]
    made = h.json("checkpoint", "create", sid, "-m", "by hand")
    pending = h.json("task", "create", fake_prompt({"sleep": 60}), "--no-workspace")

    # Every show/create/action prints one object: the resource, its id at the top level;
    # related data rides along under its own key.
    shapes: list[tuple[tuple[str, ...], str, str]] = [
        (("task", "show", task_id[:8]), "t-", task_id),
        (("session", "show", sid), "s-", sid),
        (("checkpoint", "show", checkpoints[0]["id"]), "cp-", checkpoints[0]["id"]),
        (("container", "show", cid), "c-", cid),
        (("task", "cancel", pending["id"]), "t-", pending["id"]),
        (("task", "retry", pending["id"]), "t-", pending["id"]),
    ]
    for args, prefix, expected in shapes:
        data = h.json(*args)
        assert isinstance(data, dict) and data["id"] == expected, (args, data)
        assert data["id"].startswith(prefix)
        assert not ({"task", "session", "checkpoint", "container"} & set(data)), (args, data)
    assert made["id"].startswith("cp-") and made["message"] == "by hand"
    assert h.json("checkpoint", "show", checkpoints[0]["id"])["manifest"]["tree"]
    assert "recent_heartbeats" in h.json("container", "show", cid)
    h.run("task", "cancel", pending["id"])
    resumed = h.json("resume", sid)
    assert resumed["id"].startswith("t-") and resumed["session_id"] == sid
    h.wait(resumed["id"])

    # Lists: the plural of the kind, and the token of the next page (null: no more).
    # Following the tokens a page of 2 at a time gives the whole list, each item once.
    for args, key in ((("task", "list"), "tasks"), (("session", "list", "--all"), "sessions"),
                      (("checkpoint", "list"), "checkpoints"),
                      (("container", "list"), "containers"), (("events", "list"), "events"),
                      (("budget", "ledger"), "entries")):
        data = h.json(*args, "--limit", "10000")
        assert list(data) == [key, "next_page_token"] and isinstance(data[key], list), (
            args, list(data))
        assert data["next_page_token"] is None and len(data[key]) >= 2, (args, data)
        pages, token = [], ""
        while True:
            page = h.json(*args, "--limit", "2", *(("--page-token", token) if token else ()))
            assert len(page[key]) <= 2
            pages.append([item["id"] for item in page[key]])
            token = page["next_page_token"]
            if not token:
                break
        if key == "events":  # each page oldest first, pages going back in time
            pages.reverse()
        assert [i for p in pages for i in p] == [item["id"] for item in data[key]], args
    table = h.run("task", "list", "--limit", "1", check=True)
    assert "repeat with --page-token " in table.stderr

    deleted = h.json("task", "delete", pending["id"], "-y", "--force")
    assert deleted == {"id": pending["id"], "deleted": True}
    # Errors: {"error": {...}} on stderr.
    proc = h.run("session", "show", "s-nope", "--json")
    assert json.loads(proc.stderr)["error"]["code"] == "E200"


def test_json_convention_is_documented() -> None:
    from parhelia_cli.help_topics import render_topic

    text = render_topic("json", set())
    for part in ('{"tasks": [...], "next_page_token": ...}', '"id"', '{"error":',
                 "--page-token"):
        assert part in text, part


DESTRUCTIVE = {
    "task delete": ("task", "delete", "{task}"),
    "session kill": ("session", "kill", "{session}"),
    "checkpoint rollback": ("checkpoint", "rollback", "{checkpoint}"),
    "container terminate": ("container", "terminate", "{container}"),
    "checkpoint gc": ("checkpoint", "gc"),
    "cleanup --terminate": ("cleanup", "--terminate"),
    "auth clear": ("auth", "clear"),  # issue 27 item 12
}


def test_destructive_commands_refuse_without_yes_when_stdin_is_not_a_terminal(
        h: Harness) -> None:
    task_id = h.create(fake_prompt({"turn": True}))
    task = h.wait(task_id)
    ids = {"task": task_id, "session": task["session_id"],
           "container": task["container_id"],
           "checkpoint": h.json("checkpoint", "list", task["session_id"])
           ["checkpoints"][0]["id"]}
    events_before = len(h.events())
    for name, argv in DESTRUCTIVE.items():
        args = [a.format(**ids) for a in argv]
        proc = h.run(*args, "--help")
        assert "-y, --yes" in proc.stdout, name
        proc = h.run(*args)
        assert proc.returncode == 2, (name, proc.stderr)
        assert "E102" in proc.stderr and "stdin is not a terminal" in proc.stderr, name
        assert "pass -y" in proc.stderr, name
    # Nothing happened.
    assert h.json("task", "show", task_id)["status"] == "completed"
    assert len(h.events()) == events_before


def _interactive(h: Harness, answer: str, *args: str) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as stdin (a person at a terminal) and type
    ``answer`` when it asks."""
    main, child = pty.openpty()
    proc = subprocess.Popen([*cli_argv(), *args], env=h.daemon.env, stdin=child,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.close(child)
    time.sleep(0.5)
    os.write(main, answer.encode() + b"\n")
    out, err = proc.communicate(timeout=60)
    os.close(main)
    return proc.returncode, out + err


def test_task_delete_asks_at_a_terminal(h: Harness) -> None:
    task_id = h.create("keep me", "--no-dispatch")
    h.run("task", "cancel", task_id, check=True)
    code, text = _interactive(h, "n", "task", "delete", task_id)
    assert code == 1 and "cannot be undone" in text and "Nothing was done" in text
    assert h.json("task", "show", task_id)["id"] == task_id
    code, text = _interactive(h, "y", "task", "delete", task_id)
    assert code == 0 and f"Deleted task {task_id}" in text
    assert h.run("task", "show", task_id).returncode == 3
