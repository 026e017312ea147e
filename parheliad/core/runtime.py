"""The task runtime: backends, dispatcher, listener, recovery and the periodic jobs.

It is the daemon component that makes tasks run; the task service calls it to stop
or retry tasks, the API calls it for logs and results. Started after the store and
stopped before it (see ``parheliad.daemon``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from modal_worker.checkpoint.cas import sweep_temp
from modal_worker.checkpoint.projects import Conversation
from modal_worker.volume import LocalVolume
from parhelia.errors import ParheliaError
from parhelia.paths import Paths
from parhelia.progress import Report
from parheliad.backends.base import Backend, BackendUnreachable
from parheliad.backends.registry import Backends, build_backends
from parheliad.config import Config
from parheliad.core import budget, results, sshkeys, workspace
from parheliad.core.budget import Budget
from parheliad.core.checkpoints import CheckpointOps
from parheliad.core.configsync import ConfigSync
from parheliad.core.dispatcher import Dispatcher
from parheliad.core.events import EventBus
from parheliad.core.health import HealthMonitor, run_job
from parheliad.core.listener import Listener
from parheliad.core.reconciler import Reconciler
from parheliad.core.recovery import Recovery
from parheliad.core.sessions import SessionOps
from parheliad.core.states import CONTAINER_LIVE, TASK_FINAL, TaskStatus
from parheliad.core.tasks import TaskDefaults, transition, validate_options
from parheliad.store.rows import ContainerRow, TaskRow
from parheliad.store.store import Store
from parheliad.store.tx import Tx

log = structlog.get_logger(__name__)
STOP_RETRY_MAX_S = 30.0

_LOG_POLL_SECONDS = 0.25
PRUNE_INTERVAL_SECONDS = 60.0


@dataclass(frozen=True)
class RetryOverrides:
    """What a retry may change (0 or "": keep the task's value)."""

    max_turns: int = 0
    max_cost_micros: int = 0
    timeout_seconds: int = 0
    model: str = ""

    def apply(self, task: TaskRow, cfg: Config) -> dict[str, Any]:
        """The task's columns to change, validated as at creation (E101)."""
        given = {k: v for k, v in dataclasses.asdict(self).items() if v}
        current = dataclasses.replace(budget.task_options(task), **given)
        checked = validate_options(current, TaskDefaults.from_config(cfg))
        return {k: getattr(checked, k) for k in given if getattr(checked, k) != getattr(task, k)}


def _flagged(option_sources: str, changed: Mapping[str, Any]) -> dict[str, str]:
    """``{"option_sources": ...}`` with the options a retry changed marked as flags."""
    if not changed:
        return {}
    try:
        sources = json.loads(option_sources or "{}")
    except ValueError:
        sources = {}
    if not isinstance(sources, dict):
        sources = {}
    sources.update({k: "flag" for k in changed})
    return {"option_sources": json.dumps(sources)}


class Runtime:
    def __init__(self, store: Store, paths: Paths, config: Callable[[], Config], owner_tag: str,
                 bus: EventBus, backends: Mapping[str, Backend] | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.store = store
        self.paths = paths
        self.config = config
        self.bus = bus
        self.owner_tag = owner_tag
        self.environ: dict[str, str] = dict(os.environ if environ is None else environ)
        """The daemon's environment: local workers inherit it; sync.pass_env reads it."""
        self.volume = LocalVolume(paths.volume_dir)
        """The daemon's local volume: the copy read for diff, pull, logs, rollback and
        config dry runs (each backend copies to and from its own at fixed points)."""
        self.registry: Backends = build_backends(config(), paths, self.environ, owner_tag) \
            if backends is None else Backends(built=dict(backends))
        self.backends: dict[str, Backend] = self.registry.built
        self.budget = Budget(store, config, stop=self._stop_for_budget,
                             kick=lambda: self.dispatcher.kick())
        self.dispatcher = Dispatcher(store, self.registry, config, self.volume, owner_tag,
                                     budget_gate=self.budget.gate)
        self.dispatcher.ssh_key = lambda sid: sshkeys.session_key(paths.state_dir, sid).public
        self.recovery = Recovery(store, self.dispatcher, config, self.backends)
        self.listener = Listener(store, self.backends, self.volume,
                                 on_settled=self.dispatcher.kick,
                                 on_lost=self.recovery.on_lost,
                                 launching=self.dispatcher.launching)
        self.dispatcher.on_unwanted = self._stop_unwanted
        self.config_sync = ConfigSync(store, config)
        self.dispatcher.config_bundle = self._config_bundle
        self.health = HealthMonitor(store, self.backends, config, self.listener,
                                    on_lost=self.recovery.on_lost,
                                    on_settled=self.dispatcher.kick)
        self.reconciler = Reconciler(store, self.backends, config, owner_tag, self.listener,
                                     on_lost=self.recovery.on_lost,
                                     on_settled=self.dispatcher.kick,
                                     stop=self._stop_stray)
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        self.checkpoints = CheckpointOps(self)
        self.sessions = SessionOps(self)
        self._background: set[asyncio.Task[None]] = set()
        self._stopping: set[str] = set()
        """Containers a stop is under way for (the reconciler does not start another)."""

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        cas = self.volume.path_for("cas")
        if cas is not None:  # temp files of writers killed before this start
            files, size = await asyncio.to_thread(sweep_temp, cas)
            if files:
                log.info("cas.temp_swept", files=files, bytes=size)
        await self._adopt()
        await self.reconciler.load()
        # What changed while the daemon was down is found before anything is drained.
        await run_job(self.reconciler.run, "reconcile")
        await self.listener.start()
        await self.recovery.start()
        await self._budget_tick()  # the ceiling holds before anything is dispatched
        await self.dispatcher.start()
        cfg = self.config()
        self.scheduler.add_job(self.dispatcher.kick, "interval",
                               seconds=cfg.orchestrator.dispatch_interval_seconds,
                               id="dispatch", max_instances=1, coalesce=True)
        self.scheduler.add_job(self._budget_tick, "interval",
                               seconds=cfg.budget.accrual_interval_seconds,
                               id="budget", max_instances=1, coalesce=True)
        self.scheduler.add_job(run_job, "interval", args=(self.health.sweep, "health"),
                               seconds=cfg.heartbeat.interval_seconds,
                               id="health", max_instances=1, coalesce=True)
        self.scheduler.add_job(run_job, "interval", args=(self.health.prune, "prune"),
                               seconds=PRUNE_INTERVAL_SECONDS,
                               id="prune_heartbeats", max_instances=1, coalesce=True)
        self.scheduler.add_job(run_job, "interval", args=(self.reconciler.run, "reconcile"),
                               seconds=cfg.reconciler.poll_interval_seconds,
                               id="reconcile", max_instances=1, coalesce=True)
        self.scheduler.start()

    async def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        await self.dispatcher.stop()
        await self.recovery.stop()
        for t in list(self._background):
            t.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
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

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        t = asyncio.create_task(coro)
        self._background.add(t)
        t.add_done_callback(self._background.discard)

    async def _budget_tick(self) -> None:
        """Accrue compute and enforce the ceiling, warning and per-task caps."""
        try:
            await self.budget.tick()
        except Exception:
            log.exception("budget tick failed")

    def _stop_for_budget(self, c: ContainerRow, reason: str) -> None:
        """The budget stopped a task: its worker checkpoints and stops (killed after the
        cancel grace)."""
        self._spawn_stop(c, reason, self.budget.stop_grace_seconds())

    def _stop_unwanted(self, c: ContainerRow) -> None:
        """A worker launched for a task that was cancelled, paused or rolled back while
        the launch was in flight: stopped like any other (checkpoint, then killed)."""
        self._spawn_stop(c, "cancel", self.config().orchestrator.cancel_grace_seconds)

    def _stop_stray(self, c: ContainerRow, reason: str) -> bool:
        """The reconciler found ``c`` running for a task that wants no worker (a stop
        retried in the memory of a daemon that died): stop it, unless one is under way."""
        if c.id in self._stopping:
            return False
        self._spawn_stop(c, reason, self.config().orchestrator.cancel_grace_seconds)
        return True

    def _spawn_stop(self, c: ContainerRow, reason: str, grace: float) -> None:
        """``stop_container`` in the background, known as under way from now on."""
        self._stopping.add(c.id)
        self._spawn(self.stop_container(c, reason, grace))

    async def _config_bundle(self, env: Mapping[str, str]) -> tuple[str | None, dict[str, str]]:
        """The dispatcher's config hook: sync (into the daemon's volume) when the user's
        Claude config changed; ``env`` is where ``sync.pass_env`` values come from."""
        return await self.config_sync.for_dispatch(self.volume, env)

    # -- the TaskRuntime seam of the task service ----------------------------------

    async def kick(self, task: TaskRow) -> None:
        self.dispatcher.kick()

    async def cancel(self, task: TaskRow, grace_seconds: float) -> TaskRow:
        """Mark it cancelled, ask its worker to checkpoint and stop, kill after the grace."""
        row = await self.store.write(lambda tx: transition(
            tx, task.id, TaskStatus.CANCELLED, reason="cancelled by user"))
        container = await self._live_container(row)
        if container is not None:
            self._spawn_stop(container, "cancel", grace_seconds)
        return row

    async def _live_container(self, task: TaskRow) -> ContainerRow | None:
        if not task.container_id:
            return None
        c = await self.store.containers.find(task.container_id)
        return c if c is not None and c.state in CONTAINER_LIVE else None

    async def stop_container(self, c: ContainerRow, reason: str, grace: float) -> None:
        """Stop it (checkpoint, then kill after ``grace``). A backend that cannot be
        reached is asked again with backoff until the container ends: a cancelled or
        paused task's sandbox must not run on (and bill) until its own timeout."""
        delay = 1.0
        self._stopping.add(c.id)
        try:
            while True:
                try:
                    await self._stop_once(c, reason, grace)
                    return
                except BackendUnreachable as exc:
                    row = await self.store.containers.find(c.id)
                    if row is None or row.state not in CONTAINER_LIVE:
                        return
                    log.warning("stop not delivered, retrying", container_id=c.id,
                                error=exc.message, retry_in_s=delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, STOP_RETRY_MAX_S)
        finally:
            self._stopping.discard(c.id)

    async def _stop_once(self, c: ContainerRow, reason: str, grace: float) -> None:
        backend = self.backends.get(c.backend)
        if backend is None or not c.backend_id:
            return
        try:
            try:
                await backend.control(c.backend_id, c.id, {"type": "stop", "reason": reason})
            except BackendUnreachable:
                raise
            except ParheliaError as exc:
                # The worker did not take the stop (wedged, gone): no checkpoint to wait
                # for; it is terminated at once rather than left running.
                log.warning("stop refused by the worker, terminating", container_id=c.id,
                            error=exc.message)
                grace = 0.0
            deadline = asyncio.get_running_loop().time() + grace
            while asyncio.get_running_loop().time() < deadline:
                if not (await backend.status(c.backend_id, c.id)).running:
                    break
                await asyncio.sleep(0.2)
            else:
                await backend.terminate(c.backend_id, grace_seconds=5.0)
        finally:
            await self.listener.check_exits()

    async def retry(self, ref: str, overrides: RetryOverrides | None = None) -> TaskRow:
        """A finished task runs again in a fresh session from checkpoint zero, with
        ``overrides`` of its limits (a higher --max-cost after hitting the cap...)."""
        task = await self.store.tasks.get(ref)
        changed = overrides.apply(task, self.config()) if overrides is not None else {}
        if TaskStatus(task.status) not in TASK_FINAL:
            raise ParheliaError("E603", f"task {task.id} is {task.status}; only completed, "
                                        "failed or cancelled tasks can be retried")

        sources = _flagged(task.option_sources, changed)

        def unit(tx: Tx) -> TaskRow:
            return transition(
                tx, task.id, TaskStatus.PENDING, event_type="task_retried",
                message=f"retry of task {task.id} in a fresh session"
                + "".join(f", {k} {v}" for k, v in changed.items()), reason="retry",
                data={"overrides": changed},
                session_id=None, container_id=None, restarts=0, started_at=None,
                result_subtype="", result_is_error=False, result_text="",
                result_exit_code=None, result_error_code="", result_error_message="",
                last_tool="", **changed, **sources)

        row = await self.store.write(unit)
        self.dispatcher.kick()
        return row

    # -- workspace, logs and results ------------------------------------------------

    async def upload(self, path: Path, include_secret: Sequence[str] = (),
                     conversation: Conversation | None = None,
                     progress: Report | None = None) -> workspace.Upload:
        return await asyncio.to_thread(workspace.upload, self.volume, path,
                                       self.paths.state_dir / "statcache", include_secret,
                                       conversation, progress)

    async def logs(self, ref: str, *, follow: bool, offset: int = 0
                   ) -> AsyncIterator[tuple[str, bytes, int]]:
        """The agent's raw stream of every container of a task, oldest first:
        (container id, chunk, offset after the chunk). With ``follow``, until the task ends."""
        task = await self.store.tasks.get(ref)
        positions: dict[str, int] = {}
        while True:
            containers = sorted(await self.store.containers.list(task_id=task.id, limit=1000),
                                key=lambda c: c.created_at)
            for c in containers:
                start = positions.setdefault(c.id, offset if c is containers[0] else 0)
                path = self.paths.volume_dir / "logs" / c.id / "agent.jsonl"
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
            raise ParheliaError(task.status_code, f"task {task.id}'s result was not saved, so "
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
