"""A sandbox's agent can write its worker's channel: records that are not what their type
says are stepped over with a logged reason, never acted on, and never hold back the
records after them."""

from __future__ import annotations

import pytest

from parheliad.core.runtime import Runtime
from parheliad.store import Store
from tests.helpers.scripted_backend import ScriptedBackend, make_task, task_status


async def test_hostile_records_are_refused_and_the_channel_goes_on(
        runtime: Runtime, store: Store, backend: ScriptedBackend,
        capsys: pytest.CaptureFixture[str]) -> None:
    task = await make_task(store)
    assert (await runtime.dispatcher.run_pass()).dispatched == [task.id]
    cid = (await store.tasks.get(task.id)).container_id or ""
    hostile: list[dict[str, object]] = [
        {"type": "checkpoint_created", "data": {"checkpoint_id": "../../../etc/passwd"}},
        {"type": "agent_result", "data": {"subtype": "success", "cost_usd": 1e300}},
        {"type": "worker_exited", "data": {"exit_code": "0", "status": "completed"}},
        {"type": "worker_exited", "data": {"exit_code": 0, "status": "succeeded"}},
        {"type": "heartbeat", "data": {"agent_alive": "yes", "input_tokens": -1}},
        {"type": "agent_turn_completed", "data": {"input_tokens": 2**80}},
        {"type": "no_such_record", "data": {}},
    ]
    lines = backend.records.setdefault(cid, [])
    for n, line in enumerate(hostile, 1):
        lines.append({"seq": n, **line})
    lines.append({"type": "heartbeat", "data": {}})  # no seq at all
    backend.emit(cid, "heartbeat", agent_alive=True, input_tokens=40)
    backend.emit(cid, "agent_tool_use", tool="Bash", summary="make test")
    await runtime.listener.drain_all()

    c = await store.containers.get(cid)
    assert c.last_seq == len(lines) and c.health == "healthy"
    assert c.input_tokens == 40 and c.api_cost_micros == 0
    row = await store.tasks.get(task.id)
    assert await task_status(store, task.id) == "running" and row.last_tool == "Bash: make test"
    assert await store.checkpoints.list(row.session_id) == []
    out = capsys.readouterr().out
    assert out.count("channel record refused") == len(hostile) + 1
    assert "checkpoint_id is not a checkpoint id" in out and "unknown record type" in out
