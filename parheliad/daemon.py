"""Startup and shutdown of parheliad: components started in order, stopped in reverse.

Lifecycle::

    guard (dial socket, flock, stale socket, pid file)
    -> store (migrate, writer) + event bus + instance id
    -> the parts, built and wired by parheliad.wiring.compose: runtime, notifier,
       then the API server (binds the socket), started in that order
    -> READY=1 ... wait for SIGTERM/SIGINT/Shutdown RPC ... STOPPING=1
       (SIGHUP meanwhile re-reads the configuration: DaemonContext.reload_config)
    -> components stopped in reverse (API first: watch streams end, server stops)
    -> store flushed and closed -> socket, pid file and lock released -> exit 0

To add a component, give it ``name``, ``async start()`` and ``async stop()``, build it
in :func:`parheliad.wiring.compose` with what it uses, and list it among the components.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
from pathlib import Path

import structlog

from parhelia.errors import ParheliaError
from parhelia.paths import Paths
from parheliad.config import Config, db_path
from parheliad.context import DaemonContext
from parheliad.core.events import EventBus
from parheliad.instance import InstanceGuard, StartupRefused
from parheliad.sdnotify import sd_notify
from parheliad.store import Store, open_store
from parheliad.store.clock import now_us
from parheliad.wiring import Component, compose

log = structlog.get_logger(__name__)

INSTANCE_ID_KEY = "daemon.instance_id"
STOP_TIMEOUT_S = 30.0


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
        self._context: DaemonContext | None = None
        self._reloads: set[asyncio.Task[None]] = set()

    def request_stop(self) -> None:
        """Begin a clean shutdown (signal handlers, the Shutdown RPC). Idempotent."""
        if not self._stop.is_set():
            log.info("daemon.stop_requested")
            self._stop.set()

    def request_reload(self) -> None:
        """SIGHUP: re-read the configuration, as `parhelia daemon reload` does (ignored
        until the daemon has started)."""
        if self._context is None:
            return
        task = asyncio.get_running_loop().create_task(self._reload(self._context))
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    @staticmethod
    async def _reload(ctx: DaemonContext) -> None:
        try:
            await ctx.reload_config()
        except ParheliaError as exc:
            log.error("config.reload_refused", code=exc.code, reason=exc.message)
        except Exception:
            log.exception("config.reload_failed")

    async def run(self) -> int:
        """Serve until asked to stop; the process exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
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
        parts = compose(self.paths, self.config, store, self._bus, instance_id=instance_id,
                        started_at_us=started_at, socket=self.socket,
                        request_shutdown=self.request_stop)
        ctx = self._context = parts.context
        for component in parts.components:
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
