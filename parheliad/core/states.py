"""The state machines of Parhelia (task, container, session), each defined once here.

Pure data and functions, no I/O. The store's single writer checks every status or
state change against these tables, so an illegal transition can't be written by
any code path; it raises ``ParheliaError("E603")``.
"""

from __future__ import annotations

from collections.abc import Mapping

from parhelia.errors import ParheliaError

# The words themselves are the contract's (parhelia.statuses); the transitions are here.
from parhelia.statuses import ContainerState, Health, SessionStatus, TaskStatus

T = TaskStatus
TASK_TRANSITIONS: Mapping[TaskStatus, frozenset[TaskStatus]] = {
    # dispatch; cancel before start; fail when no dispatch is possible (e.g. no credentials)
    T.PENDING: frozenset({T.RUNNING, T.CANCELLED, T.FAILED}),
    # ... -> pending: its launch found no capacity (or its backend unreachable): queued again
    T.RUNNING: frozenset({T.COMPLETED, T.FAILED, T.CANCELLED, T.RECOVERING, T.PAUSED,
                          T.PENDING}),
    # recovery succeeds, gives up, is cancelled, the budget pauses it meanwhile, or its
    # launch found no capacity (queued again)
    T.RECOVERING: frozenset({T.RUNNING, T.FAILED, T.CANCELLED, T.PAUSED, T.PENDING}),
    # resumed (ceiling raised / user) or cancelled while paused; completed when its
    # agent's result arrives after the budget paused it (parheliad.core.budget)
    T.PAUSED: frozenset({T.PENDING, T.CANCELLED, T.COMPLETED}),
    # retry from checkpoint zero re-queues a finished task
    T.COMPLETED: frozenset({T.PENDING}),
    T.FAILED: frozenset({T.PENDING}),
    T.CANCELLED: frozenset({T.PENDING}),
}
del T

TASK_FINAL: frozenset[TaskStatus] = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})
TASK_ACTIVE: frozenset[TaskStatus] = frozenset({TaskStatus.RUNNING, TaskStatus.RECOVERING})


def can_transition_task(current: str, new: str) -> bool:
    return TaskStatus(new) in TASK_TRANSITIONS[TaskStatus(current)]


def _illegal(noun: str, ident: str, current: str, new: str) -> ParheliaError:
    what = f"{noun} {ident} " if ident else f"a {noun} "
    return ParheliaError("E603", f"{what}cannot go from {current} to {new}",
                         current=current, new=new)


def check_task_transition(current: str, new: str, *, task_id: str = "") -> None:
    """Raise E603 unless ``current -> new`` is a legal task transition."""
    if not can_transition_task(current, new):
        raise _illegal("task", task_id, current, new)


C = ContainerState
_ENDINGS = frozenset({C.EXITED, C.FAILED, C.TERMINATED, C.LOST})
CONTAINER_TRANSITIONS: Mapping[ContainerState, frozenset[ContainerState]] = {
    C.CREATED: frozenset({C.STARTING}) | _ENDINGS,
    C.STARTING: frozenset({C.RUNNING}) | _ENDINGS,
    C.RUNNING: _ENDINGS,
    # terminal here, but the reconciler may still find it alive on its backend
    C.EXITED: frozenset({C.ORPHANED}),
    C.FAILED: frozenset({C.ORPHANED}),
    C.TERMINATED: frozenset({C.ORPHANED}),
    C.LOST: frozenset({C.ORPHANED}),
    # an orphan is terminated (cleanup) or vanishes
    C.ORPHANED: frozenset({C.TERMINATED, C.LOST}),
}
del C

CONTAINER_FINAL: frozenset[ContainerState] = frozenset(
    {ContainerState.EXITED, ContainerState.FAILED, ContainerState.TERMINATED,
     ContainerState.LOST})
CONTAINER_LIVE: frozenset[ContainerState] = frozenset(
    {ContainerState.CREATED, ContainerState.STARTING, ContainerState.RUNNING})


def can_transition_container(current: str, new: str) -> bool:
    return ContainerState(new) in CONTAINER_TRANSITIONS[ContainerState(current)]


def check_container_transition(current: str, new: str, *, container_id: str = "") -> None:
    """Raise E603 unless ``current -> new`` is a legal container transition."""
    if not can_transition_container(current, new):
        raise _illegal("container", container_id, current, new)


S = SessionStatus
SESSION_TRANSITIONS: Mapping[SessionStatus, frozenset[SessionStatus]] = {
    # take over (-> detached: the TUI starts, nobody attached yet); the worker ends
    S.HEADLESS: frozenset({S.DETACHED, S.STOPPED, S.COMPLETED}),
    # a client attaches; hand back (release); the worker ends
    S.DETACHED: frozenset({S.ATTACHED, S.HEADLESS, S.STOPPED, S.COMPLETED}),
    # the last client detaches; hand back (the clients are closed with the TUI); the end
    S.ATTACHED: frozenset({S.DETACHED, S.HEADLESS, S.STOPPED, S.COMPLETED}),
    # resumed (a new worker, headless or interactive); a late completion is recorded
    S.STOPPED: frozenset({S.HEADLESS, S.DETACHED, S.COMPLETED}),
    # a completed task's session resumed (`parhelia resume`)
    S.COMPLETED: frozenset({S.HEADLESS, S.DETACHED}),
}
del S

SESSION_INITIAL: frozenset[SessionStatus] = frozenset(
    {SessionStatus.HEADLESS, SessionStatus.DETACHED})
"""A session is created by its first dispatch: headless, or interactive (detached)."""
SESSION_LIVE: frozenset[SessionStatus] = frozenset(
    {SessionStatus.HEADLESS, SessionStatus.DETACHED, SessionStatus.ATTACHED})
SESSION_INTERACTIVE: frozenset[SessionStatus] = frozenset(
    {SessionStatus.DETACHED, SessionStatus.ATTACHED})


def can_transition_session(current: str, new: str) -> bool:
    return SessionStatus(new) in SESSION_TRANSITIONS[SessionStatus(current)]


def check_session_transition(current: str, new: str, *, session_id: str = "") -> None:
    """Raise E603 unless ``current -> new`` is a legal session transition."""
    if not can_transition_session(current, new):
        raise _illegal("session", session_id, current, new)


def session_status_for(live: bool, *, interactive: bool = False, clients: int = 0,
                       completed: bool = False) -> SessionStatus:
    """The status that says what runs a session: a live worker's mode (interactive with
    ``clients`` attached, or headless), else completed or stopped."""
    if live:
        if not interactive:
            return SessionStatus.HEADLESS
        return SessionStatus.ATTACHED if clients > 0 else SessionStatus.DETACHED
    return SessionStatus.COMPLETED if completed else SessionStatus.STOPPED


DEGRADED_AFTER_MISSED = 1
UNHEALTHY_AFTER_MISSED = 3
DEAD_AFTER_MISSED = 5


def health_after(current: str, *, heartbeat: bool, missed: int = 0) -> Health:
    """The health that follows an observation: a heartbeat arrived, or ``missed`` in a row.

    unknown -> healthy <-> degraded (>=1 missed) -> unhealthy (>=3) -> dead (>=5).
    A heartbeat heals anything but ``dead``, which is final for the incarnation.
    """
    now = Health(current)
    if now is Health.DEAD:
        return now
    if heartbeat:
        return Health.HEALTHY
    if missed >= DEAD_AFTER_MISSED:
        return Health.DEAD
    if missed >= UNHEALTHY_AFTER_MISSED:
        return Health.UNHEALTHY
    if missed >= DEGRADED_AFTER_MISSED:
        return Health.DEGRADED
    return now
