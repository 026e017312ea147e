"""``parhelia reconciler status|run`` and ``parhelia cleanup``."""

from __future__ import annotations

from typing import Any

import click

from parhelia_cli import render
from parhelia_cli.context import json_option, settings
from parhelia_cli.convert import to_dict
from parhelia_cli.durations import human_seconds, usd_short

KIND_COLOURS = {"lost": "red", "orphaned": "yellow", "state_drift": "cyan"}


@click.group()
def reconciler() -> None:
    """Compare the database with what the backends really run.

    The reconciler runs every reconciler.poll_interval_seconds and at daemon start. It
    only ever looks at containers carrying this daemon's owner tag.
    """


def print_findings(findings: list[dict[str, Any]]) -> None:
    if not findings:
        render.line("No findings: the database and the backends agree.")
        return
    render.table(("KIND", "CONTAINER", "BACKEND ID", "DETAIL", "ACTION"), [
        ((f["kind"] or "?", KIND_COLOURS.get(f["kind"] or "", "")), f["container_id"] or "-",
         f["backend_id"] or "-", f["detail"] or "", f["action"] or "") for f in findings])


@reconciler.command()
@json_option
def status() -> None:
    """Last run (when, how long, findings) and the next run."""
    obj = settings()
    data = to_dict(obj.api().reconciler.status())
    if obj.json:
        render.emit_json(data)
        return
    last = data["last_run"]
    render.fields([
        ("Last run", f"{render.when(last['started_at'])}, took {last['duration_ms']} ms"
         if last and last["started_at"] else "never"),
        ("Next run", render.when(data["next_run"]) if data["next_run"] else "not scheduled"),
        ("Interval", human_seconds(data["poll_interval_seconds"])),
        ("Orphans", "terminated automatically" if data["auto_terminate_orphans"]
         else "reported only (reconciler.auto_terminate_orphans = false)"),
    ], title="Reconciler")
    if last:
        render.line("")
        print_findings(last["findings"] or [])


@reconciler.command()
@json_option
def run() -> None:
    """Reconcile now and print what was found and done."""
    obj = settings()
    data = to_dict(obj.api().reconciler.run())
    if obj.json:
        render.emit_json(data)
        return
    render.info(f"Reconciled in {data['duration_ms']} ms.")
    print_findings(data["findings"] or [])


@click.command()
@click.option("--dry-run", is_flag=True,
              help="Only list the orphans (the default without --terminate).")
@click.option("--terminate", is_flag=True, help="Terminate every orphan found.")
@click.option("-y", "--yes", is_flag=True, help="With --terminate: do not ask for confirmation.")
@json_option
def cleanup(dry_run: bool, terminate: bool, yes: bool) -> None:
    """List orphaned containers (owner-tagged, not owned by the database) with their age
    and accrued cost; --terminate ends them and says which it ended (asking for
    confirmation unless -y)."""
    from parhelia_cli import confirm
    from parhelia_cli.errors import invalid

    if dry_run and terminate:
        raise invalid("--dry-run and --terminate contradict each other")
    if terminate:
        confirm.confirm("Terminate every orphaned container?", yes,
                        "terminating orphaned containers")
    from parhelia_cli import views

    obj = settings()
    data = views.cleanup(obj.api(), terminate=terminate)
    orphans = data["orphans"]
    if obj.json:
        render.emit_json(data)
        return
    if not orphans:
        render.line("No orphaned containers.")
        return
    rows = []
    for o in orphans:
        c = o["container"] or {}
        rows.append((c.get("id") or "-", c.get("backend") or "", c.get("backend_id") or "",
                     c.get("task_id") or "-", human_seconds(o["age_seconds"]),
                     usd_short(o["accrued_cost_micros"]),
                     ("terminated", "magenta") if o["terminated"] else
                     ("running", "yellow")))
    render.table(("CONTAINER", "BACKEND", "BACKEND ID", "TASK", "AGE", "COST", "NOW"), rows)
    ended = sum(1 for o in orphans if o["terminated"])
    if terminate:
        render.line(f"Terminated {ended} of {len(orphans)} orphan(s).")
    else:
        render.line(f"{len(orphans)} orphan(s); `parhelia cleanup --terminate` ends them.")
