"""A scripted backend for the core's in-process tests (no worker processes; its volume
is a directory of its own, so the volume sync points run), and small task helpers. The
``backend`` and ``runtime`` fixtures below are offered to ``tests/unit/core``."""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from parhelia.paths import Paths
from parhelia.volume import LocalVolume
from parheliad.backends.base import ChannelBatch, ContainerSpec, ContainerStatus, ListedContainer
from parheliad.config import Config
from parheliad.core.events import EventBus
from parheliad.core.runtime import Runtime
from parheliad.store import Store
from parheliad.store.rows import TaskRow
from parheliad.wiring import build_runtime
from tests.helpers.backend_seams import SeamsMixin


class ScriptedBackend(SeamsMixin):
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

    def last_heard(self, container_id: str) -> int | None:
        return None  # its records are applied as they are emitted

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
    # Never read the user's Claude config.
    return build_runtime(store, paths, lambda: cfg, "owner", EventBus(),
                         backends={"modal": backend},  # type: ignore[dict-item]
                         sync_claude_config=False)


async def make_task(store: Store) -> TaskRow:
    return await store.write(lambda tx: tx.tasks.insert(dict(
        prompt="p", cpu=1.0, memory_mb=1024, timeout_seconds=600, max_turns=5,
        permission_mode="acceptEdits", backend="modal", max_cost_micros=1_000_000)))


async def task_status(store: Store, task_id: str) -> str:
    return (await store.tasks.get(task_id)).status
