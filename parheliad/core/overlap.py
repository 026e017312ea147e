"""Overlap warnings: two live tasks of the same repository that changed the same paths.

Each task's changed paths are what its newest checkpoint changed against its own base
(checkpoint zero, as `task diff` shows them). After every checkpoint (or rollback) of
a live task, its paths are compared with those of the other live tasks of the same
repository (the same uploaded directory, or the same ``--repo`` URL). A new or changed
overlap records one ``overlap_detected`` event for each of the two tasks; the current
overlaps ride on the task views (``Task.overlaps``) of `task show`, `task list` and
`top`. A task that ends (or is deleted) leaves every overlap.

The state is in memory: at start the monitor seeds what was already reported from the
event log (so a restart does not report the same overlap again), then compares every
live task once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from parhelia.errors import ParheliaError
from parheliad.core.events import EventBus, Subscription
from parheliad.core.results import TaskChanges
from parheliad.core.states import TASK_FINAL, TaskStatus
from parheliad.store import EventFilter, Store
from parheliad.store.rows import TaskRow
from parheliad.store.tx import Tx

log = structlog.get_logger(__name__)

EVENT = "overlap_detected"
MAX_PATHS = 50
"""Paths carried by a task view or an event (``path_count`` says how many in all)."""
MESSAGE_PATHS = 3
MESSAGE_PATH_CHARS = 80
LIVE = tuple(s.value for s in TaskStatus if s not in TASK_FINAL)
_ENDS = ("task_completed", "task_failed", "task_cancelled", "task_deleted")
_CHANGES = ("checkpoint_created", "checkpoint_rolled_back")

Changes = Callable[[str], Awaitable[tuple[TaskRow, TaskChanges]]]


@dataclass(frozen=True)
class Overlap:
    task_id: str
    """The other task."""
    paths: tuple[str, ...]
    """Every path both changed, sorted."""


def repository(task: TaskRow) -> str:
    """What makes two tasks "of the same repository" ("" for an empty workspace)."""
    if task.source_repo_url:
        return "url:" + task.source_repo_url
    if task.workspace_path:
        return "dir:" + task.workspace_path
    return ""


def _short(path: str) -> str:
    """A path for an event message: at most MESSAGE_PATH_CHARS characters (the CLI
    escapes control characters when it prints messages)."""
    if len(path) <= MESSAGE_PATH_CHARS:
        return path
    keep = MESSAGE_PATH_CHARS - 3
    return path[: keep // 2] + "..." + path[-(keep - keep // 2):]


def message(other: str, paths: Sequence[str]) -> str:
    shown = ", ".join(_short(p) for p in paths[:MESSAGE_PATHS])
    more = f" and {len(paths) - MESSAGE_PATHS} more" if len(paths) > MESSAGE_PATHS else ""
    return f"task {other} also changed {len(paths)} of the same path(s): {shown}{more}"


class OverlapMonitor:
    """Follows checkpoints and task ends on the event bus (a daemon component)."""

    name = "overlap"

    def __init__(self, store: Store, bus: EventBus, changes: Changes) -> None:
        self._store = store
        self._bus = bus
        self._changes = changes
        self._paths: dict[str, tuple[str, frozenset[str]]] = {}
        """task id -> (its newest checkpoint, the paths it changed by then)"""
        self._overlaps: dict[str, dict[str, tuple[str, ...]]] = {}
        self._reported: dict[tuple[str, str], tuple[int, tuple[str, ...]]] = {}
        """(task, other) -> (path count, first MAX_PATHS paths) as last reported"""
        self._sub: Subscription | None = None
        self._loop: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def overlaps(self, task_id: str) -> list[Overlap]:
        """The current overlaps of ``task_id``, by the other task's id."""
        return [Overlap(other, paths) for other, paths
                in sorted(self._overlaps.get(task_id, {}).items())]

    async def start(self) -> None:
        self._sub = self._bus.subscribe(EventFilter(types=(*_CHANGES, *_ENDS)))
        self._loop = asyncio.create_task(self._run(self._sub), name="overlap")

    async def stop(self) -> None:
        if self._sub is not None:
            self._sub.close()
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop

    async def _run(self, sub: Subscription) -> None:
        try:
            await self._seed()
            for task in await self._store.tasks.list(LIVE, limit=10_000):
                await self._guarded(task.id)
        except Exception:
            log.exception("overlap.start_failed")
        async for event in sub:
            if event.task_id is None:
                continue
            if event.type in _ENDS:
                self._forget(event.task_id)
            else:
                await self._guarded(event.task_id)

    async def _seed(self) -> None:
        """What was reported before a restart, from the event log."""
        for row in await self._store.events.list(EventFilter(types=(EVENT,)), limit=10_000):
            data = row.data
            other, paths, count = (data.get("other_task_id"), data.get("paths"),
                                   data.get("path_count"))
            if row.task_id and isinstance(other, str) and isinstance(paths, list) \
                    and isinstance(count, int):
                self._reported[(row.task_id, other)] = (count, tuple(str(p) for p in paths))

    async def _guarded(self, task_id: str) -> None:
        try:
            async with self._lock:
                await self._update(task_id)
        except Exception:
            log.exception("overlap.update_failed", task_id=task_id)

    async def _latest(self, task: TaskRow) -> str | None:
        if task.session_id is None:
            return None
        session = await self._store.sessions.find(task.session_id)
        return session.latest_checkpoint_id if session is not None else None

    async def _changed(self, task: TaskRow) -> frozenset[str] | None:
        """The paths ``task`` changed, from its newest checkpoint (remembered per
        checkpoint: loading and diffing two manifests of a large tree takes seconds)."""
        latest = await self._latest(task)
        if latest is None:
            return None
        known = self._paths.get(task.id)
        if known is not None and known[0] == latest:
            return known[1]
        try:
            _, changes = await self._changes(task.id)
        except (ParheliaError, OSError, ValueError):
            return None  # not run yet, result unsaved, manifest not on this machine...
        paths = frozenset(c.path for c in changes.tree.changes)
        self._paths[task.id] = (latest, paths)
        return paths

    async def _update(self, task_id: str) -> None:
        task = await self._store.tasks.find(task_id)
        if task is None or task.status not in LIVE or not repository(task):
            self._forget(task_id)
            return
        repo = repository(task)
        others = [o for o in await self._store.tasks.list(LIVE, limit=10_000)
                  if o.id != task_id and repository(o) == repo]
        if not others:
            return  # alone in its repository: nothing to compare, nothing computed
        mine = await self._changed(task)
        if mine is None:
            return
        for other in others:
            theirs = await self._changed(other)
            if theirs is not None:
                await self._set(task, other, tuple(sorted(mine & theirs)))

    async def _set(self, task: TaskRow, other: TaskRow, both: tuple[str, ...]) -> None:
        if not both:
            self._overlaps.get(task.id, {}).pop(other.id, None)
            self._overlaps.get(other.id, {}).pop(task.id, None)
            return
        self._overlaps.setdefault(task.id, {})[other.id] = both
        self._overlaps.setdefault(other.id, {})[task.id] = both
        key = (len(both), both[:MAX_PATHS])
        if self._reported.get((task.id, other.id)) == key:
            return
        self._reported[(task.id, other.id)] = self._reported[(other.id, task.id)] = key

        def record(tx: Tx) -> None:
            for this, that in ((task, other), (other, task)):
                tx.events.append(
                    EVENT, message(that.id, both), task_id=this.id,
                    session_id=this.session_id,
                    data={"other_task_id": that.id, "paths": list(both[:MAX_PATHS]),
                          "path_count": len(both)})

        await self._store.write(record)
        log.info("overlap.detected", task_id=task.id, other_task_id=other.id,
                 path_count=len(both))

    def _forget(self, task_id: str) -> None:
        self._paths.pop(task_id, None)
        for other in self._overlaps.pop(task_id, {}):
            self._overlaps.get(other, {}).pop(task_id, None)
