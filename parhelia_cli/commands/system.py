"""``status``, ``doctor`` and ``config show``."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from parhelia.statuses import TASK_STATUSES
from parhelia_cli import render
from parhelia_cli.context import json_option, settings
from parhelia_cli.convert import to_dict
from parhelia_cli.durations import human_seconds
from parhelia_cli.errors import CliError, TaskOutcome

TASK_STATUS_ORDER = TASK_STATUSES


@click.command()
@json_option
def status() -> None:
    """Daemon version, uptime, socket, database, tasks by state, backends, health.

    Exits 1 when something needs attention: unhealthy or dead containers, orphans
    still running, tasks recovering, a reconciler that stopped running, or tasks that
    wait for you — a task that cannot fit the budget, a paused task, a task held by
    --no-dispatch (the health section lists the reasons). `parhelia help errors` lists
    every exit code.
    """
    from parhelia_cli import views

    obj = settings()
    data = to_dict(obj.api().system.status())
    attention = views.needs_attention(data)
    if obj.json:
        render.emit_json(data)
    else:
        _print_status(data)
    if attention:
        raise TaskOutcome(1)


def _print_status(d: dict[str, Any]) -> None:
    from parhelia_cli.client import address

    render.fields([
        ("Version", d["version"]),
        ("PID", d["pid"] or None),
        ("Uptime", human_seconds(d["uptime_seconds"]) + (f" (since {d['started_at']})"
                                                         if d["started_at"] else "")),
        ("Socket", address(d["socket_path"]) if d["socket_path"] else None),
        ("Database", d["database_path"]),
        ("Home", d["home"]),
        ("Instance", d["instance_id"]),
        ("Containers", f"{d['running_containers']} running"),
    ], title="parheliad")
    counts = d["tasks_by_status"]
    ordered = [s for s in TASK_STATUS_ORDER if s in counts] + \
        sorted(s for s in counts if s not in TASK_STATUS_ORDER)
    total = sum(counts.values())
    tasks = ", ".join(f"{counts[s]} {render.status_word(s)}" for s in ordered if counts[s])
    render.line(f"\nTasks: {total}" + (f" ({tasks})" if tasks else ""))
    if d["backends"]:
        render.line("\nBackends:")
        for b in d["backends"]:
            state = render.style("available", "green") if b["available"] else \
                render.style("unavailable", "yellow")
            render.line(f"  {b['name']:<8} {state}" + (f"  {b['detail']}" if b["detail"] else ""))
    h = d["health"]
    if h is not None:
        parts = [f"{h[k]} {k}" for k in ("healthy", "degraded", "unhealthy", "dead", "unknown")
                 if h[k]]
        if h["orphans"]:
            parts.append(f"{h['orphans']} orphaned")
        if h["recovering_tasks"]:
            parts.append(f"{h['recovering_tasks']} tasks recovering")
        render.line("\nHealth: " + (", ".join(parts) if parts else "no containers"))
        if h["reconciler_last_run"]:
            render.line(f"  reconciler last ran {render.age(h['reconciler_last_run'])}")
        if h["needs_attention"]:
            render.line("  " + render.style("Needs attention:", "red"))
            for reason in h["attention"]:
                render.line(f"    - {reason}")


@click.command()
@click.option("--check-modal", is_flag=True,
              help="Also ask Modal now (token, app, volume, secret); ten seconds at most.")
@json_option
def doctor(check_modal: bool) -> None:
    """Check the daemon, config, agent binary, credentials, disk and Modal.

    Each check says what it looked at just now; without --check-modal nothing is asked of
    Modal. Each failed check says how to fix it. Exits 1 when any check fails.
    """
    from parhelia_cli.progress import reporting

    obj = settings()
    if check_modal and not obj.json:
        render.line("Asking Modal now (10 s at most)...", err=True)
    try:
        with reporting(obj.json) as on_progress:
            resp = obj.api().system.doctor(check_modal=check_modal, on_progress=on_progress)
        checks = [to_dict(c) for c in resp.checks]
        unreachable = None
    except CliError as exc:
        if exc.code != "E504":
            raise
        unreachable = exc
        checks = [{"name": "daemon", "status": "fail", "detail": exc.message,
                   "fix": "parhelia daemon start; parhelia daemon logs"}]
    if obj.json:
        render.emit_json({"checks": checks, "ok": all(c["status"] != "fail" for c in checks)})
    else:
        for c in checks:
            mark = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}.get(c["status"] or "", "?   ")
            mark = render.style(mark, render.STATUS_COLOURS.get(c["status"] or "", ""))
            render.line(f"[{mark}] {c['name']}" + (f": {c['detail']}" if c["detail"] else ""))
            if c["fix"] and c["status"] != "ok":
                render.line(f"       fix: {c['fix']}")
    if unreachable is not None:
        raise TaskOutcome(unreachable.exit_code)
    if any(c["status"] == "fail" for c in checks):
        raise TaskOutcome(1)


@click.group()
def config() -> None:
    """Show the effective configuration; sync your Claude Code setup to workers."""


@config.command("show")
@click.option("--project-dir", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Project whose .parhelia/config.toml applies (default: the current dir).")
@json_option
def config_show(project_dir: str | None) -> None:
    """Every configuration key, its value and where it came from; a DAEMON USES column
    when the running daemon uses another value (`parhelia daemon reload` applies it)."""
    obj = settings()
    data = to_dict(obj.api().config.get(os.path.abspath(project_dir or ".")))
    if obj.json:
        render.emit_json(data)
        return
    stale = [v for v in data["values"] if v["in_use"] is not None]
    rows = [(v["key"], json.dumps(v["value"], ensure_ascii=False), v["source"],
             *((_in_use(v),) if stale else ())) for v in data["values"]]
    render.table(("KEY", "VALUE", "SOURCE", *(("DAEMON USES",) if stale else ())), rows,
                 empty="No configuration values.")
    if data["files"]:
        render.line("Files: " + ", ".join(data["files"]))
    for warning in data.get("warnings") or ():
        render.warn(warning)
    if stale:
        later = [v["key"] for v in stale if v["needs_restart"]]
        render.info(f"The daemon still uses other values for {len(stale)} key(s): "
                    + ("`parhelia daemon reload` applies them"
                       if len(later) < len(stale) else "")
                    + ("; " if later and len(later) < len(stale) else "")
                    + (f"{', '.join(later)} need `parhelia daemon restart`" if later else "")
                    + ".")


def _in_use(value: dict[str, Any]) -> str:
    """The DAEMON USES cell: the value in use when it differs from the files'."""
    if value["in_use"] is None:
        return ""
    return json.dumps(value["in_use"], ensure_ascii=False) + \
        (" (until restart)" if value["needs_restart"] else " (until reload)")


