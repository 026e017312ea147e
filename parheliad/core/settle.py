"""A container's end, settled in one place.

A worker incarnation ends in one of three ways the daemon notices: its ``worker_exited``
record (the listener applies it), its process gone (the listener's exit check, or the
reconciler finding a container no backend lists), or its silence (the health sweep
declares it dead). Whichever part notices, the end goes through here:

- :class:`Outcome` says how it ended; from the worker's own record, else its durable
  result file (:meth:`Settler.ended_outcome` copies it from the backend's volume first,
  with its log and last checkpoint, ``volsync.pull_end``), else it died without a word;
- :func:`settle_container`, inside a writer unit, records the container's end and moves
  its task on (completed, failed with its code, or to be recovered). Idempotent;
  :func:`terminated_by_user` does the same for ``container terminate``;
- :meth:`Settler.settle` runs that unit, then hands a task whose worker is lost to
  recovery and asks the dispatcher for a pass (a slot, or the session, is free).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple

import structlog

from parhelia.errors import ParheliaError, code_of
from parhelia.spec import ExitCode, WorkerResult
from parhelia.volume import LocalVolume, result_key
from parheliad.backends.base import (
    END_EVICTED,
    END_INIT_FAILURE,
    END_OOM,
    Backend,
    BackendUnreachable,
    ContainerStatus,
)
from parheliad.core import volsync
from parheliad.core.states import (
    CONTAINER_FINAL,
    CONTAINER_LIVE,
    ContainerState,
    SessionStatus,
    TaskStatus,
)
from parheliad.core.tasks import fail_task, transition
from parheliad.store.clock import now_us
from parheliad.store.rows import ContainerRow
from parheliad.store.store import Store
from parheliad.store.tx import Tx

log = structlog.get_logger(__name__)

RESULT_UNSAVED_EVENT = "task_result_unsaved"

class Lost(NamedTuple):
    """A worker ended without finishing its task, which goes to recovery."""

    task_id: str
    container_id: str
    reason: str
    counts_restart: bool = True


LostHandler = Callable[..., Awaitable[None]]
"""``(task_id, container_id, reason, counts_restart=True)`` (a ``Lost``, unpacked)."""


@dataclass(frozen=True)
class Outcome:
    """How one incarnation ended."""

    exit_code: int | None
    status: str  # completed | failed | timeout | stopped | lost
    error_code: str = ""
    error_message: str = ""
    counts_restart: bool = True
    """False when the worker was lost through no fault of its own (the backend evicted
    it): recovered without counting a restart."""


def lost_outcome(reason: str) -> Outcome:
    """A worker that ended without a word (no record, no result file)."""
    return Outcome(None, "lost", error_message=reason)


def outcome_from_result(volume: LocalVolume, container_id: str,
                        status: ContainerStatus) -> Outcome:
    """The end an incarnation's result file on the daemon's volume says, else what its
    backend says of its end (an OOM kill, an eviction, an init failure), else its exit
    code (a worker that died without writing one)."""
    key = result_key(container_id)
    if volume.exists(key):
        try:
            result = WorkerResult.from_dict(json.loads(volume.get(key)))
            return Outcome(result.exit_code, result.status, result.error_code or "",
                           result.error_message or "")
        except (ValueError, TypeError, OSError):
            log.warning("unreadable result file", container_id=container_id)
    exit_code, said = status.exit_code, status.detail
    if status.end == END_OOM:
        return Outcome(exit_code, "lost", error_message=f"out of memory: raise --memory "
                       f"({said})")
    if status.end == END_EVICTED:
        return Outcome(exit_code, "lost", counts_restart=False, error_message=(
            f"evicted by its backend, through no fault of the worker ({said}); resumed "
            "without counting a restart"))
    if status.end == END_INIT_FAILURE:
        return Outcome(exit_code, "failed", error_code="E505",
                       error_message=f"the sandbox could not start ({said})")
    if exit_code is None:
        return lost_outcome("the worker vanished without a result")
    return Outcome(exit_code, "lost",
                   error_message=f"the worker died (exit {exit_code}) without a result")


def settle_container(tx: Tx, container_id: str, outcome: Outcome) -> Lost | None:
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
        return Lost(task.id, c.id, reason, outcome.counts_restart)
    code = code_of(outcome.error_code,
                   "E501" if outcome.exit_code == ExitCode.TIMEOUT else "E604")
    message = _failure_message(task.result_subtype, outcome) or outcome.error_message or \
        f"the worker failed (exit {outcome.exit_code})"
    fail_task(tx, task.id, code, message, exit_code=outcome.exit_code)
    return None


def terminated_by_user(tx: Tx, container_id: str) -> Lost | None:
    """Record that the user terminated a live container (``container terminate``); its
    task, if the container was its current one, goes to recovery. None when it was not
    live any more."""
    c = tx.containers.get(container_id)
    if c is None or c.state not in CONTAINER_LIVE:
        return None
    tx.containers.update(c.id, state=ContainerState.TERMINATED.value,
                         reason="terminated by user", stopped_at=now_us())
    tx.events.append("container_terminated", "terminated by user", task_id=c.task_id,
                     session_id=c.session_id, container_id=c.id,
                     data={"backend_id": c.backend_id})
    if c.session_id:
        tx.sessions.ended(c.session_id, completed=False)
    task = tx.tasks.get(c.task_id)
    if task is not None and task.container_id == c.id and task.status in (
            TaskStatus.RUNNING, TaskStatus.RECOVERING):
        return Lost(task.id, c.id, "its container was terminated by the user")
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


@dataclass(frozen=True)
class Settled:
    """What :meth:`Settler.record` did: whether it recorded the end (False: something
    else settled it first), and the task to recover."""

    recorded: bool
    lost: Lost | None


class Settler:
    """Settles ends for the listener, the health sweep and the reconciler.

    ``on_lost`` hands a task whose worker ended without finishing to recovery;
    ``on_settled`` asks the dispatcher for a pass (a slot or a session is free)."""

    def __init__(self, store: Store, volume: LocalVolume, *,
                 on_lost: LostHandler | None = None,
                 on_settled: Callable[[], None] = lambda: None) -> None:
        self._store = store
        self._volume = volume  # the daemon's local volume
        self._on_lost = on_lost
        self._on_settled = on_settled

    async def ended_outcome(self, backend: Backend, c: ContainerRow,
                            status: ContainerStatus) -> Outcome:
        """How a container that is gone ended: its result file (copied from the backend's
        volume first, with its log and last checkpoint), else what the backend says of
        its end and its exit code. Raises BackendUnreachable when the backend's volume
        cannot be read now."""
        await self._pull_end(backend, c)
        return await asyncio.to_thread(outcome_from_result, self._volume, c.id, status)

    async def _pull_end(self, backend: Backend, c: ContainerRow) -> None:
        if volsync.shared(backend, self._volume) or not c.session_id:
            return
        session = await self._store.sessions.find(c.session_id)
        latest = session.latest_checkpoint_id if session is not None else None
        try:
            await volsync.pull_end(backend, self._volume, c.id, c.session_id, latest)
        except BackendUnreachable:
            raise
        except ParheliaError as exc:
            log.warning("final checkpoint not copied", container_id=c.id, error=exc.message)

    async def record(self, container_id: str, outcome: Outcome, *,
                     if_live: bool = False) -> Settled:
        """Record the end in one unit. ``if_live``: only while the container is still
        live (another part may have settled it meanwhile; then nothing is recorded)."""

        def unit(tx: Tx) -> Settled:
            if if_live:
                row = tx.containers.get(container_id)
                if row is None or row.state not in CONTAINER_LIVE:
                    return Settled(False, None)
            return Settled(True, settle_container(tx, container_id, outcome))

        return await self._store.write(unit)

    async def follow_up(self, *lost: Lost | None) -> None:
        """After ends were recorded: recover each task whose worker is lost, then ask the
        dispatcher for a pass."""
        for item in lost:
            if item is not None and self._on_lost is not None:
                await self._on_lost(*item)
        self._on_settled()

    async def settle(self, container_id: str, outcome: Outcome) -> Settled:
        """Record the end, then recover and kick (:meth:`follow_up`)."""
        settled = await self.record(container_id, outcome)
        await self.follow_up(settled.lost)
        return settled
