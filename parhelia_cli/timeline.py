"""A task's state as of each of its events, for the lines of ``task watch``/``--sync``.

The daemon sends, with every event, the task as it is *now*: when records arrive in a
batch, the first event's line would already show the last one's turn count. A line is
about its event, so its state is rebuilt from the events themselves: the status from
the task's own transitions, turns and tokens from the agent's turn records, the time
from the event's timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from parhelia_cli import render
from parhelia_cli.durations import human_count, human_seconds

STATUS_OF_EVENT = {
    "task_created": "pending", "task_waiting": "pending", "task_retried": "pending",
    "task_dispatched": "running", "task_running": "running", "task_resumed": "running",
    "task_recovering": "recovering", "task_paused": "paused",
    "task_completed": "completed", "task_failed": "failed", "task_cancelled": "cancelled",
}
"""The task's status right after each of its transition events."""


@dataclass(frozen=True)
class AtEvent:
    status: str
    turns: int
    input_tokens: int
    output_tokens: int
    started: datetime | None

    @classmethod
    def start(cls, task: dict[str, Any]) -> AtEvent:
        """The state when following began (the task as the first message had it)."""
        u = task["usage"] or {}
        return cls(task["status"] or "unknown", u.get("turns", 0), u.get("input_tokens", 0),
                   u.get("output_tokens", 0), render.parse_ts(task["started_at"]))

    @classmethod
    def before(cls, task: dict[str, Any], event: dict[str, Any]) -> AtEvent:
        """The state just before ``event``, the oldest of a backlog: running if the task
        had started by then, else pending; no turns counted yet."""
        started = render.parse_ts(task["started_at"])
        at = render.parse_ts(event["at"])
        running = started is not None and at is not None and at > started
        return cls("running" if running else "pending", 0, 0, 0, started)

    def after(self, event: dict[str, Any]) -> AtEvent:
        """The state once ``event`` happened."""
        data = event["data"] if isinstance(event["data"], dict) else {}
        state = self
        status = STATUS_OF_EVENT.get(event["type"] or "")
        if status:
            state = replace(state, status=status)
            if status == "running" and state.started is None:
                state = replace(state, started=render.parse_ts(event["at"]))
        if event["type"] in ("agent_turn_completed", "agent_result"):
            # The task's figures (all incarnations), else an older daemon's record's own.
            turns = data.get("task_turns", data.get("turns"))
            if isinstance(turns, int) and turns >= state.turns:
                state = replace(state, turns=turns)
            tokens_in = data.get("task_input_tokens", data.get("input_tokens"))
            tokens_out = data.get("task_output_tokens", data.get("output_tokens"))
            if isinstance(tokens_in, int) and tokens_in >= state.input_tokens:
                state = replace(state, input_tokens=tokens_in)
            if isinstance(tokens_out, int) and tokens_out >= state.output_tokens:
                state = replace(state, output_tokens=tokens_out)
        return state

    def elapsed(self, event: dict[str, Any]) -> float:
        at = render.parse_ts(event["at"])
        if at is None or self.started is None:
            return 0.0
        return max(0.0, (at - self.started).total_seconds())

    def line(self, event: dict[str, Any]) -> str:
        """``[12s] agent_tool_use: Bash: make  [running | turn 1 | 3.1k in / 200 out]``."""
        text = render.safe(event["message"] or event["type"] or "")
        state = (f"{self.status} | turn {self.turns} | {human_count(self.input_tokens)} in / "
                 f"{human_count(self.output_tokens)} out")
        return f"[{human_seconds(self.elapsed(event))}] {event['type']}: {text}  [{state}]"
