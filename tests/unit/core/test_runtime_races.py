"""Races where the dispatcher, listener, recovery and the stop paths meet, in-process on a
real store with a scripted backend (no worker processes)."""

from __future__ import annotations

import asyncio
from typing import Any

from parheliad.config import Config
from parheliad.core.runtime import Runtime
from parheliad.core.states import TaskStatus
from parheliad.core.tasks import transition
from parheliad.store import Store
from parheliad.store.rows import TaskRow
from tests.helpers.scripted_backend import ScriptedBackend
from tests.helpers.scripted_backend import make_task as _task
from tests.helpers.scripted_backend import task_status as _status


async def test_unasked_stop_reported_by_the_worker_goes_to_recovery(
        runtime: Runtime, store: Store, backend: ScriptedBackend) -> None:
    """A worker SIGTERMed by someone other than the daemon says ``worker_exited``
    (stopped) itself; the listener applies that record before any exit check sees the
    process gone, and the task must still be recovered, not left running forever."""
    task = await _task(store)
    report = await runtime.dispatcher.run_pass()
    assert report.dispatched == [task.id]
    cid = (await store.tasks.get(task.id)).container_id
    assert cid is not None
    backend.emit(cid, "worker_started")
    backend.emit(cid, "worker_exited", exit_code=143, status="stopped",
                 error_message="terminated by signal 15")
    backend.running[backend.by_container[cid]] = False
    await runtime.listener.drain_all()
    assert (await store.containers.get(cid)).state == "exited"
    assert await _status(store, task.id) in ("recovering", "running")
    # ... and recovery really starts a new incarnation.
    for _ in range(100):
        row = await store.tasks.get(task.id)
        if row.container_id != cid:
            break
        await asyncio.sleep(0.02)
    row = await store.tasks.get(task.id)
    assert row.status == "running" and row.restarts == 1 and row.container_id != cid
    await runtime.recovery.stop()


async def _claimed_not_launched(runtime: Runtime, store: Store,
                                backend: ScriptedBackend) -> tuple[TaskRow, asyncio.Task[Any]]:
    backend.gate = asyncio.Event()
    task = await _task(store)
    dispatch = asyncio.create_task(runtime.dispatcher.run_pass())
    await asyncio.wait_for(backend.launching.wait(), 5)
    row = await store.tasks.get(task.id)
    assert row.status == "running"
    assert (await store.containers.get(row.container_id or "")).state == "created"
    return row, dispatch


async def test_cancel_while_the_launch_is_in_flight_abandons_the_launch(
        runtime: Runtime, store: Store, backend: ScriptedBackend) -> None:
    """A launch still waiting (a GPU create waiting for capacity) is abandoned at once: no
    worker is ever started for the cancelled task."""
    row, dispatch = await _claimed_not_launched(runtime, store, backend)
    await runtime.cancel(row, 0.5)
    await asyncio.gather(*runtime.stopper.background)
    await dispatch
    assert backend.gate is not None
    backend.gate.set()
    assert row.container_id not in backend.by_container, "a cancelled task's worker started"
    container = await store.containers.get(row.container_id or "")
    assert container.state == "terminated" and "launch was cancelled" in container.reason
    assert await _status(store, row.id) == "cancelled"


async def test_budget_pause_while_the_launch_is_in_flight_abandons_the_launch(
        runtime: Runtime, store: Store, backend: ScriptedBackend) -> None:
    row, dispatch = await _claimed_not_launched(runtime, store, backend)
    await store.kv.set("budget.ceiling_micros", 1)  # any spend at all is over it
    await store.ledger.record("api", 5, note="earlier spend")
    await runtime.budget.tick()
    assert await _status(store, row.id) == "paused"
    await asyncio.gather(*runtime.stopper.background)
    await dispatch
    assert backend.gate is not None
    backend.gate.set()
    assert row.container_id not in backend.by_container, "a paused task's worker started"


