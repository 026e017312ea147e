"""``parhelia container ...``: list, show, events, health, watch and terminate containers."""

from __future__ import annotations

import sys
from typing import Any

import click

from parhelia import statuses
from parhelia_cli import complete, confirm, params, render
from parhelia_cli.context import json_option, settings
from parhelia_cli.convert import to_dict
from parhelia_cli.durations import human_bytes, usd_short

ENDED: tuple[str, ...] = ("exited", "failed", "terminated")
"""States of a container that no longer runs: its health is not shown (it was not lost)."""
HEALTH_COLOURS = {"healthy": "green", "degraded": "yellow", "unhealthy": "red", "dead": "red",
                  "unreachable": "yellow",
                  "unknown": "dim", "running": "blue", "exited": "green", "failed": "red",
                  "lost": "red", "orphaned": "yellow", "terminated": "magenta"}


@click.group()
def container() -> None:
    """Inspect and manage worker containers (one per incarnation of a task).

    Ids may be shortened to any unique prefix; a task id (t-...) stands for its current
    (or last) container.
    """


def _cell(word: str | None) -> tuple[str, str]:
    w = word or "unknown"
    return w, HEALTH_COLOURS.get(w, "")


def _word(word: str | None) -> str:
    w = word or "unknown"
    colour = HEALTH_COLOURS.get(w, "")
    return render.style(w, colour) if colour else w


