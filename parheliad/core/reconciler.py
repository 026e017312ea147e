"""The reconciler: the database compared with what the backends actually run.

Every ``reconciler.poll_interval_seconds`` (and once at start, before the listener
drains anything, so what changed while the daemon was down is found at once) each
backend lists the containers carrying THIS daemon's owner tag; nothing else is ever
looked at, let alone touched. Then:

- a container the database holds as live but the backend does not list is *lost*
  when its process is provably gone (its end is settled from its result file if it
  left one) or when it has been silent longer than ``stale_threshold_seconds``; a lost
  container's task goes to recovery;
- a listed container the database does not own, or holds as finished, is *orphaned*:
  recorded in the ``orphans`` table with a ``container_orphaned`` event (once per
  sighting) and terminated only when ``auto_terminate_orphans`` is on;
- a listed container whose task no longer wants a worker (cancelled, paused, finished or
  deleted: a stop the previous daemon was still retrying when it died, a stop that never
  got through) is stopped like any other (checkpoint, then terminate after the cancel
  grace), a ``state_drift`` finding; the database alone never ends a sandbox's bill;
- other differences (a live container whose backend id was never recorded, an orphan
  that vanished by itself) are corrected with a ``state_drift`` event;
- the budget's compute for containers that ended ``budget.usage_settle_seconds`` ago (an
  estimate at the configured rates) is replaced by the backend's own figure where it has
  one (a backend offering ``ComputeBilling``: one call per pass, at most every half
  settle time, ``parheliad.core.budget.book_usage``).

The last report (start, duration, findings) is kept in the ``kv`` table for
``parhelia reconciler status``. ``cleanup`` lists the orphans and, asked to, ends them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import structlog

from parhelia.errors import ParheliaError
from parheliad.backends.base import Backend, ComputeBilling, ListedContainer
from parheliad.config import Config
from parheliad.core import budget
from parheliad.core.listener import Listener
from parheliad.core.settle import Settler, lost_outcome, terminated_by_user
from parheliad.core.states import (
    CONTAINER_FINAL,
    CONTAINER_LIVE,
    TASK_FINAL,
    ContainerState,
    TaskStatus,
)
from parheliad.store.clock import US_PER_SECOND, now_us
from parheliad.store.rows import ContainerRow, OrphanRow
from parheliad.store.store import Store
from parheliad.store.tables import orphans as orphan_states
from parheliad.store.tx import Tx

log = structlog.get_logger(__name__)

StopHandler = Callable[[ContainerRow, str], bool]
"""Stop a worker (checkpoint, then terminate): False when a stop of it is under way."""

LAST_REPORT_KEY = "reconciler.last_report"
LAST_RUN_KEY = "reconciler.last_run_us"

LOST = "lost"
ORPHANED = "orphaned"
STATE_DRIFT = "state_drift"
USAGE_WINDOW_US = 6 * 86_400 * US_PER_SECOND
"""Containers that ended longer ago keep their estimate (Modal's statistics cover at most
7 days from an hour boundary: a day's margin)."""


@dataclass(frozen=True)
class Finding:
    kind: str  # lost | orphaned | state_drift
    container_id: str
    backend_id: str
    detail: str
    action: str


@dataclass
class Report:
    started_at_us: int
    duration_ms: int = 0
    findings: list[Finding] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> Report | None:
        if not isinstance(value, dict) or not isinstance(value.get("started_at_us"), int):
            return None
        try:
            return cls(started_at_us=value["started_at_us"],
                       duration_ms=int(value.get("duration_ms") or 0),
                       findings=[Finding(**f) for f in value.get("findings") or []])
        except (TypeError, ValueError):
            return None


@dataclass(frozen=True)
class CleanupItem:
    orphan: OrphanRow
    container: ContainerRow | None
    age_seconds: float
    terminated: bool


class Reconciler:
    def __init__(self, store: Store, backends: Mapping[str, Backend],
                 config: Callable[[], Config], owner_tag: str, listener: Listener,
                 settler: Settler, *, stop: StopHandler | None = None) -> None:
        self._store = store
        self._backends = backends
        self._config = config
        self._stop = stop
        self._owner = owner_tag
        self._listener = listener
        self._settler = settler
        self._lock = asyncio.Lock()
        self.last_report: Report | None = None
        self._usage_next: dict[str, float] = {}

    async def load(self) -> None:
        """The last report of an earlier run of the daemon, if any."""
        self.last_report = Report.from_json(await self._store.kv.get(LAST_REPORT_KEY))

    # -- one pass -----------------------------------------------------------------

    async def run(self, *, manual: bool = False) -> Report:
        """Compare every backend with the database once; one pass at a time."""
        async with self._lock:
            report = Report(started_at_us=now_us())
            t0 = time.monotonic()
            for name, backend in self._backends.items():
                usable, _why = backend.available()
                if not usable:
                    # Not configured here (no Modal token, no SDK): nothing of ours can be
                    # running there, and asking would import the SDK and fail each sweep.
                    continue
                try:
                    listed = await backend.list(self._owner)
                except Exception as exc:
                    log.warning("reconciler: backend list failed", backend=name,
                                error=type(exc).__name__)
                    continue
                # Defence in depth: whatever a backend returns, only our tag counts.
                mine = [entry for entry in listed if entry.owner_tag == self._owner]
                report.findings.extend(await self._compare(name, backend, mine))
                if isinstance(backend, ComputeBilling):
                    await self._correct_usage(name, backend, {e.backend_id for e in mine})
            report.duration_ms = round((time.monotonic() - t0) * 1000)
            self.last_report = report
            await self._store.write(lambda tx: self._record(tx, report, manual))
            if report.findings:
                log.info("reconciler findings", findings=len(report.findings))
            return report

    async def _correct_usage(self, name: str, backend: ComputeBilling,
                             running: set[str]) -> int:
        """Replace compute estimates by ``backend``'s figures for the containers that ended
        long enough ago (none still running); how many were corrected."""
        settle = self._config().budget.usage_settle_seconds
        if time.monotonic() < self._usage_next.get(name, 0.0):
            return 0
        now = now_us()
        pending = [c for c in await self._store.write(lambda tx: budget.usage_pending(
            tx, name, ended_before=now - int(settle * US_PER_SECOND),
            ended_after=now - USAGE_WINDOW_US))
            if c.backend_id not in running and c.started_at is not None]
        if not pending:
            return 0
        self._usage_next[name] = time.monotonic() + min(300.0, max(1.0, settle / 2))
        try:
            costs = await backend.compute_costs(
                [(c.id, c.started_at / US_PER_SECOND) for c in pending if c.started_at])
        except Exception as exc:
            log.warning("reconciler: usage figures not read", backend=name,
                        error=getattr(exc, "message", None) or type(exc).__name__)
            return 0
        if not costs:
            return 0

        def unit(tx: Tx) -> int:
            return sum(budget.book_usage(tx, cid, amount, name) is not None
                       for cid, amount in costs.items())

        corrected = await self._store.write(unit)
        if corrected:
            log.info("reconciler: compute corrected from usage", backend=name,
                     containers=corrected)
        return corrected

    def _record(self, tx: Tx, report: Report, manual: bool) -> None:
        tx.kv.set(LAST_REPORT_KEY, report.to_json())
        tx.kv.set(LAST_RUN_KEY, report.started_at_us)
        if report.findings or manual:
            kinds: dict[str, int] = {}
            for f in report.findings:
                kinds[f.kind] = kinds.get(f.kind, 0) + 1
            summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "no findings"
            tx.events.append("reconciler_run", summary,
                             data={"duration_ms": report.duration_ms, "findings": kinds,
                                   "manual": manual})

    async def _compare(self, name: str, backend: Backend,
                       listed: list[ListedContainer]) -> list[Finding]:
        findings: list[Finding] = []
        by_backend_id = {entry.backend_id: entry for entry in listed}
        by_container = {entry.container_id: entry for entry in listed if entry.container_id}
        matched: set[str] = set()
        stale_us = int(self._config().reconciler.stale_threshold_seconds * US_PER_SECOND)
        for c in await self._store.containers.live():
            if c.backend != name:
                continue
            entry = by_backend_id.get(c.backend_id) if c.backend_id else None
            if entry is None and c.id in by_container:
                entry = by_container[c.id]
                finding = await self._adopt_backend_id(c, entry)
                if finding is not None:
                    findings.append(finding)
            if entry is not None:
                matched.add(entry.backend_id)
                finding = await self._unwanted(c, entry)
                if finding is not None:
                    findings.append(finding)
                continue
            if not c.backend_id:
                continue  # not launched yet: the dispatcher and listener own that window
            finding = await self._missing(c, backend, stale_us)
            if finding is not None:
                findings.append(finding)
        for entry in listed:
            if entry.backend_id not in matched:
                findings.append(await self._orphan(name, backend, entry))
        findings.extend(await self._vanished_orphans(name, set(by_backend_id)))
        return findings

    async def _unwanted(self, c: ContainerRow, entry: ListedContainer) -> Finding | None:
        """A running container whose task wants no worker any more: stop it."""
        if self._stop is None:
            return None
        task = await self._store.tasks.find(c.task_id)
        if task is not None and task.status not in TASK_FINAL and \
                task.status != TaskStatus.PAUSED:
            return None
        said = task.status_reason if task is not None else ""
        if said.startswith(budget.BUDGET_REASON):
            reason = "budget"
        elif said.startswith("rollback"):
            reason = "rollback"
        elif task is not None and task.status == TaskStatus.PAUSED:
            reason = "pause"
        else:
            reason = "cancel"
        if not self._stop(c, reason):
            return None
        why = "deleted" if task is None else task.status
        await self._store.events.append(
            "state_drift", f"{entry.backend_id} still running while its task is {why}: "
            f"stopping it ({reason})", task_id=c.task_id, session_id=c.session_id,
            container_id=c.id, data={"field": "task_status", "task_status": why,
                                     "backend_id": entry.backend_id, "stop": reason})
        return Finding(STATE_DRIFT, c.id, entry.backend_id,
                       f"still running while its task is {why}",
                       "stopping it (checkpoint, then terminate after the cancel grace)")

    async def _adopt_backend_id(self, c: ContainerRow, entry: ListedContainer) -> Finding | None:
        """A live container runs under a backend id the database never recorded."""
        def unit(tx: Tx) -> bool:
            row = tx.containers.get(c.id)
            if row is None or row.state not in CONTAINER_LIVE or row.backend_id == \
                    entry.backend_id:
                return False
            fields: dict[str, Any] = {"backend_id": entry.backend_id}
            if row.state == ContainerState.CREATED:
                fields["state"] = ContainerState.STARTING.value
            if row.started_at is None and entry.started_at is not None:
                fields["started_at"] = int(entry.started_at * US_PER_SECOND)
            tx.containers.update(c.id, **fields)
            tx.events.append("state_drift", f"recorded backend id {entry.backend_id}",
                             task_id=c.task_id, session_id=c.session_id, container_id=c.id,
                             data={"field": "backend_id", "was": row.backend_id,
                                   "now": entry.backend_id})
            return True

        if not await self._store.write(unit):
            return None
        return Finding(STATE_DRIFT, c.id, entry.backend_id,
                       f"running as {entry.backend_id}, recorded as {c.backend_id or 'nothing'}",
                       "recorded the backend id")

    async def _missing(self, c: ContainerRow, backend: Backend,
                       stale_us: int) -> Finding | None:
        """The database holds ``c`` as live; the backend does not list it."""
        status = await backend.status(c.backend_id, c.id)
        silence = now_us() - (c.last_heartbeat_at or c.started_at or c.created_at)
        if status.running and silence <= stale_us:
            return None  # alive and talking; maybe listed again next time
        await self._listener.drain(c, final=not status.running)
        if status.running:
            outcome = lost_outcome(
                f"not listed by its backend and silent for {silence // US_PER_SECOND}s")
            detail = f"not listed, silent for {silence // US_PER_SECOND}s"
        else:
            outcome = await self._settler.ended_outcome(backend, c, status)
            detail = "the worker process is gone" + (
                f" (exit {status.exit_code})" if status.exit_code is not None else "")
        settled = await self._settler.record(c.id, outcome, if_live=True)
        if not settled.recorded:
            return None  # the listener settled it meanwhile
        await self._settler.follow_up(settled.lost)
        if outcome.status == "lost":
            action = "recorded lost; the task resumes from its latest checkpoint" \
                if settled.lost is not None else "recorded lost"
            return Finding(LOST, c.id, c.backend_id, detail, action)
        return Finding(STATE_DRIFT, c.id, c.backend_id, detail + f", it had ended "
                       f"({outcome.status})", f"settled as {outcome.status}")

    async def _orphan(self, name: str, backend: Backend, entry: ListedContainer) -> Finding:
        known = await self._store.containers.find(entry.container_id) \
            if entry.container_id else None
        started = int(entry.started_at * US_PER_SECOND) if entry.started_at else None
        detail = ("unknown to the database" if known is None else
                  f"the database holds it as {known.state}")

        def unit(tx: Tx) -> bool:
            row = tx.containers.get(known.id) if known is not None else None
            _, fresh = tx.orphans.seen(
                backend=name, backend_id=entry.backend_id, container_id=entry.container_id,
                known=row is not None, started_at=started,
                cost_micros=row.cost_micros if row is not None else 0, detail=detail)
            if row is not None and row.state in CONTAINER_FINAL:
                tx.containers.update(row.id, state=ContainerState.ORPHANED.value)
            if fresh:
                tx.events.append(
                    "container_orphaned", f"{name} {entry.backend_id}: {detail}",
                    task_id=row.task_id if row else None,
                    session_id=row.session_id if row else None,
                    container_id=entry.container_id or None,
                    data={"backend": name, "backend_id": entry.backend_id,
                          "container_id": entry.container_id, "known": row is not None})
            return fresh

        await self._store.write(unit)
        if self._config().reconciler.auto_terminate_orphans:
            await self._end_orphan(name, backend, entry.backend_id, "auto_terminate_orphans")
            action = "terminated (auto_terminate_orphans is on)"
        else:
            action = "left running; `parhelia cleanup --terminate` ends it"
        return Finding(ORPHANED, entry.container_id, entry.backend_id, detail, action)

    async def _end_orphan(self, name: str, backend: Backend, backend_id: str, why: str) -> bool:
        """Terminate an orphan that is STILL listed under our tag; whether it was."""
        listed = {e.backend_id for e in await backend.list(self._owner)
                  if e.owner_tag == self._owner}
        if backend_id not in listed:
            return False
        await backend.terminate(backend_id, grace_seconds=self._grace())

        def unit(tx: Tx) -> None:
            orphan = tx.orphans.get(name, backend_id)
            if orphan is None:
                return
            tx.orphans.end(orphan.id, orphan_states.TERMINATED)
            row = tx.containers.get(orphan.container_id) if orphan.container_id else None
            if row is not None and row.state == ContainerState.ORPHANED:
                tx.containers.update(row.id, state=ContainerState.TERMINATED.value)
            tx.events.append("container_terminated", f"orphan {name} {backend_id} terminated "
                             f"({why})", task_id=row.task_id if row else None,
                             session_id=row.session_id if row else None,
                             container_id=orphan.container_id or None,
                             data={"backend": name, "backend_id": backend_id, "orphan": True,
                                   "why": why})

        await self._store.write(unit)
        return True

    async def _vanished_orphans(self, name: str, listed: set[str]) -> list[Finding]:
        findings: list[Finding] = []
        for orphan in await self._store.orphans.list():
            if orphan.backend != name or orphan.backend_id in listed:
                continue

            def unit(tx: Tx, orphan: OrphanRow = orphan) -> None:
                tx.orphans.end(orphan.id, orphan_states.GONE)
                row = tx.containers.get(orphan.container_id) if orphan.container_id else None
                if row is not None and row.state == ContainerState.ORPHANED:
                    tx.containers.update(row.id, state=ContainerState.LOST.value)
                tx.events.append("state_drift", f"orphan {name} {orphan.backend_id} is gone",
                                 task_id=row.task_id if row else None,
                                 container_id=orphan.container_id or None,
                                 data={"backend": name, "backend_id": orphan.backend_id})

            await self._store.write(unit)
            findings.append(Finding(STATE_DRIFT, orphan.container_id, orphan.backend_id,
                                    "the orphan is no longer running", "recorded it gone"))
        return findings

    def _grace(self) -> float:
        return self._config().orchestrator.cancel_grace_seconds

    # -- cleanup and terminate -------------------------------------------------------

    async def cleanup(self, *, terminate: bool) -> list[CleanupItem]:
        """The present orphans (after a fresh pass); with ``terminate``, end each one."""
        await self.run()
        items: list[CleanupItem] = []
        now = now_us()
        for orphan in await self._store.orphans.list():
            backend = self._backends.get(orphan.backend)
            ended = False
            if terminate and backend is not None:
                ended = await self._end_orphan(orphan.backend, backend, orphan.backend_id,
                                               "cleanup")
            container = await self._store.containers.find(orphan.container_id) \
                if orphan.container_id else None
            since = orphan.started_at or orphan.first_seen_at
            items.append(CleanupItem(orphan, container, max(0.0, (now - since) / US_PER_SECOND),
                                     ended))
        return items

    async def terminate_container(self, ref: str) -> ContainerRow:
        """End one of OUR containers now; a running task resumes from its checkpoint."""
        c = await self._store.containers.get(ref)
        backend = self._backends.get(c.backend)
        if c.state == ContainerState.ORPHANED:
            if backend is None or not await self._end_orphan(c.backend, backend, c.backend_id,
                                                             "terminated by user"):
                raise ParheliaError("E203", f"container {c.id} is no longer running")
            return await self._store.containers.get(c.id)
        if c.state not in CONTAINER_LIVE:
            raise ParheliaError("E603", f"container {c.id} is already {c.state}; only live "
                                        "or orphaned containers can be terminated",
                                container_id=c.id, state=c.state)
        await self._listener.drain(c)

        lost = await self._store.write(lambda tx: terminated_by_user(tx, c.id))
        if backend is not None and c.backend_id:
            # SIGTERM first: the worker checkpoints before it goes; what it says while
            # going (the checkpoint) is drained below, before recovery picks a checkpoint.
            await backend.terminate(c.backend_id, grace_seconds=self._grace())
            await self._listener.drain(await self._store.containers.get(c.id), final=True)
        await self._settler.follow_up(lost)
        return await self._store.containers.get(c.id)

