"""Upload config bundles and keep them current for dispatch.

``ConfigSync.sync`` plans a bundle (:mod:`.builder`), reports what would be sent, and
unless it is a dry run stores it: file contents as blobs of the checkpoint CAS
(written only when absent), the manifest at ``config/<bundle id>.json`` (written only
when absent). An unchanged configuration therefore re-syncs by writing nothing.

``ConfigSync.for_dispatch`` is the dispatcher's hook: it returns the bundle id for
the worker spec and the ``sync.pass_env`` values for the worker's environment. It
re-plans only when something it read last time changed (a stat check of every file
and directory it read, plus the sync settings and PATH), so a task whose config did
not change costs a few ``stat`` calls. The values of ``secret_env`` live only in this
process's memory: never in the spec, the database, an event or a log line.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from parhelia.bundle import Bundle, BundleFile, check_id, save_bundle
from parhelia.checkpoint.cas import BlobStore
from parhelia.progress import BYTES, FILES, Report, ignore
from parhelia.volume import Volume
from parheliad.config import Config
from parheliad.core.configsync.builder import (
    CommandExists,
    Exclusion,
    Plan,
    Rewrite,
    Source,
    build,
)
from parheliad.core.progress import Tracker
from parheliad.store.store import Store

log = structlog.get_logger(__name__)

ConfigBundle = Callable[[Mapping[str, str]], Awaitable[tuple[str | None, dict[str, str]]]]
"""The dispatcher's hook: bundle id and ``sync.pass_env`` values for a worker, given the
environment those values come from (the backend's ``credentials().env``)."""


@dataclass(frozen=True)
class SentFile:
    path: str
    bytes: int
    new: bool


@dataclass
class SyncResult:
    bundle_id: str | None
    source_dir: str
    items: list[SentFile]
    exclusions: list[Exclusion]
    rewrites: list[Rewrite]
    warnings: list[str]
    passed_env: list[str]
    uploaded: bool
    secret_env: dict[str, str] = field(default_factory=dict, repr=False)
    mcp_servers: list[str] = field(default_factory=list)
    """The names of the MCP servers the bundle sends."""

    @property
    def files(self) -> int:
        return len(self.items)

    @property
    def bytes(self) -> int:
        return sum(i.bytes for i in self.items)

    @property
    def new_bytes(self) -> int:
        return sum(i.bytes for i in self.items if i.new)

    def summary(self, trigger: str) -> dict[str, Any]:
        """What the ``config_synced`` event records: counts and names, never values."""
        return {"bundle_id": self.bundle_id, "trigger": trigger, "files": self.files,
                "bytes": self.bytes, "new_bytes": self.new_bytes,
                "excluded": len(self.exclusions), "rewrites": len(self.rewrites),
                "warnings": len(self.warnings), "passed_env": self.passed_env,
                "source_dir": self.source_dir}


def local_command_exists(env: Mapping[str, str]) -> CommandExists:
    """Whether a local worker (same machine, the daemon's PATH) can run ``command``."""
    path = env.get("PATH", os.defpath)

    def exists(command: str) -> bool:
        if "/" in command:
            return os.path.isfile(command) and os.access(command, os.X_OK)
        return shutil.which(command, path=path) is not None

    return exists


def _bundle_of(plan: Plan) -> Bundle:
    return Bundle(
        files={p: BundleFile(p, len(i.data), i.digest, i.mode, i.template)
               for p, i in plan.items.items()},
        mcp_servers=plan.mcp_servers, env_names=sorted(plan.secret_env))


def _stat_key(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


@dataclass
class _Cached:
    key: tuple[Any, ...]
    stats: dict[str, tuple[int, int, int] | None]
    result: SyncResult

    def still_valid(self, key: tuple[Any, ...]) -> bool:
        return key == self.key and all(_stat_key(p) == s for p, s in self.stats.items())


class ConfigSync:
    def __init__(self, store: Store, config: Callable[[], Config],
                 env: Mapping[str, str] | None = None) -> None:
        self._store = store
        self._config = config
        self._env = dict(os.environ if env is None else env)
        self._cache: dict[int, _Cached] = {}
        self._lock = asyncio.Lock()

    @property
    def source(self) -> Source:
        return Source.from_env(self._env)

    async def sync(self, volume: Volume, *, dry_run: bool, command_exists: CommandExists,
                   trigger: str = "cli", tracker: Tracker | None = None) -> SyncResult:
        """Plan, report and (unless ``dry_run``) upload; always re-reads everything.
        ``tracker`` hears the steps and the bytes stored."""
        async with self._lock:
            return await self._sync(volume, dry_run, command_exists, trigger,
                                    tracker=tracker)

    async def for_dispatch(self, volume: Volume, env: Mapping[str, str]
                           ) -> tuple[str | None, dict[str, str]]:
        """The bundle id for a worker spec and the values for its environment."""
        async with self._lock:
            cached = self._cache.get(id(volume))
            if cached is not None and await asyncio.to_thread(cached.still_valid,
                                                              self._key(env)):
                return cached.result.bundle_id, dict(cached.result.secret_env)
            result = await self._sync(volume, False, local_command_exists(env), "dispatch",
                                      env=env)
            return result.bundle_id, dict(result.secret_env)

    def _key(self, env: Mapping[str, str]) -> tuple[Any, ...]:
        cfg = self._config().sync
        source = self.source
        return (tuple(cfg.pass_env), tuple(cfg.exclude_mcp), env.get("PATH", ""),
                str(source.config_dir), str(source.global_json))

    async def _sync(self, volume: Volume, dry_run: bool, command_exists: CommandExists,
                    trigger: str, env: Mapping[str, str] | None = None,
                    tracker: Tracker | None = None) -> SyncResult:
        cfg = self._config().sync
        source = self.source
        if tracker is not None:
            tracker.phase("reading the Claude configuration", FILES)
        plan = await asyncio.to_thread(build, source, pass_env=list(cfg.pass_env),
                                       exclude_mcp=list(cfg.exclude_mcp),
                                       command_exists=command_exists)
        if tracker is not None:
            tracker.phase("checking the configuration" if dry_run
                          else "storing the configuration", BYTES)
        result = await asyncio.to_thread(self._store_plan, volume, plan, dry_run,
                                         tracker.report if tracker is not None else ignore)
        if dry_run:
            return result
        previous = self._cache.get(id(volume))
        changed = previous is None or previous.result.bundle_id != result.bundle_id
        stats = await asyncio.to_thread(lambda: {p: _stat_key(p) for p in plan.inputs})
        self._cache[id(volume)] = _Cached(self._key(env if env is not None else self._env),
                                          stats, result)
        if trigger != "dispatch" or changed:
            await self._store.events.append(
                "config_synced", _message(result), data=result.summary(trigger))
            log.info("config synced", bundle_id=result.bundle_id, files=result.files,
                     new_bytes=result.new_bytes, excluded=len(result.exclusions),
                     trigger=trigger)
        return result

    @staticmethod
    def _store_plan(volume: Volume, plan: Plan, dry_run: bool,
                    progress: Report = ignore) -> SyncResult:
        store = BlobStore(volume)
        bundle = None if plan.empty else _bundle_of(plan)
        items: list[SentFile] = []
        seen: set[str] = set()
        total = sum(len(i.data) for i in plan.items.values())
        done = 0
        for path in sorted(plan.items):
            item = plan.items[path]
            done += len(item.data)
            progress(done, total)
            digest = item.digest
            if dry_run:
                new = digest not in seen and not store.has(digest)
            else:
                new = store.put_bytes(item.data).written > 0
            seen.add(digest)
            items.append(SentFile(path, len(item.data), new))
        uploaded = False
        if bundle is not None and not dry_run:
            save_bundle(volume, bundle)
            uploaded = True
        if bundle is not None:
            check_id(bundle.id)
        return SyncResult(
            bundle_id=bundle.id if bundle is not None else None,
            source_dir=str(plan.source.config_dir), items=items,
            exclusions=list(plan.exclusions), rewrites=list(plan.rewrites),
            warnings=list(plan.warnings), passed_env=sorted(plan.secret_env),
            uploaded=uploaded, secret_env=dict(plan.secret_env),
            mcp_servers=sorted(plan.mcp_servers))


def _message(result: SyncResult) -> str:
    if result.bundle_id is None:
        return "no Claude configuration to sync"
    return (f"{result.bundle_id}: {result.files} files, {result.bytes} bytes "
            f"({result.new_bytes} new), {len(result.exclusions)} left out")
