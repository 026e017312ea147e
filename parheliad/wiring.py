"""The composition root: every part of the daemon is built and wired here, once.

Parts take what they use in their constructor (the store, the volume, a ``kick``, a
``stop``...) and nothing assigns a collaborator after construction. Where two parts
need each other (the budget asks the dispatcher for a pass; the dispatcher asks the
budget before each claim), the one built first receives a closure over the name of the
one built after it; each such closure is named below
(docs/adr/0024-composition-root.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from parhelia import envfile
from parhelia.paths import Paths
from parhelia.volume import LocalVolume
from parheliad.api.server import ApiServer
from parheliad.backends.base import Backend
from parheliad.backends.registry import Backends, BackendState, build_backends
from parheliad.config import Config, LiveConfig
from parheliad.context import DaemonContext
from parheliad.core import sshkeys
from parheliad.core.budget import Budget
from parheliad.core.checkpoints import CheckpointOps
from parheliad.core.configsync import ConfigSync
from parheliad.core.dispatcher import Dispatcher
from parheliad.core.events import EventBus
from parheliad.core.health import HealthMonitor
from parheliad.core.listener import Listener
from parheliad.core.notify import Notifier
from parheliad.core.overlap import OverlapMonitor
from parheliad.core.pullrequest import PullRequests
from parheliad.core.reconciler import Reconciler
from parheliad.core.recovery import Recovery
from parheliad.core.repo_source import RepoSources
from parheliad.core.runtime import Runtime
from parheliad.core.sessions import SessionOps
from parheliad.core.settle import Settler
from parheliad.core.stopper import Stopper
from parheliad.core.tasks import TaskService
from parheliad.environments.builds import ImageBuilds
from parheliad.environments.service import EnvironmentResolver
from parheliad.store import Store

API_GRACE_S = 5.0


class Component(Protocol):
    """A part the daemon starts (in order, after the store) and stops (in reverse)."""

    @property
    def name(self) -> str: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def build_runtime(store: Store, paths: Paths, config: Callable[[], Config], owner_tag: str,
                  bus: EventBus, *, backends: Mapping[str, Backend] | None = None,
                  environ: Mapping[str, str] | None = None,
                  sync_claude_config: bool = True) -> Runtime:
    """The task runtime's parts, built in dependency order. ``backends`` replaces the
    configured ones (tests); without ``sync_claude_config`` workers get no bundle of
    the user's Claude config (tests that must not read it)."""
    env = dict(os.environ if environ is None else environ)
    volume = LocalVolume(paths.volume_dir)
    registry = build_backends(config(), paths, env, owner_tag) if backends is None \
        else Backends(built=dict(backends))
    built = registry.built

    # Late-bound: the listener is built after the stopper and the dispatcher after the
    # budget; these are called only once the daemon runs, when both exist.
    async def check_exits() -> None:
        await listener.check_exits()

    def kick() -> None:
        dispatcher.kick()

    stopper = Stopper(store, built, config, check_exits,
                      cancel_launch=lambda cid: dispatcher.cancel_launch(cid))
    config_sync = ConfigSync(store, config)
    budget = Budget(store, config, stop=stopper.stop_later, kick=kick)

    images = ImageBuilds(store, config, paths.state_dir, kick=kick)
    repos = RepoSources(store, volume, paths, config, built, env, envfile.env_file(paths),
                        kick=kick)
    dispatcher = Dispatcher(
        store, registry, config, volume, owner_tag, budget_gate=budget.gate, images=images,
        config_bundle=(lambda env: config_sync.for_dispatch(volume, env))
        if sync_claude_config else None,
        on_unwanted=lambda c: stopper.stop_later(c, "cancel"),
        ssh_key=lambda sid: sshkeys.session_key(paths.state_dir, sid).public,
        prepare_source=repos.prepare)
    recovery = Recovery(store, dispatcher, config, built)
    settler = Settler(store, volume, on_lost=recovery.on_lost, on_settled=dispatcher.kick)
    listener = Listener(store, built, volume, budget, settler, launching=dispatcher.launching)
    health = HealthMonitor(store, built, config, listener, settler)
    reconciler = Reconciler(store, built, config, owner_tag, listener, settler,
                            stop=stopper.stop_stray)
    checkpoints = CheckpointOps(store, volume, paths, built, bus, config,
                                stop=stopper.stop, kick=dispatcher.kick)
    sessions = SessionOps(store, volume, built, config, state_dir=paths.state_dir,
                          check_exits=listener.check_exits, kick=dispatcher.kick)
    return Runtime(store=store, paths=paths, config=config, environ=env, volume=volume,
                   registry=registry, stopper=stopper, budget=budget, dispatcher=dispatcher,
                   recovery=recovery, listener=listener, config_sync=config_sync,
                   health=health, reconciler=reconciler, checkpoints=checkpoints,
                   sessions=sessions, repos=repos, scheduler=AsyncIOScheduler(timezone="UTC"),
                   images=images)


@dataclass(frozen=True)
class DaemonParts:
    context: DaemonContext
    components: list[Component]
    """Started in this order; the API server (it binds the socket) last."""


def compose(paths: Paths, config: Config, store: Store, bus: EventBus, *, instance_id: str,
            started_at_us: int, socket: Path, request_shutdown: Callable[[], None]
            ) -> DaemonParts:
    """The daemon's context and components, wired."""
    live = LiveConfig(config)  # what every part reads; `daemon reload` replaces it
    runtime = build_runtime(store, paths, live.get, instance_id, bus)
    tasks = TaskService(store, config=lambda project: ctx.config_for(project),
                        runtime=runtime, on_created=runtime.kick,
                        admit=runtime.budget.admission,
                        check_backend=runtime.check_backend,
                        environments=EnvironmentResolver(runtime.volume))

    async def backend_status() -> list[BackendState]:
        return runtime.registry.states()

    overlap = OverlapMonitor(store, bus, runtime.changes)
    pull_requests = PullRequests(store, bus, runtime.volume, live.get, runtime.environ,
                                 envfile.env_file(paths), paths.data_dir, runtime.changes)
    ctx = DaemonContext(
        paths=paths, live=live, store=store, bus=bus, tasks=tasks,
        instance_id=instance_id, started_at_us=started_at_us, socket=socket,
        request_shutdown=request_shutdown, backend_status=backend_status,
        overlaps=overlap.overlaps, runtime=runtime, pull_requests=pull_requests)
    return DaemonParts(ctx, [runtime, Notifier(store, bus, live.get), overlap,
                             pull_requests, ApiServer(ctx, socket, API_GRACE_S)])
