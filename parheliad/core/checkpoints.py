"""The checkpoint lifecycle seen from the daemon: create, inspect, compare, verify,
roll back and garbage-collect (the format itself is ``parhelia.checkpoint``).

A running session is checkpointed by its worker (asked through the control path);
a stopped one from its last state on disk — the session's fixed workspace and
transcript, which the local backend keeps between incarnations.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from parhelia import __version__
from parhelia.checkpoint import (
    BlobStore,
    Manifest,
    VerifyReport,
    diff,
    git_state,
    lineage,
    load_manifest,
    restore,
    session_conversation,
    snapshot,
    verify,
)
from parhelia.checkpoint.cas import sweep_temp
from parhelia.checkpoint.diff import TreeDiff
from parhelia.checkpoint.manifest import base_of
from parhelia.checkpoint.statcache import stat_cache_path
from parhelia.errors import ParheliaError
from parhelia.paths import Paths
from parhelia.progress import BYTES
from parhelia.volume import BLOBS, BUNDLES, CHECKPOINTS, Volume, blob_digest, blob_key, manifest_key
from parheliad.backends.base import Backend
from parheliad.backends.local import session_dirs
from parheliad.config import Config
from parheliad.core import patches
from parheliad.core.events import EventBus
from parheliad.core.progress import Tracker
from parheliad.core.states import CONTAINER_LIVE, TaskStatus
from parheliad.core.tasks import index_checkpoint, transition
from parheliad.core.volsync import blob_refs
from parheliad.core.workspace import WORKSPACE_TRIGGER
from parheliad.store import EventFilter, Store
from parheliad.store.clock import now_us
from parheliad.store.rows import CheckpointRow, ContainerRow, SessionRow

log = structlog.get_logger(__name__)

MANUAL_TIMEOUT_S = 120.0
STOP_GRACE_S = 30.0
KEEP_UNCLAIMED_UPLOADS_US = 24 * 3600 * 1_000_000


@dataclass(frozen=True)
class Turn:
    role: str
    text: str


@dataclass
class GcReport:
    removed: list[str] = field(default_factory=list)
    blobs_removed: int = 0
    bytes_freed: int = 0
    temp_files_removed: int = 0


@dataclass(frozen=True)
class Rollback:
    safety: CheckpointRow | None
    restored: CheckpointRow
    resumed: bool


StopWorker = Callable[[ContainerRow, str, float], Awaitable[None]]


class CheckpointOps:
    """``volume`` is the daemon's local volume; ``stop`` stops a worker (checkpoint, then
    killed after a grace); ``kick`` asks the dispatcher for a pass."""

    def __init__(self, store: Store, volume: Volume, paths: Paths,
                 backends: Mapping[str, Backend], bus: EventBus, config: Callable[[], Config],
                 *, stop: StopWorker, kick: Callable[[], None]) -> None:
        self._store = store
        self.volume = volume
        self._paths = paths
        self._backends = backends
        self._bus = bus
        self._config = config
        self._stop = stop
        self._kick = kick

    async def manifest(self, cp: CheckpointRow) -> Manifest:
        return await asyncio.to_thread(load_manifest, self.volume, cp.session_id, cp.id)

    # -- create ---------------------------------------------------------------------

    async def create(self, session_ref: str, message: str, *, trigger: str = "manual"
                     ) -> CheckpointRow:
        session = await self._store.sessions.get(session_ref)
        container = await self._live_container(session)
        if container is not None and trigger == "manual":
            return await self._ask_worker(session, container, message)
        return await self.from_disk(session, trigger, message)

    async def _live_container(self, session: SessionRow) -> ContainerRow | None:
        if not session.current_container_id:
            return None
        c = await self._store.containers.find(session.current_container_id)
        return c if c is not None and c.state in CONTAINER_LIVE and c.backend_id else None

    async def _ask_worker(self, session: SessionRow, c: ContainerRow, message: str
                          ) -> CheckpointRow:
        backend = self._backends[c.backend]
        flt = EventFilter(types=("checkpoint_created", "checkpoint_failed"), container_id=c.id)
        with self._bus.subscribe(flt) as sub:
            await backend.control(c.backend_id, c.id, {"type": "checkpoint", "message": message})
            try:
                async with asyncio.timeout(MANUAL_TIMEOUT_S):
                    async for ev in sub:
                        data = json.loads(ev.data_json or "{}")
                        if data.get("trigger") != "manual" or data.get("message", "") != message:
                            continue
                        if ev.type == "checkpoint_failed":
                            raise ParheliaError("E600", f"the worker could not checkpoint: "
                                                        f"{data.get('error', 'unknown error')}")
                        return await self._store.checkpoints.get(str(data["checkpoint_id"]))
            except TimeoutError:
                pass
        raise ParheliaError("E600", f"the worker of session {session.id} did not checkpoint "
                                    f"within {MANUAL_TIMEOUT_S:.0f} s")

    def _session_dirs(self, session: SessionRow) -> tuple[Path, Path]:
        """Where the session's workspace and transcript are on this machine (a local
        worker's); a session that ran elsewhere has none here."""
        return session_dirs(self._paths, session.id)

    async def from_disk(self, session: SessionRow, trigger: str, message: str
                        ) -> CheckpointRow:
        """Checkpoint a stopped session from its workspace and transcript on disk."""
        workspace, config_dir = self._session_dirs(session)
        if not workspace.is_dir():
            if session.latest_checkpoint_id:
                raise ParheliaError("E600", f"session {session.id} has no workspace on this "
                                    f"machine; its last state is checkpoint "
                                    f"{session.latest_checkpoint_id}")
            raise ParheliaError("E600", f"session {session.id} has no workspace yet")
        parent = session.latest_checkpoint_id
        env: dict[str, Any] = {"parhelia_version": __version__,
                               "session_uuid": session.agent_session_id}
        previous: Manifest | None = None
        if parent:
            previous = await asyncio.to_thread(load_manifest, self.volume, session.id, parent)
            env = {**previous.environment, **env}

        def take() -> Manifest:
            return snapshot(workspace, volume=self.volume, session_id=session.id,
                            parent_id=parent, trigger=trigger, message=message,
                            stat_cache=stat_cache_path(workspace),
                            conversation=session_conversation(config_dir, workspace,
                                                              session.agent_session_id),
                            environment=env, git=git_state(workspace), previous=previous)

        manifest = await asyncio.to_thread(take)
        summary = manifest.summary()

        def unit(tx: Any) -> None:
            index_checkpoint(tx, session.id, "", summary)
            tx.events.append("checkpoint_created", f"{manifest.id} ({trigger})",
                             task_id=session.task_id, session_id=session.id,
                             data=summary.to_dict())
            task = tx.tasks.get(session.task_id)
            if task is not None and task.session_id == session.id and task.needs_user and \
                    task.status == TaskStatus.COMPLETED:
                # The result a worker could not save is saved now, from its workspace.
                tx.tasks.update(task.id, needs_user=False, status_code="",
                                status_reason=f"result saved from the workspace as "
                                              f"{manifest.id}",
                                result_error_code="", result_error_message="")
                tx.events.append("task_result_saved", f"result saved as {manifest.id}",
                                 task_id=task.id, session_id=session.id,
                                 data={"checkpoint_id": manifest.id})

        await self._store.write(unit)
        return await self._store.checkpoints.get(manifest.id)

    # -- inspect --------------------------------------------------------------------

    async def diff(self, a_ref: str, b_ref: str) -> tuple[Manifest, Manifest, TreeDiff]:
        a = await self.manifest(await self._store.checkpoints.get(a_ref))
        b = await self.manifest(await self._store.checkpoints.get(b_ref))
        return a, b, diff(a, b, ignore=(".git",))

    async def patch(self, a: Manifest, b: Manifest, *, with_text: bool = True
                    ) -> patches.Patch:
        """The patch (unless ``with_text`` is False) and line counts from ``a`` to ``b``."""
        return await asyncio.to_thread(patches.build, a, b, volume=self.volume,
                                       ignore=(".git",), with_text=with_text)

    async def turns_added(self, a: Manifest, b: Manifest) -> list[Turn]:
        return await asyncio.to_thread(_turns_added, BlobStore(self.volume), a, b)

    async def verify(self, cp_ref: str) -> VerifyReport:
        cp = await self._store.checkpoints.get(cp_ref)
        try:
            manifest = await self.manifest(cp)
        except ParheliaError as exc:
            report = VerifyReport(cp.id)
            report.invalid = exc.message
            return report
        return await asyncio.to_thread(verify, manifest, volume=self.volume)

    # -- rollback -------------------------------------------------------------------

    async def rollback(self, cp_ref: str, tracker: Tracker | None = None) -> Rollback:
        """``tracker`` hears the steps (verify, restore) and the bytes restored."""
        target = await self._store.checkpoints.get(cp_ref)
        session = await self._store.sessions.get(target.session_id)
        manifest = await self.manifest(target)
        if tracker is not None:
            tracker.phase(f"verifying {target.id}", BYTES)
        report = await asyncio.to_thread(verify, manifest, volume=self.volume)
        if not report.ok:
            raise ParheliaError("E600", f"checkpoint {target.id} failed verification ("
                                        f"{'; '.join(problems(report))}); nothing was changed")
        task = await self._store.tasks.get(session.task_id)
        running = task.status in (TaskStatus.RUNNING, TaskStatus.RECOVERING)
        if running:
            await self._store.write(lambda tx: transition(
                tx, task.id, TaskStatus.PAUSED, reason=f"rollback to {target.id}"))
            container = await self._live_container(session)
            if container is not None:
                await self._stop(container, "rollback", STOP_GRACE_S)
            session = await self._store.sessions.get(session.id)
            safety = (await self._store.checkpoints.get(session.latest_checkpoint_id)
                      if session.latest_checkpoint_id else None)
        else:
            try:
                safety = await self.from_disk(session, "safety",
                                              f"before rollback to {target.id}")
            except ParheliaError:
                safety = None  # nothing on disk newer than the checkpoints we have
        workspace, config_dir = self._session_dirs(session)
        # The files on disk no longer continue the worker's checkpoints: its next worker
        # must restore, never resume what was rolled back (parhelia.checkpoint.lineage).
        lineage.clear(lineage.lineage_path(workspace))
        if workspace.exists() or not running:
            if tracker is not None:
                tracker.phase(f"restoring {target.id}", BYTES)
            await asyncio.to_thread(
                restore, manifest, workspace, volume=self.volume,
                conversation=session_conversation(config_dir, workspace, session.agent_session_id)
                if manifest.conversation else None,
                progress=tracker.report if tracker is not None else None)

        def unit(tx: Any) -> bool:
            tx.sessions.update(session.id, latest_checkpoint_id=target.id)
            tx.events.append("checkpoint_rolled_back",
                             f"rolled back to {target.id}" +
                             (f" (safety checkpoint {safety.id})" if safety else ""),
                             task_id=session.task_id, session_id=session.id,
                             data={"checkpoint_id": target.id,
                                   "safety_checkpoint_id": safety.id if safety else None})
            if running:
                transition(tx, task.id, TaskStatus.PENDING, reason=f"rolled back to {target.id}")
                return True
            return False

        resumed = await self._store.write(unit)
        if resumed:
            self._kick()
        return Rollback(safety, target, resumed)

    # -- gc -------------------------------------------------------------------------

    async def gc(self, *, dry_run: bool) -> GcReport:
        cfg = self._config().checkpoint
        doomed = await self._doomed(cfg.keep_last, cfg.max_age_days)
        report = await asyncio.to_thread(self._sweep, doomed, dry_run)
        removed = set(report.removed)
        doomed = [cp for cp in doomed if cp.id in removed]
        if not dry_run and doomed:
            await self._unindex(doomed)
        return report

    async def _doomed(self, keep_last: int, max_age_days: float) -> list[CheckpointRow]:
        cutoff = now_us() - int(max_age_days * 86400 * 1_000_000)
        out: list[CheckpointRow] = []
        for session in await self._store.sessions.list(limit=1_000_000):
            cps = sorted(await self._store.checkpoints.list(session.id, limit=1_000_000),
                         key=lambda cp: cp.created_at, reverse=True)
            automatic = [cp for cp in cps if not cp.manual and cp.trigger != WORKSPACE_TRIGGER]
            out += [cp for cp in automatic[keep_last:]
                    if cp.created_at < cutoff and cp.id != session.latest_checkpoint_id]
        return out

    def _sweep(self, doomed: list[CheckpointRow], dry_run: bool) -> GcReport:
        """Remove the doomed manifests and every blob no other document names. A doomed
        checkpoint that is the base of a kept delta manifest is kept (with its blobs)."""
        doomed_keys = {manifest_key(cp.session_id, cp.id): cp.id for cp in doomed}
        kept: dict[str, Any] = {}
        for key in self.volume.list(CHECKPOINTS):
            if key.endswith(".json") and key not in doomed_keys:
                kept[key] = json.loads(self.volume.get(key))
        for key, raw in list(kept.items()):
            base = base_of(raw)
            if base is None:
                continue
            base_key = manifest_key(key.split("/")[1], base)  # checkpoints/<session>/...
            if doomed_keys.pop(base_key, None) is not None:
                kept[base_key] = json.loads(self.volume.get(base_key))
        report = GcReport(removed=[cp.id for cp in doomed
                                   if manifest_key(cp.session_id, cp.id) in doomed_keys])
        live: set[str] = set()
        for raw in kept.values():
            live |= set(blob_refs(raw))
        for key in self.volume.list(BUNDLES):
            if key.endswith(".json"):
                live |= set(blob_refs(json.loads(self.volume.get(key))))
        horizon = time.time() - 3600  # a blob younger than this may belong to a snapshot in flight
        for key in self.volume.list(BLOBS):
            digest = blob_digest(key)
            if digest is None or digest in live:
                continue
            path = self.volume.path_for(key)
            assert path is not None, "gc runs on the local volume"
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            if st.st_mtime > horizon:
                continue
            report.blobs_removed += 1
            report.bytes_freed += st.st_size
            if not dry_run:
                self.volume.delete(blob_key(digest))
        if not dry_run:
            for key in doomed_keys:
                self.volume.delete(key)
            # what killed writers left behind
            report.temp_files_removed, freed = sweep_temp(self.volume)
            report.bytes_freed += freed
        return report

    async def _unindex(self, doomed: list[CheckpointRow]) -> None:
        def unit(tx: Any) -> None:
            tx.checkpoints.delete(cp.id for cp in doomed)
            tx.events.append("checkpoint_gc", f"removed {len(doomed)} checkpoint(s)",
                             data={"checkpoint_ids": [cp.id for cp in doomed][:200]})

        await self._store.write(unit)


