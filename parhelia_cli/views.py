"""Answers made of more than one call, shared by the CLI's ``--json`` and the MCP bridge.

Each function takes the typed client (:class:`parhelia_cli.api.Api`) and returns the
JSON-ready dict that ``parhelia ... --json`` prints and the matching MCP tool returns
(ADR 0016), so the two can't drift apart. A single call needs no view: its answer
is ``to_dict(api.service.method(...))`` on both sides.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from parhelia import statuses as words
from parhelia_cli.convert import page, task_dict, to_dict, with_related

if TYPE_CHECKING:
    from parhelia.v1 import events_pb2, tasks_pb2
    from parhelia_cli.api import Api


def needs_attention(status: dict[str, Any]) -> bool:
    """Whether ``parhelia status`` exits 1: its health section says something needs the
    user (the daemon decides what)."""
    return bool(status["health"] and status["health"]["needs_attention"])


def task_list(api: Api, *, statuses: Iterable[str] = (), active: bool = False,
              limit: int | None = None, page_token: str = "") -> tasks_pb2.ListTasksResponse:
    """``task list``'s call: ``active`` asks for the unfinished states (the command
    refuses it beside ``statuses``)."""
    return api.tasks.list(statuses=words.TASK_UNFINISHED if active else tuple(statuses),
                          limit=limit, page_token=page_token)


def event_page(resp: events_pb2.ListEventsResponse) -> dict[str, Any]:
    """A page of ``events list`` as ``--json`` prints it (:func:`page`)."""
    return page("events", [to_dict(e) for e in resp.events], resp.next_page_token)


def task_page(resp: tasks_pb2.ListTasksResponse) -> dict[str, Any]:
    """A page of ``task list`` as ``--json`` prints it (:func:`page`)."""
    return page("tasks", [task_dict(t) for t in resp.tasks], resp.next_page_token)


def container_events(api: Api, container_id: str, limit: int | None) -> dict[str, Any]:
    """A container's events, oldest first (the newest ``limit``, default 50). The id is
    resolved first, so an unknown container is E203 rather than "no events"."""
    from parhelia_cli.api import event_filter

    c = api.containers.get(container_id).container
    resp = api.events.list(event_filter(container_id=c.id), limit=limit)
    return {"container_id": c.id, "events": [to_dict(e) for e in resp.events]}


def task_show(api: Api, task_id: str) -> dict[str, Any]:
    """A task with its ``resume_degraded`` events (resumes that had to start a new
    conversation from a summary of the stored one)."""
    from parhelia_cli.api import event_filter

    t = task_dict(api.tasks.get(task_id))
    degraded = api.events.list(event_filter(task_id=t["id"], types=["resume_degraded"]),
                               limit=20)
    return with_related(t, resume_degraded=[to_dict(e) for e in degraded.events])


def cleanup(api: Api, *, terminate: bool) -> dict[str, Any]:
    """The orphaned containers (ended with ``terminate``; a dry run without)."""
    data = to_dict(api.reconciler.cleanup(terminate=terminate))
    return {"dry_run": not terminate, **data, "orphans": data["orphans"] or []}
