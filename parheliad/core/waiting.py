"""Why a pending task waits: one reason per task, kept on the task itself.

A task that is not running says why, wherever it is shown (``task show``, ``task
list``, ``--sync``, ``--json``, ``status``). The reason lives in the task's columns:

- ``status_reason``: one line for people — what it waits for and what ends the wait;
- ``status_code``: the catalogue code of that reason (``""`` when nothing is wrong:
  waiting for a free worker slot, held by ``--no-dispatch``);
- ``needs_user``: the wait ends only by the user's hand (a task that can never fit the
  budget, a paused task, a held task); ``parhelia status`` exits 1 while one exists;
- ``held``: created with ``--no-dispatch``; only ``task dispatch`` releases it;
- ``dispatch_after``: no dispatch attempt before this time (backoff after a transient
  refusal such as no capacity on a backend).

Every status change (:func:`parheliad.core.tasks.transition`) starts a new wait: it
resets the code, hold and backoff. Inside a writer unit, :func:`set_waiting` records a
reason and appends one event when the reason changes — never one per dispatch pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from parheliad.core.states import TaskStatus
from parheliad.store.clock import US_PER_SECOND, now_us
from parheliad.store.rows import TaskRow
from parheliad.store.tx import Tx

REFUSED_EVENT = "task_dispatch_refused"
"""A wait with a catalogue code, or one only the user can end (warning level)."""
WAITING_EVENT = "task_waiting"
"""An ordinary wait (a free slot, the session's previous worker; info level)."""

TRANSIENT_CODES = frozenset({"E500", "E501", "E502", "E503", "E504"})
"""Dispatch refusals that may pass by themselves: the task stays queued and the
dispatcher tries again after a backoff. Any other refusal fails the task."""


@dataclass(frozen=True)
class Wait:
    """Why one pending task is not running now."""

    reason: str
    code: str = ""
    needs_user: bool = False
    retry_after_seconds: float | None = None
    """Backoff: the dispatcher leaves the task alone for this long."""
    progress: bool = False
    """The reason reports progress (``building environment img-...: 40 s, ...``): when the
    task already waits for the same thing (the text before the first ``:``), only the
    text is updated, with no new event."""

    def same_as(self, task: TaskRow) -> bool:
        return (task.status_reason, task.status_code, task.needs_user) == \
            (self.reason, self.code, self.needs_user)


def held_reason(task_id: str) -> str:
    return (f"held: created with --no-dispatch; `parhelia task dispatch {task_id}` "
            "starts it")


def set_waiting(tx: Tx, task_id: str, wait: Wait,
                statuses: Iterable[TaskStatus] = (TaskStatus.PENDING,)) -> TaskRow | None:
    """Inside a unit: record why a pending task (or one in ``statuses``) waits.

    Returns the updated row when the reason changed, None when it is unchanged or the
    task is no longer pending (dispatched, cancelled...). An event is appended when the
    wait changes: another code, or another reason for a wait without a code (a refusal
    whose figures moved, e.g. the budget spent so far, only updates its text).
    """
    task = tx.tasks.get(task_id)
    if task is None or task.status not in tuple(statuses):
        return None
    after = None if wait.retry_after_seconds is None else \
        now_us() + int(wait.retry_after_seconds * US_PER_SECOND)
    if wait.same_as(task):
        if after != task.dispatch_after:
            tx.tasks.update(task.id, dispatch_after=after, updated_at=task.updated_at)
        return None
    row = tx.tasks.update(task.id, status_reason=wait.reason[:1000], status_code=wait.code,
                          needs_user=wait.needs_user, dispatch_after=after)
    if (task.status_code, task.needs_user) == (wait.code, wait.needs_user) and wait.code:
        return row  # the same refusal with new figures (spend moved): no new event
    if wait.progress and task.status_reason.split(":", 1)[0] == wait.reason.split(":", 1)[0]:
        return row  # the same wait, further along
    tx.events.append(REFUSED_EVENT if wait.code or wait.needs_user else WAITING_EVENT,
                     wait.reason[:1000], task_id=task.id, session_id=task.session_id,
                     data={"code": wait.code, "reason": wait.reason[:1000],
                           "needs_user": wait.needs_user,
                           "retry_after_seconds": wait.retry_after_seconds})
    return row


def hold(tx: Tx, task_id: str) -> TaskRow:
    """Inside a unit: a pending task is held until ``task dispatch`` releases it."""
    return tx.tasks.update(task_id, held=True, status_reason=held_reason(task_id),
                           status_code="", needs_user=True)


def release(tx: Tx, task_ids: Iterable[str] | None = None) -> list[str]:
    """Inside a unit: release held pending tasks (all of them when ``task_ids`` is None),
    and end their backoffs; the ids released."""
    if task_ids is None:
        task_ids = tx.tasks.waiting_for_dispatch()
    released = []
    for task_id in task_ids:
        task = tx.tasks.require(task_id)
        if task.status != TaskStatus.PENDING:
            continue
        fields: dict[str, object] = {"dispatch_after": None}
        if task.held:
            fields.update(held=False, status_reason="released by `task dispatch`",
                          status_code="", needs_user=False)
            released.append(task.id)
            tx.events.append(WAITING_EVENT, f"task {task.id} released by `task dispatch`",
                             task_id=task.id, data={"released": True})
        tx.tasks.update(task.id, **fields)
    return released
