"""`[notify] command`: run when a task ends, the finished task as JSON on stdin, with a
minimal environment (no credential); `--no-notify` silences one task."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.helpers.harness import Harness, fake_prompt

RECORDER = ("import json, os, sys\n"
            "data = json.loads(sys.stdin.read())\n"
            "with open(sys.argv[1], 'a') as out:\n"
            "    out.write(json.dumps({'task': data, 'env': dict(os.environ)}) + '\\n')\n")


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_notify_command_receives_the_finished_task(harness_factory: Callable[..., Harness],
                                                   tmp_path: Path) -> None:
    out = tmp_path / "notified.jsonl"
    harness = harness_factory(
        f"[notify]\ncommand = [{json.dumps(sys.executable)}, '-c', {json.dumps(RECORDER)}, "
        f"{json.dumps(str(out))}]\ntimeout_seconds = 30\n")
    quiet = harness.create(fake_prompt({"turn": True}, text="Silenced."), "--no-notify")
    task_id = harness.create(fake_prompt({"write": "a.txt", "content": "1"}, {"turn": True}))
    assert harness.wait(task_id)["status"] == "completed"
    assert harness.wait(quiet)["status"] == "completed"

    deadline = time.monotonic() + 30
    while not _records(out) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # a notification for the silenced task would have arrived by now
    records = _records(out)
    assert [r["task"]["id"] for r in records] == [task_id]
    task = records[0]["task"]
    assert task["status"] == "TASK_STATUS_COMPLETED"  # protobuf's JSON mapping of Task
    assert int(task["usage"]["turns"]) >= 1 and task["result"]["text"]
    env = records[0]["env"]
    assert "ANTHROPIC_API_KEY" not in env and "PARHELIA_HOME" not in env
