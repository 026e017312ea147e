"""A sandbox's agent can write its worker's channel: records that are not what their type
says are stepped over with a logged reason, never acted on, and never hold back the
records after them."""

from __future__ import annotations

import pytest

from parhelia import records
from parheliad.core.runtime import Runtime
from parheliad.store import Store
from parheliad.store.tables.events import EventFilter
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


async def test_a_huge_seq_is_refused_and_never_becomes_the_floor(
        runtime: Runtime, store: Store, backend: ScriptedBackend,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 22, finding 4: one forged record far ahead silenced every later real one
    (a seq must exceed the last applied). It is refused with a logged reason and an
    event; the worker's next records still count."""
    task = await make_task(store)
    assert (await runtime.dispatcher.run_pass()).dispatched == [task.id]
    cid = (await store.tasks.get(task.id)).container_id or ""
    backend.emit(cid, "heartbeat", agent_alive=True, input_tokens=10)
    backend.records[cid].append({"seq": records.MAX_SEQ, "type": "heartbeat",
                                 "data": {"agent_alive": True, "input_tokens": 99}})
    backend.records[cid].append({"seq": 2 + records.SEQ_WINDOW, "type": "agent_tool_use",
                                 "data": {"tool": "Bash", "summary": "forged"}})
    backend.records[cid].append({"seq": 2, "type": "heartbeat",
                                 "data": {"agent_alive": True, "input_tokens": 40}})
    backend.records[cid].append({"seq": 3, "type": "agent_tool_use",
                                 "data": {"tool": "Bash", "summary": "make test"}})
    await runtime.listener.drain_all()

    c = await store.containers.get(cid)
    assert c.last_seq == 3 and c.input_tokens == 40
    assert (await store.tasks.get(task.id)).last_tool == "Bash: make test"
    refused = await store.events.list(EventFilter(types=("channel_record_refused",),
                                                  container_id=cid))
    assert len(refused) == 1 and refused[0].data["refused"] == 2
    assert refused[0].data["last_seq"] == 1
    out = capsys.readouterr().out
    assert out.count("channel record refused") == 2 and "past the last applied" in out


async def test_a_replayed_older_record_changes_nothing(
        runtime: Runtime, store: Store, backend: ScriptedBackend) -> None:
    """A record at or below the last applied seq (a sandbox replaying its spool, or a
    channel read again) is not applied twice: no second heartbeat row, no clock or usage
    moved, no second event, no lower floor."""
    task = await make_task(store)
    assert (await runtime.dispatcher.run_pass()).dispatched == [task.id]
    cid = (await store.tasks.get(task.id)).container_id or ""
    lines = backend.records.setdefault(cid, [])
    for seq in (1, 2, 3):
        lines.append({"seq": seq, "type": "heartbeat", "at": f"2026-12-01T10:00:{seq}0Z",
                      "data": {"agent_alive": True, "input_tokens": 10 * seq}})
    lines.append({"seq": 4, "type": "agent_tool_use", "data": {"tool": "Bash", "summary": "a"}})
    await runtime.listener.drain_all()
    applied = await store.containers.get(cid)
    assert (applied.last_seq, applied.input_tokens) == (4, 30)

    later = "2026-12-01T11:00:00Z"  # a replay carrying a later clock and more tokens
    lines.append({"seq": 4, "type": "agent_tool_use", "data": {"tool": "Bash", "summary": "b"}})
    lines.append({"seq": 3, "type": "heartbeat", "at": later,
                  "data": {"agent_alive": True, "input_tokens": 900}})
    lines.append({"seq": 1, "type": "heartbeat", "at": later,
                  "data": {"agent_alive": True, "input_tokens": 999}})
    await runtime.listener.drain_all()

    c = await store.containers.get(cid)
    assert (c.last_seq, c.input_tokens, c.last_heartbeat_at) == \
        (4, 30, applied.last_heartbeat_at)
    assert len(await store.heartbeats.list(cid)) == 3
    assert (await store.tasks.get(task.id)).last_tool == "Bash: a"
