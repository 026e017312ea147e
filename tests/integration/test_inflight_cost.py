"""A running task's cost climbs with its tokens (the agent reports its cost only at the end)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.helpers.harness import Harness, fake_prompt, readable_by_agents


def _running_with_tokens(harness: Harness, task_id: str) -> dict[str, Any] | None:
    task: dict[str, Any] = harness.json("task", "show", task_id)
    u = task["usage"]
    if task["status"] == "running" and u["output_tokens"] > 0:
        return task
    return None


def test_a_running_tasks_cost_includes_its_priced_tokens(harness_factory,  # type: ignore[no-untyped-def]
                                                          tmp_path: Path) -> None:
    harness: Harness = harness_factory(readable_by_agents(tmp_path))
    gate = tmp_path / "gate"
    task_id = harness.create(fake_prompt({"write": "a.txt", "content": "x" * 4000},
                                         {"turn": True}, {"wait_file": str(gate)}))
    deadline = time.monotonic() + 60
    task = None
    while task is None:
        assert time.monotonic() < deadline, "the task never ran with tokens"
        task = _running_with_tokens(harness, task_id)
        time.sleep(0.2)
    u = task["usage"]
    assert u["api_cost_micros"] == 0  # nothing reported by the agent yet
    assert u["inflight_api_cost_micros"] > 0
    assert u["total_cost_micros"] >= u["inflight_api_cost_micros"]
    listed = harness.json("task", "list")["tasks"]
    row = next(t for t in listed if t["id"] == task_id)
    assert row["usage"]["total_cost_micros"] > 0
    shown = harness.run("task", "show", task_id, check=True).stdout
    assert "in flight" in shown
    gate.touch()
    done = harness.wait(task_id, timeout=60)
    assert done["status"] == "completed"
    assert done["usage"]["inflight_api_cost_micros"] == 0  # booked by the result now
    assert done["usage"]["api_cost_micros"] > 0
