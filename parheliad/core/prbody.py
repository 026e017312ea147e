"""The body of a task's pull request: what the agent said, what changed, what it cost,
and how to pick the session up again. Markdown, as GitHub renders it."""

from __future__ import annotations

from parhelia.clock import human_seconds
from parhelia.money import usd
from parheliad.store.rows import TaskRow

ANSWER_CHARS = 40_000
"""The agent's final answer is cut past this (GitHub takes at most 65,536 characters)."""
STAT_LINES = 60


def _fence(text: str) -> str:
    """A code block that ``text`` cannot close early."""
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}\n{text}\n{ticks}"


def pull_request_body(task: TaskRow, checkpoint_id: str, stat: str,
                      agent_session: str = "") -> str:
    """The body for ``task``'s pull request: its final answer, ``stat`` (``git diff
    --stat`` of the branch), turns, cost, duration, the checkpoint the branch was made
    from, and the commands that resume the session."""
    answer = task.result_text.strip() or "*The agent gave no final answer.*"
    if len(answer) > ANSWER_CHARS:
        answer = answer[:ANSWER_CHARS] + "\n\n*(shortened)*"
    lines = stat.rstrip("\n").splitlines()
    if len(lines) > STAT_LINES:
        lines = [*lines[:STAT_LINES - 1], f" ... {len(lines) - STAT_LINES} more", lines[-1]]
    started = task.started_at or task.created_at
    ended = task.finished_at or task.updated_at
    total = task.api_cost_micros + task.compute_cost_micros
    rows = [
        ("Task", f"`{task.id}`"),
        ("Turns", str(task.turns)),
        ("Cost", f"{usd(total)} (API {usd(task.api_cost_micros)}, compute "
                 f"{usd(task.compute_cost_micros)})"),
        ("Duration", human_seconds((ended - started) / 1_000_000)),
        ("Checkpoint", f"`{checkpoint_id}`"),
    ]
    if task.session_id:
        rows.append(("Session", f"`{task.session_id}`"))
    out = [answer, "", "---", "", "**Files changed**", "", _fence("\n".join(lines)), "",
           "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), ""]
    if task.session_id:
        out += [f"Continue the conversation: `parhelia resume {task.session_id}` (remotely), "
                f"or `parhelia session pull {task.session_id} --to DIR` and then "
                + (f"`claude --resume {agent_session}`" if agent_session else "`claude "
                   "--resume`") + " in DIR.", ""]
    out.append(f"<sub>Opened by Parhelia from task `{task.id}`.</sub>")
    return "\n".join(out) + "\n"