async def test_slow_launch_is_not_settled_as_never_launched(
        runtime: Runtime, store: Store, backend: ScriptedBackend) -> None:
    """A launch that takes longer than the listener's 30 s "never launched" window
    (a Modal image build) must not be declared lost while it is still in flight."""
    row, dispatch = await _claimed_not_launched(runtime, store, backend)
    cid = row.container_id or ""
    await store.write(lambda tx: tx.conn.execute(
        "UPDATE containers SET created_at = created_at - 60000000 WHERE id = ?", (cid,)))
    await runtime.listener.check_exits()
    assert (await store.containers.get(cid)).state == "created"
    assert backend.gate is not None
    backend.gate.set()
    await dispatch
    c = await store.containers.get(cid)
    assert c.state == "starting" and c.backend_id == backend.by_container[cid]
    assert await _status(store, row.id) == "running"


async def test_resume_waits_for_the_old_container_of_the_session_to_end(
        runtime: Runtime, store: Store, backend: ScriptedBackend) -> None:
    """Cancel, then resume at once: the cancelled worker is still checkpointing in the
    session's workspace, so no second worker may start on the same session until it ends."""
    task = await _task(store)
    await runtime.dispatcher.run_pass()
    row = await store.tasks.get(task.id)
    old = row.container_id or ""
    # The cancel's stop is in flight (the worker has not exited yet).
    await store.write(lambda tx: transition(tx, task.id, TaskStatus.CANCELLED, reason="x"))

    def resume(tx: Any) -> None:
        transition(tx, task.id, TaskStatus.PENDING, reason="resumed")

    await store.write(resume)
    report = await runtime.dispatcher.run_pass()
    assert report.dispatched == []
    assert await _status(store, task.id) == "pending"
    live = await store.containers.live()
    assert [c.id for c in live] == [old]
    # Once the old worker ends, the task goes.
    backend.emit(old, "worker_exited", exit_code=130, status="stopped")
    backend.running[backend.by_container[old]] = False
    await runtime.listener.check_exits()
    report = await runtime.dispatcher.run_pass()
    assert report.dispatched == [task.id]


async def test_a_daemon_killed_between_settle_and_recovery_recovers_at_start(
        runtime: Runtime, store: Store, backend: ScriptedBackend) -> None:
    """The container's end and the task's move to recovering are two units; a daemon
    that died between them must not leave the task running forever."""
    from parheliad.core.settle import Outcome, settle_container

    task = await _task(store)
    await runtime.dispatcher.run_pass()
    cid = (await store.tasks.get(task.id)).container_id or ""
    lost = await store.write(lambda tx: settle_container(
        tx, cid, Outcome(None, "lost", error_message="vanished")))
    assert lost is not None  # ... and the daemon dies before calling on_lost
    assert await _status(store, task.id) == "running"
    await runtime.recovery.start()  # the next daemon's start
    row = await store.tasks.get(task.id)
    assert row.status == "recovering" and row.restarts == 1
    await runtime.recovery.on_lost(*lost)  # a late second report counts no restart
    assert (await store.tasks.get(task.id)).restarts == 1
    await runtime.recovery.stop()


async def test_cancel_of_a_task_dispatched_meanwhile_stops_its_worker(
        runtime: Runtime, store: Store, backend: ScriptedBackend) -> None:
    """``task cancel`` reads the task as pending; the dispatcher launches it before the
    cancel's unit runs. The cancel must then stop the worker like a running task's."""
    from parheliad.core.tasks import TaskService

    task = await _task(store)
    service = TaskService(store, config=lambda _: Config(), runtime=runtime)
    real_get = store.tasks.get
    calls = 0

    async def get_then_dispatch(ref: str) -> TaskRow:
        nonlocal calls
        row = await real_get(ref)
        calls += 1
        if calls == 1:  # the dispatcher wins the race right after the cancel's read
            await runtime.dispatcher.run_pass()
        return row

    store.tasks.get = get_then_dispatch  # type: ignore[method-assign]
    try:
        row = await service.cancel(task.id, grace_seconds=0.5)
    finally:
        store.tasks.get = real_get  # type: ignore[method-assign]
    assert row.status == "cancelled"
    await asyncio.gather(*runtime.stopper.background)
    cid = (await store.tasks.get(task.id)).container_id or ""
    assert not backend.running[backend.by_container[cid]], "cancelled, and still running"
