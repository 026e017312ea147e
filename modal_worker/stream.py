"""Turn Claude Code's stream-json output into channel events.

One JSON object per line: ``system`` (init, api_retry, status), ``assistant``
(one content block per line, blocks of one API message share ``message.id``),
``user`` (tool results), ``stream_event`` (with ``--include-partial-messages``: the
Messages API's own stream events) and a final ``result``. A turn completes when an
assistant message ends: a tool result, a new message id or the result follows.

**Usage, as the agent is billed** (docs/contracts.md, verified with Claude Code
2.1.332): an ``assistant`` line carries its message's input and cache tokens but
``output_tokens: 1`` whatever the reply cost; the true output count of a message
arrives only in its ``message_delta`` stream event (after its assistant lines) and in
the final ``result``. So the running totals take, per API message, the largest figure
seen for each token kind in its ``message_start``, ``message_delta`` and assistant
lines; while a message streams, its output is at least its streamed text over
:data:`CHARS_PER_TOKEN_LOW` (an over-estimate, replaced by the billed count when its
``message_delta`` arrives). The ``result`` then sets the run's figures exactly.

**Turns** are counted as the CLI counts ``num_turns``: one for the first assistant
message, plus one per tool result of the main conversation (two parallel tool calls
answered in two requests make 3).

**Cost**: ``total_cost_usd`` is the CLI's figure for the whole *session*: a resumed run
starts from the cost it restored from the transcript's last ``cost-state`` line
(:func:`transcript_cost`). ``cost_usd`` in the stats and the result is this run's
share: the reported total minus that baseline.
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parhelia import records
from parhelia.redact import redact_text, shorten, tool_summary

Emit = Callable[[str, dict[str, Any]], object]


@dataclass
class AgentStats:
    """The running totals (a :class:`parhelia.records.Usage`, replaced whole under
    ``lock``), read by the heartbeat thread."""

    current: records.Usage = field(default_factory=records.Usage)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def usage(self) -> records.Usage:
        with self.lock:
            return self.current

    def update(self, **changes: Any) -> None:
        """Replace fields of the totals (the caller holds ``lock``)."""
        self.current = dataclasses.replace(self.current, **changes)

    def snapshot(self) -> dict[str, Any]:
        return self.usage().to_dict()


_USAGE_KEYS = ("input_tokens", "output_tokens", "cache_creation_input_tokens",
               "cache_read_input_tokens")
# Streamed characters per output token assumed while a message streams: low on purpose
# (English prose runs near 4, code near 3), so the running figure is not below the bill.
CHARS_PER_TOKEN_LOW = 3
_DELTA_TEXT = {"text_delta": "text", "input_json_delta": "partial_json",
               "thinking_delta": "thinking"}
COST_STATE = "cost-state"


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _cost(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return max(0.0, float(value))


@dataclass(frozen=True)
class TranscriptCost:
    """The CLI's own running cost of a session, from its transcript's ``cost-state`` lines."""

    lines: int = 0  # how many cost-state lines of this session the transcript holds
    total_usd: float = 0.0  # the last one's totalCostUSD


def transcript_cost(path: Path, session_uuid: str) -> TranscriptCost:
    """Claude Code appends ``{"type": "cost-state", "sessionId": .., "totalCostUSD": ..}``
    to the transcript when a run ends (also when it is stopped with SIGTERM) and restores
    it on ``--resume``. Unreadable or absent: nothing."""
    lines, total = 0, 0.0
    try:
        with open(path, "rb") as fh:
            for raw in fh:
                if b'"cost-state"' not in raw:
                    continue
                try:
                    obj = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(obj, dict) and obj.get("type") == COST_STATE \
                        and obj.get("sessionId") == session_uuid:
                    value = _cost(obj.get("totalCostUSD"))
                    if value is not None:
                        lines, total = lines + 1, value
    except OSError:
        pass
    return TranscriptCost(lines, total)


_FINAL_STOPS = frozenset({"end_turn", "stop_sequence"})
"""Stop reasons of a reply after which the agent asks nothing more: its result follows."""


@dataclass
class _Message:
    """Usage of one API message: the largest figure seen per token kind."""

    usage: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_USAGE_KEYS, 0))
    streamed_chars: int = 0
    final_output: int | None = None  # from its message_delta: the billed output count

    def effective(self) -> dict[str, int]:
        out = dict(self.usage)
        if self.final_output is not None:
            out["output_tokens"] = self.final_output
        else:
            out["output_tokens"] = max(out["output_tokens"],
                                       -(-self.streamed_chars // CHARS_PER_TOKEN_LOW))
        return out


@dataclass
class StreamParser:
    """Feed parsed stdout objects; emits events and calls ``on_turn`` after each turn."""

    emit: Emit
    stats: AgentStats = field(default_factory=AgentStats)
    on_turn: Callable[[], None] | None = None
    on_billed: Callable[[], None] | None = None
    """Called when a reply's billed output count arrives (its ``message_delta``): the
    budget books spend as it is known, so the worker reports it at once."""
    cwd: str | None = None
    result: records.AgentResult | None = None
    last_api_error_status: int | None = None
    cost_baseline_usd: float = 0.0  # the session cost the CLI restores on --resume
    base: Mapping[str, int] = field(default_factory=dict)
    """The worker's totals when this run started (a worker may run the agent more than once:
    taken over, handed back): the run's own figures are added to them."""
    last_text: str = ""
    """The main conversation's last text block (redacted): an interactive run's result."""
    _open_id: str | None = None
    _open_seen: bool = False
    _closed: set[str] = field(default_factory=set)
    _messages: dict[str, _Message] = field(default_factory=dict)
    _stream_id: str | None = None
    _tool_results: int = 0
    _assistant_seen: bool = False
    _prompts: int = 0  # prompts after the first (an interactive conversation has many)
    tool_uses: int = 0
    last_tool_result_id: str | None = None
    """The ``tool_use_id`` of the last tool result seen (the worker waits for it to reach
    the transcript before a turn checkpoint)."""

    def feed(self, obj: Mapping[str, Any]) -> None:
        kind = obj.get("type")
        if kind == "system":
            self._system(obj)
        elif kind == "assistant":
            self._assistant(obj)
        elif kind == "user":
            results = self.tool_results_in(obj)
            if results:
                # (a subagent's results go to its own transcript, not the session's)
                self.last_tool_result_id = (self._tool_result_id(obj)
                                            if obj.get("parent_tool_use_id") is None else None)
                self._close_turn()
                if obj.get("parent_tool_use_id") is None:
                    self._tool_results += results
                    self._count_turns()
        elif kind == "stream_event":
            self._stream_event(obj)
        elif kind == "result":
            self._close_turn()
            self._result(obj)

    def user_prompt(self) -> None:
        """A person's message (the interactive TUI): the next answer is a new turn."""
        if self._assistant_seen:
            self._prompts += 1
            self._assistant_seen = False

    def finish(self) -> None:
        """The stream ended: close a message left open (the agent died mid-turn)."""
        self._close_turn()

    def _system(self, obj: Mapping[str, Any]) -> None:
        sub = obj.get("subtype")
        if sub == "init":
            servers = obj.get("mcp_servers") or []
            self.emit("agent_init", {
                "model": obj.get("model"),
                "agent_version": obj.get("claude_code_version"),
                "tools": [t for t in obj.get("tools") or [] if isinstance(t, str)],
                "mcp_servers": [
                    {"name": s.get("name"), "status": s.get("status")}
                    for s in servers if isinstance(s, Mapping)
                ],
                "permission_mode": obj.get("permissionMode"),
                "session_id": obj.get("session_id"),
                "agents": [a for a in obj.get("agents") or [] if isinstance(a, str)],
                "skills": [s for s in obj.get("skills") or [] if isinstance(s, str)],
                "plugins": [p.get("name") for p in obj.get("plugins") or []
                            if isinstance(p, Mapping) and isinstance(p.get("name"), str)],
            })
        elif sub == "api_retry":
            status = obj.get("error_status")
            self.last_api_error_status = status if isinstance(status, int) else None
            self.emit("agent_api_retry", {
                "attempt": obj.get("attempt"),
                "max_retries": obj.get("max_retries"),
                "error_status": status,
                "retry_delay_ms": obj.get("retry_delay_ms"),
            })

    def _assistant(self, obj: Mapping[str, Any]) -> None:
        message = obj.get("message")
        if not isinstance(message, Mapping):
            return
        mid = message.get("id")
        mid = mid if isinstance(mid, str) else None
        usage = message.get("usage")
        if isinstance(usage, Mapping):
            self._merge_usage(mid or f"anonymous-{len(self._messages)}", usage)
        if mid is not None and mid in self._closed:
            return  # a late block of a message already counted
        if mid != self._open_id:
            self._close_turn()
            self._open_id = mid
        self._open_seen = True
        if obj.get("parent_tool_use_id") is None and not self._assistant_seen:
            self._assistant_seen = True
            self._count_turns()
        for block in message.get("content") or []:
            if not isinstance(block, Mapping):
                continue
            if block.get("type") == "tool_use":
                self.tool_uses += 1
                name = str(block.get("name") or "?")
                tool_use_id = block.get("id")
                self._send(records.AgentToolUse(
                    tool=name[:records.MAX_WORD],
                    summary=tool_summary(name, block.get("input"), self.cwd),
                    tool_use_id=tool_use_id[:records.MAX_WORD]
                    if isinstance(tool_use_id, str) else None))
            elif block.get("type") == "text" and isinstance(block.get("text"), str):
                if obj.get("parent_tool_use_id") is None:
                    self.last_text = redact_text(block["text"])
                self.emit("agent_message", {"text": shorten(redact_text(block["text"]), 200)})

    def _stream_event(self, obj: Mapping[str, Any]) -> None:
        """``--include-partial-messages``: usage from message_start / message_delta, and
        the streamed size of the message in between."""
        event = obj.get("event")
        if not isinstance(event, Mapping):
            return
        etype = event.get("type")
        api_id = obj.get("api_message_id")
        if etype == "message_start":
            message = event.get("message")
            if not isinstance(message, Mapping):
                return
            mid = message.get("id") if isinstance(message.get("id"), str) else api_id
            if not isinstance(mid, str):
                return
            self._stream_id = mid
            usage = message.get("usage")
            self._merge_usage(mid, usage if isinstance(usage, Mapping) else {})
            return
        mid = api_id if isinstance(api_id, str) else self._stream_id
        if mid is None:
            return
        if etype == "content_block_delta":
            delta = event.get("delta")
            key = _DELTA_TEXT.get(str(delta.get("type"))) if isinstance(delta, Mapping) else None
            piece = delta.get(key) if key and isinstance(delta, Mapping) else None
            if isinstance(piece, str) and piece:
                msg = self._messages.setdefault(mid, _Message())
                before = msg.effective()
                msg.streamed_chars += len(piece)
                self._apply(before, msg.effective())
        elif etype == "message_delta":
            usage = event.get("usage")
            if not isinstance(usage, Mapping):
                return
            msg = self._messages.setdefault(mid, _Message())
            before = msg.effective()
            self._merge_into(msg, usage)
            if "output_tokens" in usage:
                msg.final_output = max(_int(usage.get("output_tokens")),
                                       msg.final_output or 0)
            self._apply(before, msg.effective())
            delta = event.get("delta")
            stop = delta.get("stop_reason") if isinstance(delta, Mapping) else None
            if "output_tokens" in usage and stop not in _FINAL_STOPS and \
                    self.on_billed is not None:
                self.on_billed()  # (a final reply's figure comes with the result next)

    @staticmethod
    def _merge_into(msg: _Message, usage: Mapping[str, Any]) -> None:
        for key in _USAGE_KEYS:
            msg.usage[key] = max(msg.usage[key], _int(usage.get(key)))

    def _merge_usage(self, mid: str, usage: Mapping[str, Any]) -> None:
        msg = self._messages.setdefault(mid, _Message())
        before = msg.effective()
        self._merge_into(msg, usage)
        self._apply(before, msg.effective())

    def _apply(self, before: Mapping[str, int], after: Mapping[str, int]) -> None:
        """Move the running totals by one message's change."""
        with self.stats.lock:
            now = self.stats.current
            self.stats.update(**{key: max(0, getattr(now, key) + after[key] - before[key])
                                 for key in _USAGE_KEYS})

    def _count_turns(self) -> None:
        with self.stats.lock:
            self.stats.update(turns=max(self.stats.current.turns, self.base.get("turns", 0)
                                        + self._prompts + 1 + self._tool_results))

    @staticmethod
    def tool_results_in(obj: Mapping[str, Any]) -> int:
        message = obj.get("message")
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, list):
            return 0
        return sum(1 for b in content if isinstance(b, Mapping) and b.get("type") == "tool_result")

    @staticmethod
    def _tool_result_id(obj: Mapping[str, Any]) -> str | None:
        message = obj.get("message")
        content = message.get("content") if isinstance(message, Mapping) else None
        ids = [b.get("tool_use_id") for b in content or [] if isinstance(b, Mapping)
               and b.get("type") == "tool_result" and isinstance(b.get("tool_use_id"), str)]
        return ids[-1] if ids else None

    def _close_turn(self) -> None:
        if self._open_id is None and not self._open_seen:
            return
        if self._open_id is not None:
            self._closed.add(self._open_id)
        self._open_id = None
        self._open_seen = False
        self._send(records.AgentTurnCompleted(self.stats.usage()))
        if self.on_turn is not None:
            self.on_turn()

    def run_cost(self, total_usd: float) -> float:
        """This run's share of the CLI's session cost ``total_usd``."""
        return round(max(0.0, total_usd - self.cost_baseline_usd), 9)

    def _result(self, obj: Mapping[str, Any]) -> None:
        """The run's exact figures (its usage is this run's; its cost the session's)."""
        usage = obj.get("usage") if isinstance(obj.get("usage"), Mapping) else {}
        assert isinstance(usage, Mapping)
        total = _cost(obj.get("total_cost_usd"))
        cost_usd = self.run_cost(total) if total is not None else None
        changes: dict[str, Any] = {key: self.base.get(key, 0) + _int(usage.get(key))
                                   for key in _USAGE_KEYS if key in usage}
        if isinstance(obj.get("num_turns"), int):
            changes["turns"] = self.base.get("turns", 0) + obj["num_turns"]
        with self.stats.lock:
            self.stats.update(**changes, cost_usd=cost_usd)
        text, subtype, reason = obj.get("result"), obj.get("subtype"), obj.get("terminal_reason")
        denials = obj.get("permission_denials")
        self.result = records.AgentResult(
            subtype=subtype[:records.MAX_WORD] if isinstance(subtype, str) else "",
            is_error=bool(obj.get("is_error")),
            usage=records.Usage(turns=_int(obj.get("num_turns")), cost_usd=cost_usd,
                                **{key: min(_int(usage.get(key)), records.MAX_COUNT)
                                   for key in _USAGE_KEYS}),
            total_cost_usd=total, duration_ms=_int(obj.get("duration_ms")) or None,
            terminal_reason=reason[:records.MAX_WORD] if isinstance(reason, str) else None,
            permission_denials=len(denials) if isinstance(denials, list) else 0,
            text=redact_text(text)[:records.MAX_TEXT] if isinstance(text, str) else "")
        self._send(self.result)

    def _send(self, record: records.Typed) -> None:
        self.emit(record.TYPE, record.to_dict())
