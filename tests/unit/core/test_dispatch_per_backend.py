"""One dispatch queue per backend (docs/adr/0036-per-backend-dispatch.md): a backend that
hangs while a claim asks it something never delays another backend's dispatch; one found
unreachable is asked once per pass, not once per task; the worker cap holds across
backends."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from parhelia.paths import Paths
from parheliad.backends.base import BackendUnreachable, Credentials
from parheliad.config import Config
from parheliad.core.events import EventBus
from parheliad.core.runtime import Runtime
from parheliad.core.states import CONTAINER_LIVE
from parheliad.store import Store
from parheliad.store.rows import TaskRow
from parheliad.wiring import build_runtime
from tests.helpers.scripted_backend import ScriptedBackend, task_status


class LocalScripted(ScriptedBackend):
    name = "local"


def _runtime(store: Store, tmp_path: Path, backends: dict[str, ScriptedBackend],
             cap: int = 8) -> Runtime:
    paths = Paths(home=tmp_path, config_file=tmp_path / "config.toml",
                  state_dir=tmp_path / "state", data_dir=tmp_path / "data",
                  socket=tmp_path / "s")
    base = Config()
    cfg = dataclasses.replace(base, orchestrator=dataclasses.replace(
        base.orchestrator, max_concurrent_workers=cap, dispatch_interval_seconds=0.05))
    return build_runtime(store, paths, lambda: cfg, "owner", EventBus(),
                         backends=backends, sync_claude_config=False)  # type: ignore[arg-type]


async def _task(store: Store, backend: str) -> TaskRow:
    return await store.write(lambda tx: tx.tasks.insert(dict(
        prompt="p", cpu=1.0, memory_mb=1024, timeout_seconds=600, max_turns=5,
        permission_mode="acceptEdits", backend=backend, max_cost_micros=1_000_000)))


async def _until(check: object, timeout: float = 10) -> None:
    async def poll() -> None:
        while not await check():  # type: ignore[operator]
            await asyncio.sleep(0.02)
    await asyncio.wait_for(poll(), timeout)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[ScriptedBackend, LocalScripted]:
    return ScriptedBackend(tmp_path / "modal"), LocalScripted(tmp_path / "local")


async def test_local_tasks_start_while_modals_credentials_hang(
        store: Store, tmp_path: Path, pair: tuple[ScriptedBackend, LocalScripted]) -> None:
    modal, local = pair
    answer = asyncio.Event()
    asked = 0

    async def hanging() -> Credentials:
        nonlocal asked
        asked += 1
        await answer.wait()
        return Credentials(True, "scripted", {})

    modal.credentials = hanging  # type: ignore[method-assign]
    runtime = _runtime(store, tmp_path, {"modal": modal, "local": local})
    stuck = await _task(store, "modal")
    await runtime.dispatcher.start()
    try:
        await _until(lambda: _true(asked > 0))
        mine = [await _task(store, "local") for _ in range(3)]
        runtime.dispatcher.kick()
        for task in mine:
            await _until(lambda t=task: _is(store, t.id, "running"))
        assert await task_status(store, stuck.id) == "pending"  # Modal still asked
        answer.set()
        await _until(lambda: _is(store, stuck.id, "running"))
    finally:
        answer.set()
        await runtime.dispatcher.stop()


async def test_an_unreachable_backend_is_asked_once_per_pass(
        store: Store, tmp_path: Path, pair: tuple[ScriptedBackend, LocalScripted]) -> None:
    modal, local = pair
    asked = 0

    async def unreachable() -> Credentials:
        nonlocal asked
        asked += 1
        raise BackendUnreachable("Modal could not be reached (scripted)")

    modal.credentials = unreachable  # type: ignore[method-assign]
    runtime = _runtime(store, tmp_path, {"modal": modal, "local": local})
    queued = [await _task(store, "modal") for _ in range(4)]
    other = await _task(store, "local")
    report = await runtime.dispatcher.run_pass()
    assert report.dispatched == [other.id] and asked == 1
    for task in queued:
        row = await store.tasks.get(task.id)
        assert row.status == "pending" and "could not be reached" in (row.status_reason or "")


async def test_the_worker_cap_holds_across_backends(
        store: Store, tmp_path: Path, pair: tuple[ScriptedBackend, LocalScripted]) -> None:
    modal, local = pair
    runtime = _runtime(store, tmp_path, {"modal": modal, "local": local}, cap=3)
    for _ in range(3):
        await _task(store, "modal")
        await _task(store, "local")
    report = await runtime.dispatcher.run_pass()
    assert len(report.dispatched) == 3
    live = await store.containers.list(states=[s.value for s in CONTAINER_LIVE], limit=100)
    assert len(live) == 3
    waiting = [t for t in await store.tasks.pending(limit=100)]
    assert len(waiting) == 3 and all("worker slot" in (t.status_reason or "") for t in waiting)


async def _true(value: bool) -> bool:
    return value


async def _is(store: Store, task_id: str, status: str) -> bool:
    return await task_status(store, task_id) == status
