"""Stopping workers: the worker is asked to checkpoint and stop, and killed after a grace.

Used by the task service's cancel, the budget's enforcement, the dispatcher (a launch
whose task was cancelled meanwhile), rollbacks and session kills; the composition root
(:mod:`parheliad.wiring`) hands each of them this one stopper.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

import structlog

from parhelia.errors import ParheliaError
from parheliad.backends.base import Backend, BackendUnreachable
from parheliad.config import Config
from parheliad.core.states import CONTAINER_LIVE
from parheliad.store.rows import ContainerRow
from parheliad.store.store import Store

log = structlog.get_logger(__name__)

STOP_RETRY_MAX_S = 30.0


class Stopper:
    """``check_exits`` records what ended (the listener's); stops started in the
    background are cancelled by :meth:`close` at shutdown."""

    def __init__(self, store: Store, backends: Mapping[str, Backend],
                 config: Callable[[], Config], check_exits: Callable[[], Awaitable[None]],
                 cancel_launch: Callable[[str], bool] = lambda container_id: False) -> None:
        self._store = store
        self._backends = backends
        self._config = config
        self._check_exits = check_exits
        self._cancel_launch = cancel_launch
        """Abandons a launch still in flight (the dispatcher's): a container waiting for
        a GPU has no backend id to stop yet."""
        self.background: set[asyncio.Task[None]] = set()
        """Stops under way in the background (tests wait for them)."""
        self._stopping: set[str] = set()
        """Containers a stop is under way for (the reconciler does not start another)."""

    def stop_later(self, c: ContainerRow, reason: str, grace: float | None = None) -> None:
        """Start stopping ``c`` in the background (checkpoint, then killed after ``grace``,
        by default the configured cancel grace)."""
        if grace is None:
            grace = float(self._config().orchestrator.cancel_grace_seconds)
        self._stopping.add(c.id)  # under way from now on, before the task first runs
        self._spawn(self.stop(c, reason, grace))

    def stop_stray(self, c: ContainerRow, reason: str) -> bool:
        """The reconciler found ``c`` running for a task that wants no worker (a stop
        retried in the memory of a daemon that died): stop it, unless one is under way."""
        if c.id in self._stopping:
            return False
        self.stop_later(c, reason)
        return True

    async def stop(self, c: ContainerRow, reason: str, grace: float) -> None:
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
                    row = await self._store.containers.find(c.id)
                    if row is None or row.state not in CONTAINER_LIVE:
                        return
                    log.warning("stop not delivered, retrying", container_id=c.id,
                                error=exc.message, retry_in_s=delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, STOP_RETRY_MAX_S)
        finally:
            self._stopping.discard(c.id)

    async def _stop_once(self, c: ContainerRow, reason: str, grace: float) -> None:
        backend = self._backends.get(c.backend)
        if not c.backend_id and self._cancel_launch(c.id):
            log.info("launch in flight abandoned", container_id=c.id, reason=reason)
            return
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
            await self._check_exits()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        t = asyncio.create_task(coro)
        self.background.add(t)
        t.add_done_callback(self.background.discard)

    async def close(self) -> None:
        """Cancel the stops still under way (the daemon is shutting down)."""
        for t in list(self.background):
            t.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
