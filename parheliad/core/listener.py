"""The channel listener: applies worker records to the store, and notices ends.

Draining is continuous: every live container's channel is read from the cursor kept
in its row (``spool_offset``), and a batch is applied in ONE writer unit together with
the new cursor and ``last_seq`` — so each ``(container, seq)`` is applied exactly
once, across daemon crashes and restarts (the events table's unique index is the
second line of defence).

Before a batch is applied, what its records announce is copied from the backend's
volume to the daemon's (``volsync``): a checkpoint is indexed only once its manifest
and blobs are here, a worker's end only once its result and log are. A backend that
cannot be reached leaves the batch for a later pass (the cursor does not move).

When a container's process is gone, its channel is drained a last time and its end
is settled by ``settle_container``: from the worker's own ``worker_exited`` record,
else from its durable result file, else it died without a word and the task goes to
recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from parhelia import events as catalogue
from parhelia import records
from parhelia.errors import ParheliaError
from parhelia.records import RecordError
from parhelia.spec import ExitCode, WorkerResult
from parhelia.spool import read_spool
from parhelia.volume import LocalVolume, result_key, spool_key
from parheliad.backends.base import Backend, BackendUnreachable, ChannelBatch
from parheliad.core import volsync
from parheliad.core.budget import (
    AGENT_COST_NOTE,
    AGENT_USAGE_NOTE,
    Budget,
    complete_if_paused,
)
from parheliad.core.states import (
    CONTAINER_FINAL,
    SESSION_LIVE,
    ContainerState,
    Health,
    SessionStatus,
    TaskStatus,
    session_status_for,
)
from parheliad.core.tasks import fail_task, index_checkpoint, transition
from parheliad.store.clock import now_us
from parheliad.store.rows import ContainerRow
from parheliad.store.store import Store
from parheliad.store.tx import Tx

log = structlog.get_logger(__name__)

_DRAIN_INTERVAL = 0.1
_EXIT_CHECK_INTERVAL = 1.0


@dataclass(frozen=True)
class Outcome:
    """How one incarnation ended."""

    exit_code: int | None
    status: str  # completed | failed | timeout | stopped | lost
    error_code: str = ""
    error_message: str = ""


LostHandler = Callable[[str, str, str], Awaitable[None]]
"""``(task_id, container_id, reason)`` — a worker died without finishing its task."""


def parse_at(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1_000_000)
    except ValueError:
        return None


@dataclass
class Applied:
    """What a writer unit of the listener leaves to do once it has committed."""

    lost: list[tuple[str, str, str]] = field(default_factory=list)
    """``(task, container, reason)`` of workers that ended without finishing."""
    stops: list[tuple[ContainerRow, str]] = field(default_factory=list)
    """Workers the budget stops (a cap or the ceiling reached by what was booked)."""
    booked: bool = False
    """Whether agent usage was recorded (then the budget is enforced in the unit)."""


class Listener:
    def __init__(self, store: Store, backends: Mapping[str, Backend], volume: LocalVolume,
                 budget: Budget, *, on_settled: Callable[[], None] = lambda: None,
                 on_lost: LostHandler | None = None,
                 launching: AbstractSet[str] = frozenset()) -> None:
        self._store = store
        self._budget = budget  # books the agents' spend and enforces it at once
        self._launching = launching  # the dispatcher's launches in flight
        self._backends = backends
        self._volume = volume  # the daemon's local volume
        self._on_settled = on_settled
        self._on_lost = on_lost
        self._task: asyncio.Task[None] | None = None
        self._exits_task: asyncio.Task[None] | None = None
        self._last_exit_check = 0.0
        self.unreachable: dict[str, int] = {}
        """Backends that could not be asked, by name: since when (µs). Their containers'
        silence is not the workers' (the health sweep shows them ``unreachable``)."""
        self.reachable_since: dict[str, int] = {}
        """When each backend became reachable again: silence counts from then."""

    def mark_reachable(self, backend: str, reachable: bool) -> None:
        if reachable:
            if self.unreachable.pop(backend, None) is not None:
                self.reachable_since[backend] = now_us()
                log.info("backend reachable again", backend=backend)
        elif backend not in self.unreachable:
            self.unreachable[backend] = now_us()
            log.warning("backend unreachable", backend=backend)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="listener")
        self._exits_task = asyncio.create_task(self._exit_loop(), name="listener-exits")

    async def stop(self) -> None:
        for task in (self._task, self._exits_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._task = self._exits_task = None
        # One last drain so nothing a worker said before shutdown waits for the restart.
        with contextlib.suppress(Exception):
            await self.drain_all()

    async def _loop(self) -> None:
        while True:
            try:
                await self.drain_all()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("listener pass failed")
            await asyncio.sleep(_DRAIN_INTERVAL)

    async def _exit_loop(self) -> None:
        """Exit checks on their own clock: a status call per live container can take a
        while with many of them, and draining must not wait for it."""
        while True:
            try:
                self._last_exit_check = time.monotonic()
                await self.check_exits()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("listener exit check failed")
            await asyncio.sleep(max(0.0, _EXIT_CHECK_INTERVAL
                                    - (time.monotonic() - self._last_exit_check)))

    # -- draining -------------------------------------------------------------------

    async def drain_all(self) -> int:
        """One pass over every live container's channel.

        Channels are polled cheaply (the local backend compares the spool's size with the
        cursor before reading anything) and everything new is applied in ONE writer unit:
        with a thousand workers that is one transaction per pass instead of one per
        container. Each container's records and cursor still commit together, so
        exactly-once holds; if the combined unit fails, each container is drained alone
        so that one bad channel cannot hold back the others.
        """
        pending: list[tuple[str, ChannelBatch]] = []
        for cid, backend_name, offset in await self._store.containers.live_cursors():
            backend = self._backends.get(backend_name)
            if backend is None:
                continue
            try:
                batch = await backend.events(cid, offset)
            except BackendUnreachable:
                self.mark_reachable(backend_name, False)
                continue  # the health sweep says so; the records wait on the volume
            if (batch.records or batch.cursor != offset) and \
                    await self._copy_announced(backend, cid, batch):
                pending.append((cid, batch))
        if not pending:
            return 0
        try:
            applied = await self._store.write(functools.partial(self._apply_many,
                                                                pending=pending))
        except Exception:
            log.exception("batched drain failed; draining containers one by one")
            total = 0
            for cid, _ in pending:
                c = await self._store.containers.find(cid)
                if c is not None:
                    total += await self.drain(c)
            return total
        await self._after(applied)
        return sum(len(batch.records) for _, batch in pending)

    def _apply_many(self, tx: Tx, *, pending: list[tuple[str, ChannelBatch]]) -> Applied:
        """Apply batches in one unit; API spend they book is enforced at its end."""
        applied = Applied()
        for cid, batch in pending:
            self._apply(tx, applied, container_id=cid, lines=batch.records,
                        cursor=batch.cursor)
        if applied.booked:
            applied.stops = self._budget.enforce_booked(tx)
        return applied

    async def _after(self, applied: Applied) -> None:
        """Once a unit committed: the workers the budget stops are asked to stop, and
        tasks whose worker said it stopped without being asked (``worker_exited``, status
        stopped) go to recovery like any other unasked end."""
        self._budget.stop_workers(applied.stops)
        for item in applied.lost:
            if self._on_lost is not None:
                await self._on_lost(*item)
        if applied.lost:
            self._on_settled()

    async def drain(self, container: ContainerRow, *, final: bool = False) -> int:
        """Apply what the container's channel holds now. ``final`` (the container is
        gone): on a backend with a volume of its own, the whole spool is copied from it
        first (the end's sync point), so every record is applied before the end is
        settled — a live reader may not have caught up yet."""
        backend = self._backends.get(container.backend)
        if backend is None:
            return 0
        total = 0
        cursor = container.spool_offset
        while True:
            try:
                batch = await backend.events(container.id, cursor)
            except BackendUnreachable:
                return total
            if not batch.records and batch.cursor == cursor:
                break
            if not await self._copy_announced(backend, container.id, batch):
                return total
            await self._after(await self._store.write(functools.partial(
                self._apply_many, pending=[(container.id, batch)])))
            total += len(batch.records)
            cursor = batch.cursor
        if final and not volsync.shared(backend, self._volume):
            total += await self._drain_copy(backend, container)
        return total

    async def _drain_copy(self, backend: Backend, container: ContainerRow) -> int:
        """Records of an ended container from the daemon's copy of its spool."""
        key = spool_key(container.id)
        try:
            await backend.pull(self._volume, [key])
        except BackendUnreachable:
            return 0
        path = self._volume.path_for(key)
        if path is None:
            return 0
        total = 0
        while True:
            row = await self._store.containers.find(container.id)
            if row is None:
                return total
            lines, cursor = await asyncio.to_thread(read_spool, path, row.spool_offset)
            if cursor == row.spool_offset:
                return total
            batch = ChannelBatch(lines, cursor)
            if not await self._copy_announced(backend, container.id, batch):
                return total
            await self._after(await self._store.write(functools.partial(
                self._apply_many, pending=[(container.id, batch)])))
            total += len(lines)

    async def _copy_announced(self, backend: Backend, container_id: str,
                              batch: ChannelBatch) -> bool:
        """Copy to the daemon's volume what the batch's records announce (checkpoints,
        the worker's end); False when the backend could not be reached (apply later)."""
        if volsync.shared(backend, self._volume):
            return True
        try:
            announced = False
            for raw in batch.records:
                kind = raw.get("type")
                if kind == records.CheckpointCreated.TYPE:
                    announced = True
                    try:
                        created = records.CheckpointCreated.from_dict(raw.get("data"))
                    except RecordError:
                        continue  # refused again, with its reason, when the batch is applied
                    await self._pull_checkpoint(backend, container_id, created)
                elif kind == records.WorkerExited.TYPE:
                    await volsync.pull_end(backend, self._volume, container_id, None, None)
            if announced:
                await volsync.pull_progress(backend, self._volume, container_id)
        except BackendUnreachable:
            return False
        return True

    async def _pull_checkpoint(self, backend: Backend, container_id: str,
                               created: records.CheckpointCreated) -> None:
        cp = created.checkpoint_id
        row = await self._store.containers.find(container_id)
        session = row.session_id if row is not None else None
        if not session:
            return
        try:
            await volsync.pull_checkpoint(backend, self._volume, session, cp)
        except BackendUnreachable:
            raise
        except (ParheliaError, ValueError, OSError) as exc:
            # Indexed anyway (verify and restore will say what is missing); the end of
            # the container pulls its last checkpoint again.
            log.warning("checkpoint not copied to the daemon's volume", container_id=container_id,
                        checkpoint_id=cp, error=getattr(exc, "message", type(exc).__name__))

    def _apply(self, tx: Tx, applied: Applied, *, container_id: str,
               lines: list[dict[str, Any]], cursor: int) -> None:
        """Apply a batch and its cursor (into ``applied``: the tasks to recover, see
        ``settle_container``, and whether API spend was booked)."""
        c = tx.containers.get(container_id)
        if c is None:
            return
        last_seq = c.last_seq
        for raw in lines:
            seq = records.seq_of(raw)
            if seq is None or seq <= last_seq:
                if seq is None:
                    log.warning("channel record refused", container_id=c.id,
                                reason="the record has no valid seq")
                continue
            last_seq = seq  # a refused record is stepped over, never retried
            try:
                envelope = records.Envelope.from_dict(raw)
                typed = envelope.typed()
            except RecordError as exc:
                log.warning("channel record refused", container_id=c.id, seq=seq,
                            reason=str(exc))
                continue
            at = parse_at(envelope.at) or now_us()
            data = typed.to_dict() if typed is not None else envelope.data
            if isinstance(typed, records.AgentTurnCompleted | records.AgentResult):
                data = {**data, **_task_totals(tx, c, typed.usage)}
            if isinstance(typed, records.Heartbeat):
                applied.booked |= self._heartbeat(tx, c, typed, at)
            elif tx.events.append(envelope.type, _message(envelope.type, data),
                                  task_id=c.task_id, session_id=c.session_id,
                                  container_id=c.id, data=data, at=at,
                                  container_seq=seq) is not None and typed is not None:
                ended = self._effect(tx, c, typed, applied)
                if ended is not None:
                    applied.lost.append(ended)
            c = tx.containers.get(container_id) or c
        tx.containers.update(container_id, spool_offset=cursor, last_seq=last_seq)

    def _heartbeat(self, tx: Tx, c: ContainerRow, hb: records.Heartbeat, at: int) -> bool:
        tx.heartbeats.insert(c.id, at=at, cpu_percent=hb.cpu_percent,
                             memory_bytes=hb.memory_bytes, disk_bytes=hb.disk_bytes,
                             agent_alive=hb.agent_alive, metrics=hb.to_dict())
        fields: dict[str, Any] = {"last_heartbeat_at": at, "consecutive_failures": 0}
        # A record that still arrives (a stream opened before) does not end "unreachable":
        # that lasts until the backend answers a call again (then this heals it).
        held = c.health == Health.UNREACHABLE and c.backend in self.unreachable
        if c.health != Health.HEALTHY and c.health != Health.DEAD and not held:
            fields["health"] = Health.HEALTHY.value
            # Becoming healthy is good news: info, not the catalogue's warning level.
            tx.events.append("health_changed", f"{c.health} -> healthy", level="info",
                             task_id=c.task_id, session_id=c.session_id, container_id=c.id,
                             data={"from": c.health, "to": "healthy"})
        if c.state == ContainerState.STARTING:
            fields["state"] = ContainerState.RUNNING.value
        c = tx.containers.update(c.id, **fields)
        return self._budget.book_agent_usage(tx, c, hb.usage)

    def _effect(self, tx: Tx, c: ContainerRow, record: records.Typed, applied: Applied
                ) -> tuple[str, str, str] | None:
        """What a record the daemon acts on changes (its event is stored already)."""
        if isinstance(record, records.WorkerStarted):
            if c.state == ContainerState.CREATED:
                tx.containers.update(c.id, state=ContainerState.STARTING.value)
            if c.state in (ContainerState.CREATED, ContainerState.STARTING):
                tx.containers.update(c.id, state=ContainerState.RUNNING.value)
        elif isinstance(record, records.AgentToolUse):
            tool, summary = record.tool, record.summary
            if _is_current(tx, c):
                tx.tasks.update(c.task_id,
                                last_tool=f"{tool}: {summary}"[:200] if summary else tool)
        elif isinstance(record, records.AgentTurnCompleted | records.AgentResult
                        | records.AgentCost):
            # spend counts whichever incarnation made it
            applied.booked |= self._budget.book_agent_usage(
                tx, c, record.usage, note=AGENT_COST_NOTE
                if isinstance(record, records.AgentCost) else AGENT_USAGE_NOTE)
            if isinstance(record, records.AgentResult) and _is_current(tx, c):
                tx.tasks.update(c.task_id, result_subtype=record.subtype,
                                result_is_error=record.is_error, result_text=record.text)
                complete_if_paused(tx, c.task_id)
        elif isinstance(record, records.CheckpointCreated) and c.session_id is not None:
            index_checkpoint(tx, c.session_id, c.id, record)
        elif isinstance(record, records.SessionMode) and c.session_id is not None:
            _session_mode(tx, c, record)
        elif isinstance(record, records.WorkerExited):
            return settle_container(tx, c.id, Outcome(
                exit_code=record.exit_code, status=record.status,
                error_code=record.error_code or "", error_message=record.error_message or ""))
        return None

    # -- ends -----------------------------------------------------------------------

    async def check_exits(self) -> None:
        """Settle every live container whose process is gone (one status round trip per
        backend, however many containers are live)."""
        by_backend: dict[str, list[ContainerRow]] = {}
        for c in await self._store.containers.live():
            if c.backend in self._backends and c.backend_id:
                by_backend.setdefault(c.backend, []).append(c)
            elif c.state == ContainerState.CREATED and not c.backend_id and \
                    c.id not in self._launching and now_us() - c.created_at > 30_000_000:
                await self._settle_gone(c, Outcome(None, "lost", error_message="never launched"))
        for name, containers in by_backend.items():
            backend = self._backends[name]
            try:
                found = await backend.statuses([(c.backend_id, c.id) for c in containers])
            except BackendUnreachable:
                # Nothing is known about these containers: none is settled, killed or
                # relaunched for it; the health sweep shows them unreachable.
                self.mark_reachable(name, False)
                continue
            self.mark_reachable(name, True)
            for c, status in zip(containers, found, strict=True):
                if status.running:
                    continue
                await self.drain(c, final=True)
                try:
                    outcome = await self.ended_outcome(backend, c, status.exit_code)
                except BackendUnreachable:
                    continue  # settled on a later pass, once its result can be read
                await self._settle_gone(c, outcome)

    async def ended_outcome(self, backend: Backend, c: ContainerRow,
                            exit_code: int | None) -> Outcome:
        """How a container that is gone ended: its result file (copied from the backend's
        volume first, with its log and last checkpoint), else its exit code. Raises
        BackendUnreachable when the backend's volume cannot be read now."""
        await self._pull_end(backend, c)
        return await asyncio.to_thread(_outcome_from_result, self._volume, c.id, exit_code)

    async def _pull_end(self, backend: Backend, c: ContainerRow) -> None:
        if volsync.shared(backend, self._volume):
            return
        latest = None
        if c.session_id:
            session = await self._store.sessions.find(c.session_id)
            latest = session.latest_checkpoint_id if session is not None else None
        try:
            await volsync.pull_end(backend, self._volume, c.id, c.session_id, latest)
        except BackendUnreachable:
            raise
        except ParheliaError as exc:
            log.warning("final checkpoint not copied", container_id=c.id, error=exc.message)

    async def _settle_gone(self, c: ContainerRow, outcome: Outcome) -> None:
        lost = await self._store.write(lambda tx: settle_container(tx, c.id, outcome))
        if lost is not None and self._on_lost is not None:
            await self._on_lost(*lost)
        self._on_settled()


def _session_mode(tx: Tx, c: ContainerRow, record: records.SessionMode) -> None:
    """What runs the session now, as its current worker says: the TUI (with its socket
    and attached clients) or the headless agent."""
    assert c.session_id is not None
    session = tx.sessions.get(c.session_id)
    if session is None or session.current_container_id != c.id or \
            session.status not in SESSION_LIVE:
        return  # an older incarnation draining late, or the session ended meanwhile
    # The task follows its session's mode: a recovery (or resume) of a taken-over task
    # comes back interactive, of a released one headless.
    interactive = not isinstance(record, records.SessionHeadless)
    if _is_current(tx, c):
        task = tx.tasks.require(c.task_id)
        if task.interactive != interactive:
            tx.tasks.update(task.id, interactive=interactive)
    if isinstance(record, records.SessionHeadless):
        tx.sessions.update(session.id, status=SessionStatus.HEADLESS, attached_clients=0,
                           tmux_socket="")
        return
    fields: dict[str, Any] = {"attached_clients": record.clients}
    if isinstance(record, records.SessionInteractive):
        fields["tmux_socket"] = record.socket
    tx.sessions.update(session.id, status=session_status_for(True, interactive=True,
                                                             clients=record.clients), **fields)


def _task_totals(tx: Tx, c: ContainerRow, usage: records.Usage) -> dict[str, int]:
    """The task's turns and tokens as of a turn or result record of ``c``: the task's
    other incarnations' figures plus this record's, so turn numbers continue across a
    recovery (the record's own count is the incarnation's: turn 1 again)."""
    turns, tokens_in, tokens_out = tx.containers.usage_of_others(c.task_id, c.id)
    return {"task_turns": turns + usage.turns,
            "task_input_tokens": tokens_in + usage.input_tokens,
            "task_output_tokens": tokens_out + usage.output_tokens}


def _is_current(tx: Tx, c: ContainerRow) -> bool:
    """Whether ``c`` is its task's current container (an older incarnation still draining
    after a retry must not overwrite what the task shows)."""
    task = tx.tasks.get(c.task_id)
    return task is not None and task.container_id == c.id


def _outcome_from_result(volume: LocalVolume, container_id: str, exit_code: int | None) -> Outcome:
    key = result_key(container_id)
    if volume.exists(key):
        try:
            result = WorkerResult.from_dict(json.loads(volume.get(key)))
            return Outcome(result.exit_code, result.status, result.error_code or "",
                           result.error_message or "")
        except (ValueError, TypeError, OSError):
            log.warning("unreadable result file", container_id=container_id)
    if exit_code is None:
        return Outcome(None, "lost", error_message="the worker vanished without a result")
    return Outcome(exit_code, "lost",
                   error_message=f"the worker died (exit {exit_code}) without a result")


RESULT_UNSAVED_EVENT = "task_result_unsaved"


def settle_container(tx: Tx, container_id: str, outcome: Outcome) -> tuple[str, str, str] | None:
    """Record a container's end and move its task on. Idempotent.

    Returns ``(task_id, container_id, reason)`` when the task must be recovered.
    """
    c = tx.containers.get(container_id)
    if c is None or c.state in CONTAINER_FINAL:
        return None
    task = tx.tasks.get(c.task_id)
    now = now_us()
    if outcome.status == "completed":
        state = ContainerState.EXITED
    elif outcome.status == "lost":
        state = ContainerState.LOST if outcome.exit_code is None else ContainerState.FAILED
    elif outcome.status == "stopped" and task is not None and task.status in (
            TaskStatus.CANCELLED, TaskStatus.PAUSED):
        state = ContainerState.TERMINATED
    elif outcome.status == "stopped":
        state = ContainerState.EXITED
    else:
        state = ContainerState.FAILED if outcome.exit_code != ExitCode.TIMEOUT \
            else ContainerState.EXITED
    reason = outcome.error_message or outcome.status
    tx.containers.update(c.id, state=state.value, exit_code=outcome.exit_code,
                         reason=reason[:500], stopped_at=now)
    ev = {ContainerState.EXITED: "container_exited", ContainerState.FAILED: "container_failed",
          ContainerState.LOST: "container_lost",
          ContainerState.TERMINATED: "container_terminated"}[state]
    tx.events.append(ev, reason, task_id=c.task_id, session_id=c.session_id, container_id=c.id,
                     data={"exit_code": outcome.exit_code, "status": outcome.status,
                           "error_code": outcome.error_code})
    if c.session_id:
        tx.sessions.ended(c.session_id, completed=outcome.status == "completed")
    if task is None or task.container_id != c.id or task.status not in (
            TaskStatus.RUNNING, TaskStatus.RECOVERING):
        return None  # the task moved on already (cancelled, paused, or a newer container)
    if outcome.status == "completed" and outcome.error_code:
        # The agent finished but its result (the completion checkpoint) was not saved: not
        # a success to report; the work is in the workspace, `checkpoint create` saves it.
        reason = (f"{outcome.error_message or 'the result was not saved'}. Save it with "
                  f"`parhelia checkpoint create {c.session_id}` (from the workspace it left "
                  "on this machine), then `parhelia task diff`/`pull` bring it back")
        transition(tx, task.id, TaskStatus.COMPLETED, reason=reason,
                   event_type=RESULT_UNSAVED_EVENT, data={"code": outcome.error_code},
                   needs_user=True, result_exit_code=outcome.exit_code or 0,
                   result_error_code=outcome.error_code,
                   result_error_message=reason[:2000])
        return None
    if outcome.status == "completed":
        transition(tx, task.id, TaskStatus.COMPLETED, result_exit_code=outcome.exit_code or 0)
        if c.session_id:
            tx.sessions.update(c.session_id, status=SessionStatus.COMPLETED)
        return None
    if outcome.status in ("lost", "stopped"):
        return task.id, c.id, reason
    code = outcome.error_code or ("E501" if outcome.exit_code == ExitCode.TIMEOUT else "E604")
    message = _failure_message(task.result_subtype, outcome) or outcome.error_message or \
        f"the worker failed (exit {outcome.exit_code})"
    fail_task(tx, task.id, code, message, exit_code=outcome.exit_code)
    return None


def _failure_message(subtype: str, outcome: Outcome) -> str:
    """A clearer message than the worker's for the ends we can name, else ""."""
    if outcome.exit_code == ExitCode.TIMEOUT:
        return "the task reached its timeout (the workspace was checkpointed first)"
    if outcome.error_code:
        return ""  # the worker's own message for E400/E500/E600... says it best
    if subtype == "error_max_turns":
        return "the agent reached --max-turns before finishing; give it more with --max-turns"
    if subtype == "error_max_budget_usd":
        return "the agent reached the task's --max-cost"
    return ""


def _message(kind: str, data: Mapping[str, Any]) -> str:
    """A one-line human summary of a worker record (never file contents)."""
    if kind == "agent_tool_use":
        return f"{data.get('tool', '')}: {data.get('summary', '')}"[:300]
    if kind == "agent_turn_completed":
        return f"turn {data.get('task_turns', data.get('turns', '?'))}"
    if kind == "agent_result":
        return f"{data.get('subtype', '')} after {data.get('turns', '?')} turns"
    if kind == "agent_cost":
        return f"${data.get('cost_usd', 0)} reported by the agent before it stopped"
    if kind == "agent_init":
        return f"{data.get('model', '')} (Claude Code {data.get('agent_version', '?')})"
    if kind == "checkpoint_created":
        return f"{data.get('checkpoint_id', '')} ({data.get('trigger', '')})"
    if kind == "worker_exited":
        return f"{data.get('status', '')} (exit {data.get('exit_code')})"
    if kind in ("session_attached", "session_detached"):
        return f"{data.get('clients', 0)} client(s) attached"
    if kind == "session_interactive":
        return "the interactive TUI runs" + (" (resumed conversation)" if data.get("resume")
                                             else "")
    if kind == "agent_api_retry":
        return f"attempt {data.get('attempt')} ({data.get('error_status')})"
    return catalogue.kind(kind).summary