def container_rows(containers: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    rows = []
    for c in containers:
        beat = render.age(c["last_heartbeat_at"]) or "-"
        rows.append((c["id"] or "?", c["task_id"] or "-", c["backend"] or "",
                     _cell(c["state"]), _health_cell(c), beat,
                     c["consecutive_failures"] or 0, render.age(c["started_at"]) or "-",
                     usd_short(c["cost_micros"])))
    return rows


COLUMNS = ("ID", "TASK", "BACKEND", "STATE", "HEALTH", "HEARTBEAT", "MISSED", "STARTED",
           "COMPUTE")
"""COMPUTE: what the container's compute cost; `task list`'s TOTAL adds the API spend."""


def _health_cell(c: dict[str, Any]) -> tuple[str, str]:
    """Health only means something while a container runs (or when it was lost)."""
    if c["state"] in ENDED:
        return "-", ""
    return _cell(c["health"])


@container.command("list")
@click.option("--state", "states", multiple=True, type=click.Choice(statuses.CONTAINER_STATES),
              help="Only containers in this state (repeatable).")
@click.option("--health", "health", multiple=True, type=click.Choice(statuses.HEALTHS),
              help="Only containers with this health (repeatable).")
@click.option("--task", "task_id", metavar="ID", help="Only this task's containers.",
              shell_complete=complete.TASK)
@click.option("--limit", type=params.LIMIT, default=None,
              help="At most N containers, newest first (default: 100).")
@params.page_option
@json_option
def list_containers(states: tuple[str, ...], health: tuple[str, ...], task_id: str | None,
                    limit: int | None, page_token: str) -> None:
    """List containers, newest first (orphans unknown to the database too)."""
    obj = settings()
    resp = obj.api().containers.list(states=states, health=health, task_id=task_id,
                                     limit=limit, page_token=page_token)
    found = [to_dict(c) for c in resp.containers]
    if obj.json:
        render.emit_page("containers", found, resp.next_page_token)
        return
    render.table(COLUMNS, container_rows(found), empty="No matching containers.")
    render.more(resp.next_page_token)


@container.command()
@click.argument("container_id", metavar="ID", shell_complete=complete.CONTAINER)
@json_option
def show(container_id: str) -> None:
    """Show a container: state, health, heartbeats, times, exit, cost."""
    obj = settings()
    data = to_dict(obj.api().containers.get(container_id))
    if obj.json:
        render.emit_resource(data["container"] or {},
                             recent_heartbeats=data["recent_heartbeats"])
        return
    c = data["container"] or {}
    resources = ", ".join(x for x in (
        f"gpu {c['gpu']}" if c["gpu"] else "", f"{c['cpu']:g} cpu" if c["cpu"] else "",
        f"{c['memory_mb']} MiB" if c["memory_mb"] else "") if x)
    render.fields([
        ("State", _word(c["state"]) + (f" ({c['reason']})" if c["reason"] else "")),
        ("Health", f"- (not running: {c['state']})" if c["state"] in ENDED else
         _word(c["health"]) + (f", {c['consecutive_failures']} heartbeats missed"
                               if c["consecutive_failures"] else "")),
        ("Task", c["task_id"]), ("Session", c["session_id"]),
        ("Incarnation", c["incarnation"] or None),
        ("Backend", f"{c['backend']} {c['backend_id'] or ''}".strip()),
        ("Resources", resources or None),
        ("Created", render.when(c["created_at"])), ("Started", render.when(c["started_at"])),
        ("Stopped", render.when(c["stopped_at"])),
        ("Exit code", c["exit_code"] if c["has_exit_code"] else None),
        ("Last heartbeat", render.when(c["last_heartbeat_at"]) or "never"),
        ("Compute cost", usd_short(c["cost_micros"])),
    ], title=f"Container {c['id']}")
    beats = data["recent_heartbeats"] or []
    if beats:
        render.line("")
        render.table(("AT", "CPU %", "MEMORY", "DISK", "AGENT", "TURNS"), [
            ((b["at"] or "")[:19] + "Z", f"{b['cpu_percent']:.1f}", human_bytes(
                b["memory_bytes"]), human_bytes(b["disk_bytes"]),
             "alive" if b["agent_alive"] else "-", (b["usage"] or {}).get("turns", 0))
            for b in beats], title="Recent heartbeats")


@container.command("events")
@click.argument("container_id", metavar="ID", shell_complete=complete.CONTAINER)
@click.option("--limit", type=click.IntRange(min=1, max=10_000), default=None,
              help="The newest N events (default 50), shown oldest first.")
@json_option
def container_events(container_id: str, limit: int | None) -> None:
    """A container's events, oldest first (`events replay` shows a timeline)."""
    from parhelia_cli import views
    from parhelia_cli.flows.events import event_line

    obj = settings()
    data = views.container_events(obj.api(), container_id, limit)
    if obj.json:
        render.emit_json(data)
        return
    if not data["events"]:
        render.line(f"No events for container {data['container_id']}.")
    for e in data["events"]:
        render.line(event_line(e))


@container.command()
@json_option
def health() -> None:
    """Containers by health and state, orphans, and those that need attention."""
    obj = settings()
    data = to_dict(obj.api().containers.health_summary())
    if obj.json:
        render.emit_json(data)
        return
    by_health = data["by_health"] or {}
    parts = [f"{by_health[h]} {_word(h)}" for h in statuses.HEALTHS if by_health.get(h)]
    render.line("Live containers: " + (", ".join(parts) if parts else "none"))
    by_state = data["by_state"] or {}
    if by_state:
        render.line("By state: " + ", ".join(f"{n} {s}" for s, n in sorted(by_state.items())))
    if data["orphans"]:
        render.line(f"Orphans: {data['orphans']} (`parhelia cleanup` lists them)")
    attention = data["attention"] or []
    if attention:
        render.line("")
        render.table(COLUMNS, container_rows(attention), title="Needs attention")


@container.command()
@click.option("--state", "states", multiple=True, type=click.Choice(statuses.CONTAINER_STATES),
              help="Only updates of containers in this state (repeatable).")
@json_option
def watch(states: tuple[str, ...]) -> None:
    """Follow container state and health changes live until Ctrl-C (JSON lines with --json)."""
    from parhelia_cli.flows.events import event_line

    obj = settings()
    try:
        for update in obj.api().containers.watch(states=states):
            u = to_dict(update)
            if obj.json:
                render.emit_json(u, compact=True)
                sys.stdout.flush()
                continue
            c, e = u["container"] or {}, u["event"] or {}
            now = f"[{c['state']}/{c['health']}]" if c else ""
            render.line(f"{event_line(e)}  {now}".rstrip())
    except KeyboardInterrupt:
        return


@container.command()
@click.argument("container_id", metavar="ID", shell_complete=complete.CONTAINER)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def terminate(container_id: str, yes: bool) -> None:
    """Terminate a container now (its worker checkpoints first when it can).

    A running task whose container is terminated resumes in a new container from its
    latest checkpoint; cancel the task instead to stop it for good. Orphans (found by
    the reconciler) are ended too.
    """
    obj = settings()
    api = obj.api()
    if not yes and confirm.interactive():
        current = to_dict(api.containers.get(container_id).container)
        confirm.confirm(f"Terminate container {current['id']} ({current['state']}, task "
                        f"{current['task_id'] or '-'})?", yes,
                        f"terminating container {container_id}")
    else:
        confirm.confirm("", yes, f"terminating container {container_id}")
    c = to_dict(api.containers.terminate(container_id))
    if obj.json:
        render.emit_resource(c)
        return
    render.line(f"Terminated container {c['id']} (now {_word(c['state'])}).")
    if c["task_id"]:
        render.info(f"Its task {c['task_id']} resumes from its latest checkpoint if it was "
                    f"running; `parhelia task cancel {c['task_id']}` stops it.")
