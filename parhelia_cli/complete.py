"""Shell completion of ids: ``parhelia task show <TAB>`` offers the ids the daemon knows.

Completion runs on every TAB, so it must be fast and silent: it never starts the daemon,
waits at most :data:`TIMEOUT` seconds, and offers nothing (rather than an error) when
the daemon is not running or anything else goes wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

TIMEOUT = 0.5
"""Seconds one completion may wait for the daemon."""
LIMIT = 50
"""At most this many ids are offered (newest first)."""

Completer = Callable[[click.Context, click.Parameter, str], list[Any]]


def _ids(kind: str, socket: str | None) -> list[tuple[str, str]]:
    """``(id, help)`` of the newest ``kind`` objects; [] when the daemon is not there."""
    from parhelia_cli import client as client_module
    from parhelia_cli.api import Api
    from parhelia_cli.convert import task_dict

    p = client_module.Client.resolve(socket)
    answer = client_module.dial(p.socket)
    if answer is None:
        return []
    c = client_module.Client(p, answer[0], answer[1])
    api = Api(c, timeout=TIMEOUT)
    try:
        if kind == "task":
            return [(t["id"], _help(t["status"] or "", t["prompt"] or ""))
                    for t in map(task_dict, api.tasks.list(limit=LIMIT).tasks)]
        if kind == "session":
            resp = api.sessions.list(include_finished=True, limit=LIMIT)
            return [(s.id, f"task {s.task_id}") for s in resp.sessions]
        if kind == "container":
            return [(x.id, f"task {x.task_id}")
                    for x in api.containers.list(limit=LIMIT).containers]
        return [(x.id, f"{x.trigger} of {x.session_id}")
                for x in api.checkpoints.list(limit=LIMIT).checkpoints]
    finally:
        c.close()


def _help(status: str, prompt: str) -> str:
    first = " ".join(prompt.split())[:40]
    return f"{status}: {first}"


def ids(*kinds: str) -> Completer:
    """A ``shell_complete`` callback offering the ids of ``kinds`` that start with what
    was typed (``task`` ids too wherever a task stands for its session or container)."""

    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        socket = getattr(ctx.find_root().obj, "socket", None)
        found: list[tuple[str, str]] = []
        for kind in kinds:
            try:
                found.extend(_ids(kind, socket))
            except Exception:
                return []
        return [CompletionItem(i, help=h) for i, h in found if i.startswith(incomplete)]

    return complete


TASK = ids("task")
SESSION = ids("session", "task")
CONTAINER = ids("container", "task")
CHECKPOINT = ids("checkpoint")