@config.command("sync")
@click.option("--dry-run", is_flag=True,
              help="Only show what would be sent, left out and rewritten; upload nothing.")
@json_option
def config_sync(dry_run: bool) -> None:
    """Send your Claude Code config (CLAUDE.md, settings, agents, commands, skills,
    plugins, MCP servers) to the workers, without its secrets.

    Lists every file sent (bytes, new bytes), everything left out and why (secret,
    env: a settings env value, withheld but not a recognisable credential; cache,
    excluded, missing_command, not_config, invalid) and every path rewritten.
    `task create` syncs by itself when the config changed; run this to see the
    details first, or after installing a command an MCP server needs.
    """
    from parhelia_cli import progress

    obj = settings()
    with progress.reporting(obj.json) as on_progress:
        data = to_dict(obj.api().config.sync(dry_run=dry_run, on_progress=on_progress))
    data["dry_run"] = dry_run
    if obj.json:
        render.emit_json(data)
        return
    _print_sync(data, dry_run)


def _print_sync(d: dict[str, Any], dry_run: bool) -> None:
    from parhelia_cli.durations import human_bytes

    render.table(("SENT", "BYTES", "NEW"),
                 [(i["path"], human_bytes(i["bytes"]), "new" if i["new"] else "")
                  for i in d["items"]]
                 + [(f"mcp:{name}", "", "MCP server") for name in d["mcp_servers"]],
                 empty="Nothing to send.")
    if d["excluded"]:
        render.line()
        render.table(("LEFT OUT", "REASON", "DETAIL"),
                     [(e["path"], e["reason"], e["detail"] or "") for e in d["excluded"]])
    if d["rewrites"]:
        render.line()
        render.table(("REWRITTEN IN", "KEY", "BEFORE", "AFTER"),
                     [(r["file"], r["key"], r["before"], r["after"]) for r in d["rewrites"]])
    for warning in d["warnings"]:
        render.warn(warning)
    render.line()
    passed = f"; passed as environment variables: {', '.join(d['passed_env'])}" \
        if d["passed_env"] else ""
    servers = len(d["mcp_servers"])
    mcp = f" and {servers} MCP server{'s' if servers != 1 else ''}" if servers else ""
    summary = (f"{d['files']} files{mcp}, {human_bytes(d['bytes'])} "
               f"({human_bytes(d['new_bytes'])} new) from {d['source_dir']}{passed}")
    if d["bundle_id"] is None:
        render.line(f"No Claude configuration found in {d['source_dir']}; nothing to sync.")
    elif dry_run:
        render.line(f"Dry run: bundle {d['bundle_id']} would hold {summary}. Nothing uploaded.")
    else:
        render.line(f"Synced bundle {d['bundle_id']}: {summary}.")
