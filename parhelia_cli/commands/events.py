"""``parhelia events list|watch|export|replay``: query, follow, export and replay the
event log."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from parhelia_cli import complete, params, render, views
from parhelia_cli.context import json_option, settings
from parhelia_cli.convert import to_dict
from parhelia_cli.flows.events import build_filter, event_line

if TYPE_CHECKING:
    pass

F = TypeVar("F", bound=Callable[..., Any])


@click.group()
def events() -> None:
    """Query and follow the event log (alias: e)."""


def filter_options(f: F) -> F:
    """The filters shared by ``events list`` and ``events watch``."""
    options = [
        click.option("--type", "types", multiple=True, type=params.EVENT_TYPES,
                     help="Event type (repeatable, or comma-separated).", metavar="TYPE"),
        click.option("--level", type=params.LEVEL,
                     help="Minimum level: debug, info, warning, error."),
        click.option("--since", type=params.INSTANT, help="From: 30m, 2d, 1w ago or RFC 3339."),
        click.option("--until", type=params.INSTANT, help="Until: 30m, 2d, 1w ago or RFC 3339."),
        click.option("--task", "task_id", metavar="ID", help="Only this task's events.",
                     shell_complete=complete.TASK),
        click.option("--session", "session_id", metavar="ID", help="Only this session's.",
                     shell_complete=complete.SESSION),
        click.option("--container", "container_id", metavar="ID", shell_complete=complete.CONTAINER,
                     help="Only this container's."),
    ]
    for option in reversed(options):
        f = option(f)
    return f






@events.command("list")
@filter_options
@click.option("--limit", type=params.LIMIT, default=None,
              help="The newest N matching events (default 50), shown oldest first.")
@params.page_option
@json_option
def list_events(types: tuple[tuple[str, ...], ...], level: str | None, since: datetime | None,
                until: datetime | None, task_id: str | None, session_id: str | None,
                container_id: str | None, limit: int | None, page_token: str) -> None:
    """Recent events matching the filters, oldest first (--page-token: the ones before)."""
    flt = build_filter(types, level, since, until, task_id, session_id, container_id)
    obj = settings()
    resp = obj.api().events.list(flt, limit=limit, page_token=page_token)
    if obj.json:
        render.emit_json(views.event_page(resp))
        return
    found = [to_dict(e) for e in resp.events]
    if not found:
        render.line("No matching events.")
    for e in found:
        render.line(event_line(e))
    render.more(resp.next_page_token)


@events.command()
@filter_options
@click.option("--backlog", type=params.BACKLOG, default=0, show_default=True,
              help="Also show this many recent matching events first.")
@json_option
def watch(types: tuple[tuple[str, ...], ...], level: str | None, since: datetime | None,
          until: datetime | None, task_id: str | None, session_id: str | None,
          container_id: str | None, backlog: int) -> None:
    """Follow events live, one line each (JSON lines with --json) until Ctrl-C."""
    flt = build_filter(types, level, since, until, task_id, session_id, container_id)
    obj = settings()
    try:
        for event in obj.api().events.watch(flt, backlog=backlog):
            e = to_dict(event)
            if obj.json:
                render.emit_json(e, compact=True)
                import sys

                sys.stdout.flush()
            else:
                render.line(event_line(e))
    except KeyboardInterrupt:
        return


@events.command("export")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=str))
@click.option("--format", "fmt", type=click.Choice(("jsonl", "json")), default="jsonl",
              show_default=True, help='JSON lines, or one JSON object {"events": [...]} '
              "(as `events list --json` prints).")
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@filter_options
@json_option
def export(file: str, fmt: str, force: bool, types: tuple[tuple[str, ...], ...],
           level: str | None, since: datetime | None, until: datetime | None,
           task_id: str | None, session_id: str | None, container_id: str | None) -> None:
    """Write every matching event, oldest first, to FILE (- for stdout).

    Events are written as they arrive, so memory stays flat however many there are;
    the file appears under its name only once the export is complete. An existing
    file is replaced only with --force; a FIFO or device is written to, never replaced.
    """
    import contextlib
    import json
    import os
    import sys
    from pathlib import Path

    from parhelia.outpath import open_output

    flt = build_filter(types, level, since, until, task_id, session_id, container_id)
    obj = settings()
    target = contextlib.nullcontext(sys.stdout) if file == "-" else \
        open_output(Path(file), force=force, encoding="utf-8")
    count = 0
    with target as out:
        stream = obj.api().events.export(flt)
        if fmt == "json":  # the list envelope of every --json list (ADR 0016)
            out.write('{"events":[')
        for event in stream:
            text = json.dumps(to_dict(event), ensure_ascii=False, separators=(",", ":"))
            if fmt == "json":
                out.write(("\n" if count == 0 else ",\n") + text)
            else:
                out.write(text + "\n")
            count += 1
        if fmt == "json":
            out.write("\n]}\n" if count else "]}\n")
        out.flush()
    if file != "-":
        if obj.json:
            render.emit_json({"file": os.path.abspath(file), "format": fmt, "events": count})
        else:
            render.info(f"Exported {count} event(s) to {file} ({fmt}).")


@events.command()
@click.argument("container_id", metavar="CONTAINER|TASK", shell_complete=complete.CONTAINER)
@click.option("--from-start", is_flag=True, help="The container's whole history.")
@click.option("--since", type=params.INSTANT, help="From: 30m, 2d, 1w ago or RFC 3339.")
@json_option
def replay(container_id: str, from_start: bool, since: datetime | None) -> None:
    """A container's history as a timeline (default: its newest 50 events). A task id
    replays the task's current (or last) container.

    Each line shows the time since the first event shown and since the previous one;
    events are shown in time order.
    """
    from parhelia_cli.errors import invalid

    if from_start and since:
        raise invalid("--from-start and --since contradict each other")
    obj = settings()
    first: datetime | None = None
    previous: datetime | None = None
    shown = 0
    raw = obj.api().events.replay(container_id, from_start=from_start, since=since)
    stream: Iterator[dict[str, Any]] = (to_dict(event) for event in raw)
    if not obj.json:
        # Commit order is not always time order (a worker's record can land after the
        # daemon's own event): a timeline is in time order, so no gap is negative.
        stream = iter(sorted(stream, key=lambda e: (e["at"] or "", e["id"])))
    for e in stream:
        if obj.json:
            render.emit_json(e, compact=True)
            shown += 1
            continue
        at = render.parse_ts(e["at"])
        if at is None:
            continue
        if first is None:
            first = previous = at
            render.line(f"Container {e['container_id']} from {e['at']}:")
        assert previous is not None
        offset = (at - first).total_seconds()
        gap = (at - previous).total_seconds()
        previous = at
        level = e["level"] or "info"
        level_text = render.style(f"{level:<7}", render.STATUS_COLOURS.get(level, ""))
        render.line(f"  +{offset:9.3f}s  (+{gap:7.3f}s)  {level_text}  {e['type'] or '?':<22}  "
                    f"{render.safe(e['message'])}".rstrip())
        shown += 1
    if not shown and not obj.json:
        render.line("No events to replay.")
