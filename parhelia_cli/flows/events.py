"""Events as the CLI filters and prints them (`events`, `container events`, `session
recover`; the bridge's event tools build the same filter)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from parhelia_cli import render

if TYPE_CHECKING:
    from parhelia.v1 import common_pb2


def build_filter(types: tuple[tuple[str, ...], ...], level: str | None,
                 since: datetime | None, until: datetime | None, task_id: str | None,
                 session_id: str | None, container_id: str | None, after_id: int = 0
                 ) -> common_pb2.EventFilter:
    """The ``EventFilter`` message for the parsed options."""
    from parhelia_cli.api import event_filter
    from parhelia_cli.errors import invalid

    if since and until and since > until:
        raise invalid("--since is after --until")
    return event_filter(types=[t for group in types for t in group], min_level=level,
                        since=since, until=until, task_id=task_id, session_id=session_id,
                        container_id=container_id, after_id=after_id)


def event_line(e: dict[str, Any]) -> str:
    """One human line: time, level, type, ids, message."""
    at = (e["at"] or "")[:19] + "Z" if e["at"] else "-"
    ids = " ".join(f"{k}={e[k + '_id']}" for k in ("task", "session", "container")
                   if e[k + "_id"])
    level = e["level"] or "info"
    level_text = render.style(f"{level:<7}", render.STATUS_COLOURS.get(level, ""))
    parts = [at, level_text, f"{e['type'] or '?':<22}"]
    if ids:
        parts.append(ids)
    if e["message"]:
        parts.append(render.safe(e["message"]))
    return "  ".join(parts)
