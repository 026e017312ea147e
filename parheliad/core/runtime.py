"""The task runtime: backends, dispatcher, listener, recovery and the periodic jobs.

It is the daemon component that makes tasks run; the task service calls it to stop
tasks, the API calls it for logs and results. Its parts are built and wired by the
composition root (:func:`parheliad.wiring.build_runtime`); this class starts and stops
them. Started after the store and stopped before it (see ``parheliad.daemon``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from parhelia.checkpoint.cas import sweep_temp
from parhelia.checkpoint.projects import Conversation
from parhelia.errors import Code, ParheliaError, is_code
from parhelia.paths import Paths
from parhelia.progress import Report
from parhelia.volume import LocalVolume, log_key, setup_log_key
from parheliad.backends.base import Backend, BackendUnreachable
from parheliad.backends.registry import Backends
from parheliad.config import Config
from parheliad.core import results, workspace
from parheliad.core.budget import Budget
from parheliad.core.checkpoints import CheckpointOps
from parheliad.core.configsync import ConfigSync
from parheliad.core.dispatcher import Dispatcher
from parheliad.core.health import HealthMonitor, run_job
from parheliad.core.listener import Listener
from parheliad.core.reconciler import Reconciler
from parheliad.core.recovery import Recovery
from parheliad.core.repo_source import RepoSources
from parheliad.core.sessions import SessionOps
from parheliad.core.states import CONTAINER_LIVE, TASK_FINAL, TaskStatus
from parheliad.core.stopper import Stopper
from parheliad.core.tasks import RetryOverrides, retry_task, transition
from parheliad.environments.builds import ImageBuilds
from parheliad.store.rows import ContainerRow, TaskRow
from parheliad.store.store import Store

log = structlog.get_logger(__name__)

_LOG_POLL_SECONDS = 0.25
PRUNE_INTERVAL_SECONDS = 60.0


@dataclass(frozen=True)
class Runtime:
    """The runtime's parts, as the composition root built and wired them."""

    name: ClassVar[str] = "runtime"
    store: Store
    paths: Paths
    config: Callable[[], Config]
    environ: dict[str, str]
    """The daemon's environment: local workers inherit it; sync.pass_env reads it."""
    volume: LocalVolume
    """The daemon's local volume: the copy read for diff, pull, logs, rollback and
    config dry runs (each backend copies to and from its own at fixed points)."""
    registry: Backends
    stopper: Stopper
    budget: Budget
    dispatcher: Dispatcher
    recovery: Recovery
    listener: Listener
    config_sync: ConfigSync
    health: HealthMonitor
    reconciler: Reconciler
    checkpoints: CheckpointOps
    sessions: SessionOps
    repos: RepoSources
    """Clones ``--repo`` tasks on the daemon's side into checkpoint zero."""
    scheduler: AsyncIOScheduler
    images: ImageBuilds
    """Environment images (``building environment``; ``parhelia env build``)."""

    @property
    def backends(self) -> dict[str, Backend]:
        return self.registry.built

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        # temp files of writers killed before this start
        files, size = await asyncio.to_thread(sweep_temp, self.volume)
        if files:
            log.info("cas.temp_swept", files=files, bytes=size)
        await self._adopt()
        await self.repos.start()
        await self.reconciler.load()
        # What changed while the daemon was down is found before anything is drained.
        await run_job(self.reconciler.run, "reconcile")
        await self.listener.start()
        await self.recovery.start()
        await self._budget_tick()  # the ceiling holds before anything is dispatched
        await self.dispatcher.start()
        every = self._intervals(self.config())
        self.scheduler.add_job(self.dispatcher.kick, "interval", seconds=every["dispatch"],
                               id="dispatch", max_instances=1, coalesce=True)
        self.scheduler.add_job(self._budget_tick, "interval", seconds=every["budget"],
                               id="budget", max_instances=1, coalesce=True)
        self.scheduler.add_job(run_job, "interval", args=(self.health.sweep, "health"),
                               seconds=every["health"],
                               id="health", max_instances=1, coalesce=True)
        self.scheduler.add_job(run_job, "interval", args=(self.health.prune, "prune"),
                               seconds=PRUNE_INTERVAL_SECONDS,
                               id="prune_heartbeats", max_instances=1, coalesce=True)
        self.scheduler.add_job(run_job, "interval", args=(self.reconciler.run, "reconcile"),
                               seconds=every["reconcile"],
                               id="reconcile", max_instances=1, coalesce=True)
        self.scheduler.start()

    def apply_config(self, cfg: Config) -> None:
        """A reloaded configuration: the periodic jobs follow its intervals (every part
        reads the rest through ``config()`` when it acts)."""
        if not self.scheduler.running:
            return
        for job, seconds in self._intervals(cfg).items():
            current = self.scheduler.get_job(job)
            if current is not None and current.trigger.interval.total_seconds() != seconds:
                self.scheduler.reschedule_job(job, trigger="interval", seconds=seconds)
                log.info("job.rescheduled", job=job, seconds=seconds)

    @staticmethod
    def _intervals(cfg: Config) -> dict[str, float]:
        return {"dispatch": cfg.orchestrator.dispatch_interval_seconds,
                "budget": cfg.budget.accrual_interval_seconds,
                "health": cfg.heartbeat.interval_seconds,
                "reconcile": cfg.reconciler.poll_interval_seconds}

    async def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        await self.dispatcher.stop()
        await self.images.stop()
        await self.repos.stop()
        await self.recovery.stop()
        await self.stopper.close()
        await self.listener.stop()
        for backend in self.backends.values():
            try:
                await backend.aclose()
            except Exception:
                log.exception("backend close failed", backend=backend.name)

    async def _adopt(self) -> None:
        """Workers outlive the daemon: record the live ones we find again."""
        for c in await self.store.containers.live():
            backend = self.backends.get(c.backend)
            if backend is None or not c.backend_id:
                continue
            try:
                status = await backend.status(c.backend_id, c.id)
            except BackendUnreachable:
                self.listener.mark_reachable(c.backend, False)
                continue  # asked again by the listener once the backend answers
            if status.running:
                await self.store.events.append(
                    "container_adopted", f"re-adopted {c.backend} {c.backend_id}",
                    task_id=c.task_id, session_id=c.session_id, container_id=c.id,
                    data={"backend_id": c.backend_id})
                log.info("adopted worker", container_id=c.id, backend_id=c.backend_id)

    async def _budget_tick(self) -> None:
        """Accrue compute and enforce the ceiling, warning and per-task caps."""
        try:
            await self.budget.tick()
        except Exception:
            log.exception("budget tick failed")

    # -- the TaskRuntime seam of the task service ----------------------------------

    def check_backend(self, name: str) -> None:
        """Refuse, at creation, a task its backend cannot start: E400 when Modal has no
        token (`parhelia modal setup --token-id`), E500 when the backend is otherwise
        unavailable."""
        why = self.registry.unavailable_reason(name)
        if why is None:
            return
        raise ParheliaError(self.registry.unavailable_code(name), f"{why}. No task was created",
                            backend=name)

    async def kick(self, task: TaskRow) -> None:
        self.dispatcher.kick()

    async def cancel(self, task: TaskRow, grace_seconds: float) -> TaskRow:
        """Mark it cancelled, ask its worker to checkpoint and stop, kill after the grace."""
        row = await self.store.write(lambda tx: transition(
            tx, task.id, TaskStatus.CANCELLED, reason="cancelled by user"))
        container = await self._live_container(row)
        if container is not None:
            self.stopper.stop_later(container, "cancel", grace_seconds)
        return row

    async def _live_container(self, task: TaskRow) -> ContainerRow | None:
        if not task.container_id:
            return None
        c = await self.store.containers.find(task.container_id)
        return c if c is not None and c.state in CONTAINER_LIVE else None

    async def retry(self, ref: str, overrides: RetryOverrides | None = None) -> TaskRow:
        """A finished task runs again in a fresh session from checkpoint zero, with
        ``overrides`` of its limits (a higher --max-cost after hitting the cap...)."""
        row = await retry_task(self.store, self.config(), ref, overrides)
        self.dispatcher.kick()
        return row

    # -- workspace, logs and results ------------------------------------------------

    async def upload(self, path: Path, include_secret: Sequence[str] = (),
                     conversation: Conversation | None = None,
                     progress: Report | None = None) -> workspace.Upload:
        return await asyncio.to_thread(workspace.upload, self.volume, path,
                                       self.paths.state_dir / "statcache", include_secret,
                                       conversation, progress)

    async def logs(self, ref: str, *, follow: bool, offset: int = 0, setup: bool = False
                   ) -> AsyncIterator[tuple[str, bytes, int]]:
        """The agent's raw stream of every container of a task, oldest first:
        (container id, chunk, offset after the chunk). With ``follow``, until the task ends.
        ``setup``: the environment's setup and start output instead (redacted)."""
        key = setup_log_key if setup else log_key
        task = await self.store.tasks.get(ref)
        positions: dict[str, int] = {}
        while True:
            containers = sorted(await self.store.containers.list(task_id=task.id, limit=1000),
                                key=lambda c: c.created_at)
            for c in containers:
                start = positions.setdefault(c.id, offset if c is containers[0] else 0)
                path = self.paths.volume_dir / key(c.id)
                async for chunk, end in _read_from(path, start):
                    positions[c.id] = end
                    yield c.id, chunk, end
            task = await self.store.tasks.get(task.id)
            settled = all(c.state not in CONTAINER_LIVE for c in containers)
            if not follow or (TaskStatus(task.status) in TASK_FINAL and settled):
                return
            await asyncio.sleep(_LOG_POLL_SECONDS)

    async def changes(self, ref: str) -> tuple[TaskRow, results.TaskChanges]:
        task = await self.store.tasks.get(ref)
        if task.session_id is None:
            raise ParheliaError("E202", f"task {task.id} has not run yet; nothing to compare")
        if task.status == TaskStatus.COMPLETED and task.needs_user and task.status_code:
            code: Code = task.status_code if is_code(task.status_code) else "E600"
            raise ParheliaError(code, f"task {task.id}'s result was not saved, so "
                                f"its last checkpoint is not its result: {task.status_reason}")
        session = await self.store.sessions.get(task.session_id)
        cps = await self.store.checkpoints.list(task.session_id, limit=100000)
        zero = next((cp.id for cp in sorted(cps, key=lambda cp: cp.created_at)
                     if cp.trigger == workspace.WORKSPACE_TRIGGER), None)
        changes = await asyncio.to_thread(results.task_changes, self.volume, task, zero,
                                          session.latest_checkpoint_id)
        return task, changes


async def _read_from(path: Path, offset: int) -> AsyncIterator[tuple[bytes, int]]:
    def read() -> bytes:
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                return fh.read(1 << 20)
        except FileNotFoundError:
            return b""

    while True:
        chunk = await asyncio.to_thread(read)
        if not chunk:
            return
        offset += len(chunk)
        yield chunk, offset
