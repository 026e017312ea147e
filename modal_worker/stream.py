"""Turn Claude Code's stream-json output into channel events.

One JSON object per line: ``system`` (init, api_retry, status), ``assistant``
(one content block per line, blocks of one API message share ``message.id``),
``user`` (tool results) and a final ``result``. A turn completes when an
assistant message ends: a tool result, a new message id or the result follows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modal_worker.redact import redact_text, shorten, tool_summary

Emit = Callable[[str, dict[str, Any]], object]


@dataclass
class AgentStats:
    """Running totals, read by the heartbeat thread."""

    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "turns": self.turns,
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "cache_creation_input_tokens": self.cache_creation_input_tokens,
                "cache_read_input_tokens": self.cache_read_input_tokens,
                "cost_usd": self.cost_usd,
            }


_USAGE_KEYS = ("input_tokens", "output_tokens", "cache_creation_input_tokens",
               "cache_read_input_tokens")


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass
class StreamParser:
    """Feed parsed stdout objects; emits events and calls ``on_turn`` after each turn."""

    emit: Emit
    stats: AgentStats = field(default_factory=AgentStats)
    on_turn: Callable[[], None] | None = None
    cwd: str | None = None
    result: dict[str, Any] | None = None
    last_api_error_status: int | None = None
    _open_id: str | None = None
    _open_usage: Mapping[str, Any] | None = None
    _closed: set[str] = field(default_factory=set)
    tool_uses: int = 0

    def feed(self, obj: Mapping[str, Any]) -> None:
        kind = obj.get("type")
        if kind == "system":
            self._system(obj)
        elif kind == "assistant":
            self._assistant(obj)
        elif kind == "user":
            if self._has_tool_result(obj):
                self._close_turn()
        elif kind == "result":
            self._close_turn()
            self._result(obj)

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
        if mid is not None and mid in self._closed:
            return  # a late block of a message already counted
        if mid != self._open_id:
            self._close_turn()
            self._open_id = mid
        usage = message.get("usage")
        if isinstance(usage, Mapping):
            self._open_usage = usage
        for block in message.get("content") or []:
            if not isinstance(block, Mapping):
                continue
            if block.get("type") == "tool_use":
                self.tool_uses += 1
                name = str(block.get("name") or "?")
                self.emit("agent_tool_use", {
                    "tool": name,
                    "summary": tool_summary(name, block.get("input"), self.cwd),
                    "tool_use_id": block.get("id"),
                })
            elif block.get("type") == "text" and isinstance(block.get("text"), str):
                self.emit("agent_message", {"text": shorten(redact_text(block["text"]), 200)})

    @staticmethod
    def _has_tool_result(obj: Mapping[str, Any]) -> bool:
        message = obj.get("message")
        content = message.get("content") if isinstance(message, Mapping) else None
        return isinstance(content, list) and any(
            isinstance(b, Mapping) and b.get("type") == "tool_result" for b in content)

    def _close_turn(self) -> None:
        if self._open_id is None and self._open_usage is None:
            return
        usage = self._open_usage or {}
        with self.stats.lock:
            self.stats.turns += 1
            for key in _USAGE_KEYS:
                setattr(self.stats, key, getattr(self.stats, key) + _int(usage.get(key)))
        if self._open_id is not None:
            self._closed.add(self._open_id)
        self._open_id = None
        self._open_usage = None
        data = self.stats.snapshot()
        self.emit("agent_turn_completed", data)
        if self.on_turn is not None:
            self.on_turn()

    def _result(self, obj: Mapping[str, Any]) -> None:
        usage = obj.get("usage") if isinstance(obj.get("usage"), Mapping) else {}
        assert isinstance(usage, Mapping)
        cost = obj.get("total_cost_usd")
        if isinstance(cost, bool) or not isinstance(cost, (int, float)):
            cost = None
        with self.stats.lock:
            for key in _USAGE_KEYS:
                if key in usage:
                    setattr(self.stats, key, _int(usage.get(key)))
            if isinstance(obj.get("num_turns"), int):
                self.stats.turns = obj["num_turns"]
            self.stats.cost_usd = float(cost) if cost is not None else None
        text = obj.get("result")
        self.result = {
            "subtype": obj.get("subtype"),
            "is_error": bool(obj.get("is_error")),
            "turns": _int(obj.get("num_turns")),
            **{key: _int(usage.get(key)) for key in _USAGE_KEYS},
            "total_cost_usd": self.stats.cost_usd,
            "duration_ms": obj.get("duration_ms"),
            "terminal_reason": obj.get("terminal_reason"),
            "permission_denials": len(obj.get("permission_denials") or []),
            "text": redact_text(text) if isinstance(text, str) else "",
        }
        self.emit("agent_result", self.result)
