"""What the daemon's parts share: one ``DaemonContext`` built at startup.

Built by the composition root (:func:`parheliad.wiring.compose`) with the runtime and
the task service already wired; the API servicers read from it. No gRPC here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from parhelia import __version__
from parhelia.errors import ParheliaError
from parhelia.paths import Paths
from parheliad.backends.registry import BackendState
from parheliad.config import (
    Config,
    ConfigChange,
    LiveConfig,
    load_config,
    reloaded,
    to_jsonable,
)
from parheliad.core.events import EventBus
from parheliad.core.progress import ProgressHub
from parheliad.core.tasks import TaskService
from parheliad.store import Store

if TYPE_CHECKING:
    from parheliad.core.overlap import Overlap
    from parheliad.core.pullrequest import PullRequests
    from parheliad.core.runtime import Runtime

VERSION = __version__
log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ReloadReport:
    """What ``reload_config`` changed: applied live, and waiting for a restart."""

    applied: list[ConfigChange]
    needs_restart: list[ConfigChange]


async def no_backends() -> list[BackendState]:
    """Without a runtime there are no backends."""
    return []


def no_overlaps(task_id: str) -> list[Overlap]:
    """Without an overlap monitor nothing overlaps."""
    return []


@dataclass
class DaemonContext:
    paths: Paths
    live: LiveConfig
    """The configuration in use (``config``); ``reload_config`` replaces it."""
    store: Store
    bus: EventBus
    tasks: TaskService
    instance_id: str
    started_at_us: int
    socket: Path
    request_shutdown: Callable[[], None]
    """Ask the daemon to stop (as SIGTERM does); returns at once."""
    backend_status: Callable[[], Awaitable[list[BackendState]]] = field(
        default=no_backends)
    """Each backend with ``available()`` and its reason (the runtime's registry)."""
    overlaps: Callable[[str], list[Overlap]] = field(default=no_overlaps)
    """The live tasks of the same repository that changed the same paths as a task."""
    progress: ProgressHub = field(default_factory=ProgressHub)
    """Progress of long calls, for WatchOperation."""
    version: str = VERSION
    runtime: Runtime | None = None
    """Makes tasks run (dispatcher, listener, backends); None only where a test builds a
    context without one."""
    pull_requests: PullRequests | None = None
    """Pushes tasks' branches and opens their pull requests (`task pr`, `--pr`)."""

    def require_runtime(self) -> Runtime:
        """The runtime, for RPCs that need it; E500 while it is not running."""
        if self.runtime is None:
            raise ParheliaError("E500", "the task runtime is not running")
        return self.runtime

    @property
    def config(self) -> Config:
        return self.live.current

    async def reload_config(self) -> ReloadReport:
        """Re-read the user's configuration file and use it from now on, except the keys
        read only at start (E101/E401 on a bad file: nothing changes). The runtime
        re-times its periodic jobs; every other part reads the config when it acts."""
        new = await asyncio.to_thread(load_config, self.paths)
        used, applied, later = reloaded(self.config, new)
        self.live.current = used
        if self.runtime is not None:
            self.runtime.apply_config(used)

        def listed(changes: list[ConfigChange]) -> list[dict[str, object]]:
            return [{"key": c.key, "before": to_jsonable(c.before),
                     "after": to_jsonable(c.after)} for c in changes]

        await self.store.events.append(
            "config_reloaded", f"configuration re-read: {len(applied)} key(s) applied"
            + (f", {len(later)} wait for a restart" if later else ""),
            data={"applied": listed(applied), "needs_restart": listed(later)})
        log.info("config.reloaded", applied=[c.key for c in applied],
                 needs_restart=[c.key for c in later])
        return ReloadReport(applied, later)

    def require_pull_requests(self) -> PullRequests:
        if self.pull_requests is None:
            raise ParheliaError("E500", "pull requests are not available in this daemon")
        return self.pull_requests

    def config_for(self, project_dir: Path | None) -> Config:
        """The effective config for a request: the daemon's, plus a project file if any."""
        if project_dir is None:
            return self.config
        return load_config(self.paths, project_dir)
