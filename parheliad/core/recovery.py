"""Automatic recovery: a worker that died without finishing its task is replaced.

The task moves to ``recovering`` (one restart counted), and after a backoff
(``recovery.backoff_seconds`` doubling up to ``backoff_max_seconds``) a new container
resumes the same session from its latest checkpoint with the conversation restored.
After ``recovery.max_restarts`` the task fails with the reason. Backoff timers live in
memory; at start, every ``recovering`` task without a live container is due at once.

Never two containers for one task: before a replacement is dispatched, the backend is
asked whether the container being replaced still runs (a dead worker's terminate may
have failed, a SIGKILLed daemon may have died before it); if it does, it is terminated
first, and while that fails the task waits (``container_still_running`` event, retried
every ``TERMINATE_RETRY_SECONDS``). This check asks the backend, so it holds across
daemon restarts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import structlog

from parheliad.backends.base import Backend
from parheliad.config import Config
from parheliad.core.dispatcher import Dispatcher
from parheliad.core.states import CONTAINER_LIVE, TaskStatus
from parheliad.core.tasks import fail_task, transition
from parheliad.store.store import Store
from parheliad.store.tx import Tx

log = structlog.get_logger(__name__)

_NO_SLOT_RETRY_SECONDS = 1.0
_ERROR_RETRY_SECONDS = 10.0
TERMINATE_RETRY_SECONDS = 5.0
TERMINATE_WAIT_SECONDS = 10.0


class _Blocked(Exception):
    """The container being replaced still runs and could not be ended."""


class Recovery:
    def __init__(self, store: Store, dispatcher: Dispatcher, config: Callable[[], Config],
                 backends: Mapping[str, Backend] | None = None) -> None:
        self._store = store
        self._dispatcher = dispatcher
        self._config = config
        self._backends = backends or {}
        self._blocked: set[str] = set()
        """Containers whose still-running was reported (one event each)."""
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        live = {c.task_id for c in await self._store.containers.list(
            states=[s.value for s in CONTAINER_LIVE], limit=100000)}
        for task in await self._store.tasks.list([TaskStatus.RECOVERING.value], limit=100000):
            if task.id not in live:
                self._schedule(task.id, 0)
        # A container's end and its task's recovery are two units: a daemon that died
        # between them left a running task whose container has ended. Nothing else
        # looks at such a task again (every loop watches live containers), so hand it
        # to recovery now.
        for task in await self._store.tasks.list([TaskStatus.RUNNING.value], limit=100000):
            c = await self._store.containers.find(task.container_id) \
                if task.container_id else None
            if c is not None and c.state not in CONTAINER_LIVE:
                await self.on_lost(task.id, c.id, c.reason or f"its container {c.state}")

    async def stop(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for t in list(self._running):
            t.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def on_lost(self, task_id: str, container_id: str, reason: str,
                      counts_restart: bool = True) -> None:
        """A container of ``task_id`` ended without a result: recover or give up. A worker
        lost through no fault of its own (``counts_restart`` False: its backend evicted
        it) is recovered without counting a restart."""
        cfg = self._config().recovery

        def unit(tx: Tx) -> int | None:
            task = tx.tasks.get(task_id)
            # Only a running task: a recovering one whose container is this one was
            # handed over already (the end of a container may be reported twice, e.g. by
            # the exit check and by the start-up sweep below), and counts one restart.
            if task is None or task.container_id != container_id or \
                    task.status != TaskStatus.RUNNING:
                return None
            if not counts_restart:
                transition(tx, task_id, TaskStatus.RECOVERING, reason=reason[:300],
                           data={"restart": task.restarts, "container_id": container_id,
                                 "counted": False})
                return 0
            if task.restarts >= cfg.max_restarts:
                fail_task(tx, task_id, "E602",
                          f"the worker stopped ({reason}) and the {cfg.max_restarts} automatic "
                          "restarts allowed by recovery.max_restarts are used up; continue with "
                          f"`parhelia resume {task.session_id}`")
                return None
            restarts = task.restarts + 1
            transition(tx, task_id, TaskStatus.RECOVERING, reason=reason[:300],
                       data={"restart": restarts, "container_id": container_id},
                       restarts=restarts)
            return restarts

        restarts = await self._store.write(unit)
        if restarts is None:
            return
        delay = min(cfg.backoff_seconds * (2 ** max(restarts - 1, 0)), cfg.backoff_max_seconds)
        log.warning("recovering task", task_id=task_id, restart=restarts, delay=delay)
        self._schedule(task_id, delay)

    def _schedule(self, task_id: str, delay: float) -> None:
        old = self._timers.pop(task_id, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[task_id] = loop.call_later(delay, self._fire, task_id)

    def _fire(self, task_id: str) -> None:
        self._timers.pop(task_id, None)
        t = asyncio.create_task(self._resume(task_id), name=f"recover-{task_id}")
        self._running.add(t)
        t.add_done_callback(self._running.discard)

    async def _resume(self, task_id: str) -> None:
        try:
            await self._previous_ended(task_id)
        except _Blocked:
            self._schedule(task_id, TERMINATE_RETRY_SECONDS)
            return
        try:
            started = await self._dispatcher.dispatch_task(task_id)
        except Exception:
            # Never give up silently: the task would sit in "recovering" until a restart.
            log.exception("recovery dispatch failed; trying again", task_id=task_id)
            self._schedule(task_id, _ERROR_RETRY_SECONDS)
            return
        if started is None:  # no free slot (or budget): try again shortly
            self._schedule(task_id, _NO_SLOT_RETRY_SECONDS)

    async def _previous_ended(self, task_id: str) -> None:
        """Return once the task's replaced container no longer runs on its backend
        (terminating it if it does); raise ``_Blocked`` while it still runs."""
        if not self._backends:
            return
        task = await self._store.tasks.find(task_id)
        c = await self._store.containers.find(task.container_id) \
            if task is not None and task.container_id else None
        backend = self._backends.get(c.backend) if c is not None else None
        if c is None or backend is None or not c.backend_id or c.state in CONTAINER_LIVE:
            return  # nothing launched, or still live: the dispatcher's own checks apply
        try:
            if not (await backend.status(c.backend_id, c.id)).running:
                self._blocked.discard(c.id)
                return
            await backend.terminate(c.backend_id, grace_seconds=0.0)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + TERMINATE_WAIT_SECONDS  # Modal's ends asynchronously
            while (await backend.status(c.backend_id, c.id)).running:
                if loop.time() >= deadline:
                    break
                await asyncio.sleep(0.5)
            else:
                self._blocked.discard(c.id)
                return
            detail = "it was asked to terminate and has not ended yet"
        except Exception as exc:
            detail = f"it could not be terminated: {getattr(exc, 'message', None) or exc!r}"
        log.warning("replaced container still runs; recovery waits", task_id=task_id,
                    container_id=c.id, detail=detail)
        if c.id not in self._blocked:
            self._blocked.add(c.id)
            await self._store.events.append(
                "container_still_running",
                f"{c.backend} {c.backend_id} still runs although it was given up ({detail}); "
                f"task {task_id} gets no new container until it has ended (asked again every "
                f"{TERMINATE_RETRY_SECONDS:g}s until it ends, and the task resumes then). "
                "Recovery: nothing to do if the backend lets it be terminated; else end it "
                "with the backend's own tools (for Modal, its dashboard)",
                level="error", task_id=task_id, session_id=c.session_id, container_id=c.id,
                data={"backend": c.backend, "backend_id": c.backend_id})
        raise _Blocked