def problems(report: VerifyReport) -> list[str]:
    """A verification report as lines a person can act on."""
    out = [f"manifest refused: {report.invalid}"] if report.invalid else []
    out += [f"blob {d} is missing" for d in report.missing]
    out += [f"blob {d} does not match its hash" for d in report.corrupt]
    out += [f"the manifest is wrong about {m.path}: it records {m.recorded} bytes, but its "
            f"blob {m.digest} (intact: its content matches its hash) holds {m.actual}"
            for m in report.sizes]
    return out


def _transcript(store: BlobStore, manifest: Manifest) -> list[dict[str, Any]]:
    uuid = str(manifest.environment.get("session_uuid") or "")
    name = f"{uuid}.jsonl" if uuid else next(
        (p for p in manifest.conversation if p.endswith(".jsonl") and "/" not in p), "")
    ref = manifest.conversation.get(name)
    if ref is None:
        return []
    out = []
    for line in ref.read(store).splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out


def _turns_added(store: BlobStore, a: Manifest, b: Manifest) -> list[Turn]:
    before = _transcript(store, a)
    after = _transcript(store, b)
    seen = {e.get("uuid") for e in before if e.get("uuid")}
    new = [e for e in after if not e.get("uuid") or e.get("uuid") not in seen] \
        if seen else after[len(before):]
    turns: list[Turn] = []
    for entry in new:
        message = entry.get("message")
        if entry.get("type") not in ("user", "assistant") or not isinstance(message, dict):
            continue
        text = _content_text(message.get("content"))
        if text:
            turns.append(Turn(str(message.get("role") or entry["type"]), text))
    return turns


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_use":
            parts.append(f"[tool {block.get('name')}]")
        elif block.get("type") == "tool_result":
            parts.append("[tool result]")
    return "\n".join(p for p in parts if p)
