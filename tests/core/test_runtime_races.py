"""Races where the dispatcher, listener, recovery and the stop paths meet, in-process on a
real store with a scripted backend (no worker processes)."""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from modal_worker.volume import LocalVolume
from parhelia.paths import Paths
from parheliad.backends.base import ChannelBatch, ContainerSpec, ContainerStatus, ListedContainer
from parheliad.config import Config
from parheliad.core.events import EventBus
from parheliad.core.runtime import Runtime
from parheliad.core.states import TaskStatus
from parheliad.core.tasks import transition
from parheliad.store import Store, open_store
from parheliad.store.rows import TaskRow


class ScriptedBackend:
    """Workers are entries in a dict; their channels are lists of records the test
    appends to. ``gate`` (when set) holds every launch until the test opens it."""

    name = "modal"

    def __init__(self, root: Path) -> None:
        self.volume = LocalVolume(root)
        self.gate: asyncio.Event | None = None
        self.launching = asyncio.Event()
        self.running: dict[str, bool] = {}
        self.by_container: dict[str, str] = {}
        self.records: dict[str, list[dict[str, Any]]] = {}
        self.controls: list[tuple[str, dict[str, Any]]] = []
        self.terminated: list[str] = []

    async def launch(self, spec: ContainerSpec) -> str:
        self.launching.set()
        if self.gate is not None:
            await self.gate.wait()
        backend_id = f"sb-{len(self.running) + 1}"
        self.running[backend_id] = True
        self.by_container[spec.container_id] = backend_id
        return backend_id

    def emit(self, container_id: str, kind: str, **data: Any) -> None:
        records = self.records.setdefault(container_id, [])
        records.append({"seq": len(records) + 1, "type": kind, "data": data})

    async def status(self, backend_id: str, container_id: str) -> ContainerStatus:
        return ContainerStatus(running=self.running.get(backend_id, False))

    async def statuses(self, items: Sequence[tuple[str, str]]) -> builtins.list[ContainerStatus]:
        return [await self.status(b, c) for b, c in items]

    async def list(self, owner_tag: str) -> builtins.list[ListedContainer]:
        return [ListedContainer(b, c, owner_tag, True) for c, b in self.by_container.items()
                if self.running.get(b)]

    async def terminate(self, backend_id: str, grace_seconds: float = 0.0) -> None:
        self.terminated.append(backend_id)
        self.running[backend_id] = False

    async def events(self, container_id: str, cursor: int) -> ChannelBatch:
        records = self.records.get(container_id, [])
        return ChannelBatch(records[cursor:], len(records))

    async def control(self, backend_id: str, container_id: str, message: dict[str, Any]) -> None:
        self.controls.append((backend_id, message))
        if message.get("type") == "stop" and self.running.get(backend_id):
            # A well-behaved worker: checkpoints, says so, and exits.
            self.emit(container_id, "worker_exited", exit_code=130, status="stopped")
            self.running[backend_id] = False


@pytest.fixture
async def store(tmp_path: Path):
    s = await open_store(tmp_path / "db.sqlite")
    yield s
    await s.close()


@pytest.fixture
def backend(tmp_path: Path) -> ScriptedBackend:
    return ScriptedBackend(tmp_path / "vol")


@pytest.fixture
def runtime(store: Store, backend: ScriptedBackend, tmp_path: Path) -> Runtime:
    paths = Paths(home=tmp_path, config_file=tmp_path / "config.toml",
                  state_dir=tmp_path / "state", data_dir=tmp_path / "data",
                  socket=tmp_path / "s")
    base = Config()
    cfg = dataclasses.replace(
        base, recovery=dataclasses.replace(base.recovery, backoff_seconds=0.01),
        orchestrator=dataclasses.replace(base.orchestrator, cancel_grace_seconds=0.5))
    rt = Runtime(store, paths, lambda: cfg, "owner", EventBus(),
                 backends={"modal": backend})  # type: ignore[dict-item]
    rt.dispatcher.config_bundle = None  # never read the user's Claude config
    return rt


async def _task(store: Store) -> TaskRow:
    return await store.write(lambda tx: tx.tasks.insert(dict(
        prompt="p", cpu=1.0, memory_mb=1024, timeout_seconds=600, max_turns=5,
        permission_mode="acceptEdits", backend="modal", max_cost_micros=1_000_000)))


async def _status(store: Store, task_id: str) -> str:
    return (await store.tasks.get(task_id)).status


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


async def test_cancel_while_the_launch_is_in_flight_stops_the_worker(
        runtime: Runtime, store: Store, backend: ScriptedBackend) -> None:
    row, dispatch = await _claimed_not_launched(runtime, store, backend)
    await runtime.cancel(row, 0.5)
    assert backend.gate is not None
    backend.gate.set()
    await dispatch
    await asyncio.gather(*runtime._background)
    backend_id = backend.by_container[row.container_id or ""]
    assert not backend.running[backend_id], "a cancelled task's worker kept running"
    await runtime.listener.check_exits()
    assert (await store.containers.get(row.container_id or "")).state == "terminated"
    assert await _status(store, row.id) == "cancelled"


async def test_budget_pause_while_the_launch_is_in_flight_stops_the_worker(
        runtime: Runtime, store: Store, backend: ScriptedBackend) -> None:
    row, dispatch = await _claimed_not_launched(runtime, store, backend)
    await store.kv.set("budget.ceiling_micros", 1)  # any spend at all is over it
    await store.ledger.record("api", 5, note="earlier spend")
    await runtime.budget.tick()
    assert await _status(store, row.id) == "paused"
    assert backend.gate is not None
    backend.gate.set()
    await dispatch
    await asyncio.gather(*runtime._background)
    backend_id = backend.by_container[row.container_id or ""]
    assert not backend.running[backend_id], "a budget-paused task's worker kept running"


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
    from parheliad.core.listener import Outcome, settle_container

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
    await asyncio.gather(*runtime._background)
    cid = (await store.tasks.get(task.id)).container_id or ""
    assert not backend.running[backend.by_container[cid]], "cancelled, and still running"
