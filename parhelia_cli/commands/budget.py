"""``parhelia budget show|history|set|ledger|estimate``: the spending ceiling, where the
money went, and what a task would cost. Each command is one RPC plus rendering; the
daemon validates amounts (E101)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from parhelia_cli import complete, params, render
from parhelia_cli.api import task_options
from parhelia_cli.context import json_option, settings
from parhelia_cli.convert import to_dict
from parhelia_cli.durations import human_count, usd_short
from parhelia_cli.flows.estimate import print_estimate


@click.group()
def budget() -> None:
    """Show and set the spending ceiling; spend history (alias: b).

    One ceiling covers compute and API spend over the period set by `budget.period`
    (calendar month UTC, or total). `parhelia help budget` explains the estimate,
    reservations and what happens at the ceiling.
    """


def _money(micros: int) -> str:
    """Dollars with cents, finer below a cent (``$12.45``, ``$0.0042``)."""
    return usd_short(micros)


def remaining(s: dict[str, Any]) -> str:
    """What is left under the ceiling; never negative (``$0.00 (over by $6.87)``)."""
    left = s["remaining_micros"]
    if left >= 0:
        return _money(left)
    return f"{_money(0)} (over by {_money(-left)})"


def status_lines(s: dict[str, Any]) -> list[str]:
    """The "Budget Status" block of the original README (plus reserved and the split)."""
    rule = "─" * 33 if render.is_tty() else "-" * 33
    used = f"{_money(s['used_micros'])} ({s['used_percent']:.1f}%)"
    if s["compute_micros"] or s["api_micros"]:
        used += f"  compute {_money(s['compute_micros'])}, API {_money(s['api_micros'])}"
    since = (s["period_start"] or "")[:10]
    period = f"month (since {since})" if s["period"] == "month" and since else "total"
    lines = ["Budget Status", rule,
             f"Ceiling:    {_money(s['ceiling_micros'])}",
             f"Used:       {used}",
             f"Reserved:   {_money(s['reserved_micros'])}",
             f"Remaining:  {remaining(s)}",
             f"Period:     {period}",
             "",
             f"Tasks:      {s['tasks']}",
             f"Tokens:     {human_count(s['input_tokens'])} input, "
             f"{human_count(s['output_tokens'])} output"]
    if s["exceeded"]:
        lines += ["", "Ceiling reached: running tasks are paused and nothing is dispatched. "
                      "Raise it with `parhelia budget set AMOUNT`."]
    elif s["warning"]:
        lines += ["", f"Warning: spending crossed {s['warning_threshold_percent']}% of the "
                      "ceiling (E301)."]
    return lines


def _show(status: Any, as_json: bool) -> None:
    s = to_dict(status)
    if as_json:
        render.emit_json(s)
        return
    for line in status_lines(s):
        render.line(line)


@budget.command()
@json_option
def show() -> None:
    """Ceiling, used, reserved, remaining (with percentage), tasks and tokens."""
    obj = settings()
    _show(obj.api().budget.get(), obj.json)


@budget.command("set")
@click.argument("amount", metavar="AMOUNT")
@json_option
def set_ceiling(amount: str) -> None:
    """Set the ceiling to AMOUNT in USD, like 50 or 12.50; kept across restarts.

    Raising it resumes tasks the ceiling paused (from their checkpoints) and lets
    pending tasks be dispatched; lowering it below what is used pauses running tasks.
    """
    obj = settings()
    status = obj.api().budget.set_ceiling(amount)
    if not obj.json:
        render.info(f"Ceiling set to {_money(status.ceiling_micros)}.")
    _show(status, obj.json)


@budget.command()
@click.option("--by", type=click.Choice(("day", "task")), default="day", show_default=True,
              help="Group spend per UTC day or per task.")
@click.option("--since", type=params.INSTANT,
              help="From: 30m, 2d, 1w ago or RFC 3339 (default: the start of the period).")
@json_option
def history(by: str, since: datetime | None) -> None:
    """Spend over time (per day) or per task, from the ledger."""
    obj = settings()
    rows = [to_dict(r) for r in obj.api().budget.history(by=by, since=since).rows]
    if obj.json:
        render.emit_json({"by": by, "rows": rows})
        return
    render.table((by.upper(), "COMPUTE", "API", "TOTAL", "ESTIMATED", "TOKENS IN",
                  "TOKENS OUT"),
                 [(r["key"] or "-", _money(r["compute_micros"]), _money(r["api_micros"]),
                   _money(r["total_micros"]),
                   _money(r["estimated_micros"]) if r["estimated_micros"] else "-",
                   human_count(r["input_tokens"]), human_count(r["output_tokens"]))
                  for r in rows],
                 empty="No spend recorded in this period.")
    if rows:
        total = sum(r["total_micros"] for r in rows)
        estimated = sum(r["estimated_micros"] for r in rows)
        compute = sum(r["estimated_compute_micros"] for r in rows)
        line = f"Total: {_money(total)}"
        parts = []
        if compute:
            parts.append(f"{_money(compute)} of compute at the [rates]: Modal's own usage "
                         "figure replaces it minutes after each sandbox ends")
        if estimated - compute:
            parts.append(f"{_money(estimated - compute)} of API spend from tokens at [rates] "
                         "prices: the agent stopped before reporting its own figure")
        if parts:
            line += f" ({_money(estimated)} estimated: " + "; ".join(parts) + ")"
        render.line(line)


@budget.command()
@click.option("--task", "task_id", metavar="ID", help="Only this task's entries.",
              shell_complete=complete.TASK)
@click.option("--limit", type=params.LIMIT, default=None,
              help="The newest N entries (default 100).")
@params.page_option
@json_option
def ledger(task_id: str | None, limit: int | None, page_token: str) -> None:
    """The ledger's entries (compute, api, adjustment), newest first."""
    obj = settings()
    resp = obj.api().budget.ledger(task_id=task_id, limit=limit, page_token=page_token)
    entries = [to_dict(e) for e in resp.entries]
    if obj.json:
        render.emit_page("entries", entries, resp.next_page_token)
        return
    render.table(("AT", "KIND", "AMOUNT", "TASK", "CONTAINER", "TOKENS", "NOTE"),
                 [((e["at"] or "")[:19] + "Z", e["kind"], _money(e["amount_micros"]),
                   e["task_id"] or "-", e["container_id"] or "-",
                   f"{human_count(e['input_tokens'])}/{human_count(e['output_tokens'])}",
                   e["note"] or "") for e in entries],
                 empty="The ledger is empty.")
    render.more(resp.next_page_token)


@budget.command()
@params.sizing_options
@click.option("--backend", type=click.Choice(params.BACKENDS),
              help="Where it would run (default: config).")
@json_option
def estimate(gpu: str | None, cpu: float | None, memory: int | None, timeout: int | None,
             max_turns: int | None, max_cost: int | None, model: str | None,
             backend: str | None) -> None:
    """The cost range (compute + API, low and high) of a task with these options, and
    how each part is computed. Creates nothing: the same as `task create
    --estimate-only`, and the MCP tool parhelia_budget_estimate."""
    options = task_options(gpu=gpu, cpu=cpu, memory_mb=memory, timeout_seconds=timeout,
                           max_turns=max_turns, max_cost_micros=max_cost, model=model,
                           backend=backend)
    obj = settings()
    print_estimate(to_dict(obj.api().tasks.estimate(options)), obj.json)
