"""The status words of tasks, containers and sessions, defined once (standard library only).

What a person types (``parhelia task list --status running``), what ``--json`` prints,
what the MCP bridge's input schemas offer and what the daemon stores are these words. On
the wire (``parhelia/v1/common.proto``) task statuses, container states and health are
protobuf enums whose value names are a prefix plus the upper-cased word
(``TASK_STATUS_RUNNING``); :func:`proto_name` and :func:`word_of` are the one mapping
between the two, and a test checks that both sides list the same words. A session's
status travels as the word itself (``Session.status``).

The daemon's state machines (``parheliad.core.states``) are built on these enums.
"""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    RECOVERING = "recovering"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ContainerState(StrEnum):
    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    EXITED = "exited"
    FAILED = "failed"
    TERMINATED = "terminated"
    LOST = "lost"
    ORPHANED = "orphaned"


class Health(StrEnum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    DEAD = "dead"
    UNREACHABLE = "unreachable"
    """Its backend cannot be asked now: nothing is known, nothing is counted as silence."""


class SessionStatus(StrEnum):
    """What runs a session's conversation now (docs/adr/0020-interactive-sessions.md)."""

    HEADLESS = "headless"
    """A worker runs the agent headless (``claude -p``)."""
    DETACHED = "detached"
    """A worker runs the interactive TUI in tmux; nobody is attached."""
    ATTACHED = "attached"
    """A worker runs the interactive TUI in tmux with one or more clients attached."""
    STOPPED = "stopped"
    """No worker runs it; resumable."""
    COMPLETED = "completed"
    """Its task completed (the task's own word)."""


# The words as plain strings, in the wire's order (what a CLI choice or a schema lists).
TASK_STATUSES: tuple[str, ...] = tuple(s.value for s in TaskStatus)
TASK_FINAL: tuple[str, ...] = ("completed", "failed", "cancelled")
TASK_UNFINISHED: tuple[str, ...] = tuple(s for s in TASK_STATUSES if s not in TASK_FINAL)
CONTAINER_STATES: tuple[str, ...] = tuple(s.value for s in ContainerState)
HEALTHS: tuple[str, ...] = tuple(s.value for s in Health)
SESSION_STATUSES: tuple[str, ...] = tuple(s.value for s in SessionStatus)

Vocabulary = type[TaskStatus] | type[ContainerState] | type[Health]

PROTO_PREFIX: dict[Vocabulary, str] = {
    TaskStatus: "TASK_STATUS_",
    ContainerState: "CONTAINER_STATE_",
    Health: "HEALTH_",
}
"""The prefix of each vocabulary's value names in ``parhelia/v1/common.proto``."""


def proto_name(kind: Vocabulary, word: str) -> str:
    """``proto_name(TaskStatus, "running")`` -> ``"TASK_STATUS_RUNNING"``; ValueError
    (naming the accepted words) for a word that is not one of ``kind``'s."""
    try:
        member = kind(word)
    except ValueError:
        raise ValueError(f"{word!r} is not one of {', '.join(kind)}") from None
    return PROTO_PREFIX[kind] + member.name


def word_of(kind: Vocabulary, name: str) -> str | None:
    """``word_of(TaskStatus, "TASK_STATUS_RUNNING")`` -> ``"running"``; None for
    UNSPECIFIED or a name that is not one of ``kind``'s values."""
    prefix = PROTO_PREFIX[kind]
    if not name.startswith(prefix):
        return None
    member = kind.__members__.get(name[len(prefix):])
    return None if member is None else str(member.value)
