"""Startup and shutdown of parheliad: components started in order, stopped in reverse.

Lifecycle::

    guard (dial socket, flock, stale socket, pid file)
    -> store (migrate, writer) + event bus + instance id + task service
    -> components: core_components(ctx)..., then the API server (binds the socket)
    -> READY=1 ... wait for SIGTERM/SIGINT/Shutdown RPC ... STOPPING=1
    -> components stopped in reverse (API first: watch streams end, server stops)
    -> store flushed and closed -> socket, pid file and lock released -> exit 0

To add a component (scheduler, dispatcher, listener...), give it ``name``,
``async start()`` and ``async stop()`` and return it from :func:`core_components`;
it receives the :class:`~parheliad.context.DaemonContext` and may set its hooks
(``ctx.tasks.runtime``, ``ctx.tasks.on_created``, ``ctx.backend_status``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Protocol

import structlog

from parhelia.errors import ParheliaError
from parhelia.paths import Paths
from parheliad.api.server import ApiServer
from parheliad.backends.registry import BackendState
from parheliad.config import Config, db_path
from parheliad.context import DaemonContext
from parheliad.core.events import EventBus
from parheliad.core.notify import Notifier
from parheliad.core.overlap import OverlapMonitor
from parheliad.core.runtime import Runtime
from parheliad.core.tasks import TaskService
from parheliad.instance import InstanceGuard, StartupRefused
from parheliad.sdnotify import sd_notify
from parheliad.store import Store, open_store
from parheliad.store.clock import now_us

log = structlog.get_logger(__name__)

INSTANCE_ID_KEY = "daemon.instance_id"
STOP_TIMEOUT_S = 30.0
API_GRACE_S = 5.0


class Component(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def core_components(ctx: DaemonContext) -> list[Component]:
    """The daemon's engines, started after the store and before the API, in this order."""
    runtime = Runtime(ctx.store, ctx.paths, lambda: ctx.config, ctx.instance_id, ctx.bus)
    ctx.runtime = runtime

    async def backend_status() -> list[BackendState]:
        return runtime.registry.states()

    ctx.backend_status = backend_status
    ctx.tasks.runtime = runtime
    ctx.tasks.on_created = runtime.kick
    ctx.tasks.admit = runtime.budget.admission
    overlap = OverlapMonitor(ctx.store, ctx.bus, runtime.changes)
    ctx.overlaps = overlap.overlaps
    return [RuntimeComponent(runtime), Notifier(ctx.store, ctx.bus, lambda: ctx.config),
            overlap]


class RuntimeComponent:
    """Backends, dispatcher, listener, recovery and the scheduler, as one component."""

    name = "runtime"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def start(self) -> None:
        await self.runtime.start()

    async def stop(self) -> None:
        await self.runtime.stop()


def new_instance_id() -> str:
    """The owner tag of this daemon's containers (``parhelia-owner=...``)."""
    return "phd-" + secrets.token_hex(6)


class Daemon:
    def __init__(self, paths: Paths, config: Config, *, socket: Path | None = None) -> None:
        self.paths = paths
        self.config = config
        self.socket = socket or paths.socket
        self._stop = asyncio.Event()
        self._guard = InstanceGuard(paths, self.socket)
        self._started: list[Component] = []
        self._store: Store | None = None
        self._bus = EventBus()

    def request_stop(self) -> None:
        """Begin a clean shutdown (signal handlers, the Shutdown RPC). Idempotent."""
        if not self._stop.is_set():
            log.info("daemon.stop_requested")
            self._stop.set()

    async def run(self) -> int:
        """Serve until asked to stop; the process exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            self._guard.acquire()
        except StartupRefused as exc:
            log.error("daemon.refused", reason=str(exc))
            print(f"parheliad: {exc}", file=sys.stderr, flush=True)
            return 1
        try:
            await self._start()
        except (StartupRefused, ParheliaError) as exc:
            log.error("daemon.start_failed", reason=str(exc))
            print(f"parheliad: {exc}", file=sys.stderr, flush=True)
            await self._shutdown()
            return 1
        except Exception as exc:
            log.exception("daemon.start_failed")
            print(f"parheliad: could not start: {type(exc).__name__}: {exc}", file=sys.stderr,
                  flush=True)
            await self._shutdown()
            return 1
        sd_notify(f"READY=1\nSTATUS=serving unix://{self.socket}\nMAINPID={os.getpid()}")
        await self._stop.wait()
        sd_notify("STOPPING=1\nSTATUS=shutting down")
        await self._shutdown()
        return 0

    async def _start(self) -> None:
        started_at = now_us()
        self._store = store = await open_store(db_path(self.config, self.paths),
                                               on_commit=self._bus.publish)
        instance_id = await store.kv.get_or_create(INSTANCE_ID_KEY, new_instance_id)
        ctx = DaemonContext(
            paths=self.paths, config=self.config, store=store, bus=self._bus,
            tasks=TaskService(store, config=lambda project: ctx.config_for(project)),
            instance_id=instance_id, started_at_us=started_at, socket=self.socket,
            request_shutdown=self.request_stop)
        for component in [*core_components(ctx), ApiServer(ctx, self.socket, API_GRACE_S)]:
            log.debug("daemon.component_starting", component=component.name)
            await component.start()
            self._started.append(component)
        await store.events.append("daemon_started", f"parheliad {ctx.version} started",
                                  data={"pid": os.getpid(), "version": ctx.version,
                                        "instance_id": instance_id,
                                        "socket": str(self.socket)})
        log.info("daemon.ready", pid=os.getpid(), version=ctx.version, socket=str(self.socket),
                 database=str(store.path), instance_id=instance_id)

    async def _shutdown(self) -> None:
        store = self._store
        if store is not None and self._started:
            try:
                await store.events.append("daemon_stopping", "parheliad is shutting down",
                                          data={"pid": os.getpid()})
            except Exception:
                log.exception("daemon.stop_event_failed")
        for component in reversed(self._started):
            try:
                await asyncio.wait_for(component.stop(), STOP_TIMEOUT_S)
            except Exception:
                log.exception("daemon.component_stop_failed", component=component.name)
        self._started.clear()
        self._bus.close()
        if store is not None:
            try:
                await store.close()
            except Exception:
                log.exception("daemon.store_close_failed")
            self._store = None
        self._guard.release()
        log.info("daemon.stopped")
