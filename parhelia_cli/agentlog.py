"""The agent's raw output (Claude Code's ``--output-format stream-json``) as a person reads
it: turns, tool calls with their inputs summarised, their results, the agent's text and
its result. ``task logs`` prints this (``--raw`` the JSON lines); ``top``'s ``l`` runs it.

Chunks arrive per container (a task's incarnations, oldest first) and may cut a line in
two: each container's partial line waits for its end. Everything the agent wrote goes
through :func:`parhelia_cli.render.safe` and the credential catalogue
(:func:`parhelia.redact.redact`: a key a tool printed is not shown); tool inputs are
summarised by the one summary of the contract package (:func:`parhelia.redact.tool_summary`,
never file contents). ``--raw`` is the agent's own output, unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from parhelia.redact import redact, tool_summary
from parhelia_cli import render
from parhelia_cli.durations import human_seconds, usd_short

RESULT_LINES = 3
"""Lines of a tool's result shown (the rest is counted)."""
WIDE = 160
"""A shown line is cut at this many characters."""


class AgentLog:
    """Turns raw chunks into lines for people; one per task (turns are counted across
    its incarnations)."""

    def __init__(self) -> None:
        self.turn = 0
        self._buffers: dict[str, bytes] = {}
        self._container: str | None = None
        self._message: str | None = None

    def feed(self, container_id: str, data: bytes) -> Iterator[str]:
        """The lines for people that ``data`` (a chunk of ``container_id``'s output)
        completes."""
        buffered = self._buffers.get(container_id, b"") + data
        *whole, rest = buffered.split(b"\n")
        self._buffers[container_id] = rest
        for raw in whole:
            yield from self._line(container_id, raw)

    def finish(self) -> Iterator[str]:
        """What is left when the output ends (a last line without its newline)."""
        for container_id, rest in list(self._buffers.items()):
            self._buffers[container_id] = b""
            if rest.strip():
                yield from self._line(container_id, rest)

    def _line(self, container_id: str, raw: bytes) -> Iterator[str]:
        text = raw.decode("utf-8", errors="replace").strip()
        if not text:
            return
        if container_id != self._container:
            first = self._container is None
            self._container = container_id
            self._message = None
            yield ("" if first else "\n") + f"== container {container_id} " + "=" * 20
        try:
            obj = json.loads(text)
        except ValueError:
            yield _cut(render.safe(text))
            return
        if isinstance(obj, dict):
            yield from self._object(obj)

    def _object(self, obj: Mapping[str, Any]) -> Iterator[str]:
        kind = obj.get("type")
        if kind == "system":
            yield from _system(obj)
        elif kind == "assistant":
            yield from self._assistant(obj)
        elif kind == "user":
            yield from _user(obj)
        elif kind == "result":
            yield from _result(obj)

    def _assistant(self, obj: Mapping[str, Any]) -> Iterator[str]:
        message = obj.get("message")
        if not isinstance(message, Mapping):
            return
        sub = obj.get("parent_tool_use_id") is not None
        mid = message.get("id")
        if not sub and mid != self._message:
            self._message = mid if isinstance(mid, str) else None
            self.turn += 1
            yield f"-- turn {self.turn} --"
        pad = "    | " if sub else "  "
        for block in message.get("content") or []:
            if not isinstance(block, Mapping):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                for line in render.safe(redact(block["text"]), multiline=True).splitlines():
                    yield _cut(pad + line)
            elif block.get("type") == "tool_use":
                name = str(block.get("name") or "?")
                summary = tool_summary(name, block.get("input"))
                yield _cut(f"{pad}-> {render.safe(name)}: {render.safe(summary)}")


def _system(obj: Mapping[str, Any]) -> Iterator[str]:
    sub = obj.get("subtype")
    if sub == "init":
        tools = obj.get("tools")
        tools = tools if isinstance(tools, list) else []
        yield render.safe(f"Claude Code {obj.get('claude_code_version') or '?'}, model "
                          f"{obj.get('model') or '?'}, {len(tools)} tools, permission mode "
                          f"{obj.get('permissionMode') or '?'}")
    elif sub == "api_retry":
        yield render.safe(f"  (API error {obj.get('error_status')}: retry "
                          f"{obj.get('attempt')} of {obj.get('max_retries')})")


def _user(obj: Mapping[str, Any]) -> Iterator[str]:
    message = obj.get("message")
    content = message.get("content") if isinstance(message, Mapping) else None
    pad = "    | " if obj.get("parent_tool_use_id") is not None else "  "
    if isinstance(content, str):
        first = content.strip().splitlines()[0] if content.strip() else ""
        yield _cut("> " + render.safe(first))
        return
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, Mapping) or block.get("type") != "tool_result":
            continue
        lines = redact(_result_text(block.get("content"))).splitlines()
        mark = "<- error: " if block.get("is_error") else "<- "
        shown = [line for line in lines if line.strip()][:RESULT_LINES] or ["(no output)"]
        for i, line in enumerate(shown):
            yield _cut(pad + (mark if i == 0 else " " * len(mark)) + render.safe(line))
        hidden = len([line for line in lines if line.strip()]) - len(shown)
        if hidden > 0:
            yield f"{pad}{' ' * len(mark)}(+{hidden} more lines)"


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(b.get("text")) for b in content
                         if isinstance(b, Mapping) and b.get("type") == "text")
    return ""


def _result(obj: Mapping[str, Any]) -> Iterator[str]:
    cost = obj.get("total_cost_usd")
    spent = f", {usd_short(round(cost * 1_000_000))}" if isinstance(cost, int | float) \
        and not isinstance(cost, bool) else ""
    ms = obj.get("duration_ms")
    took = f" in {human_seconds(ms / 1000)}" if isinstance(ms, int | float) else ""
    error = " (error)" if obj.get("is_error") else ""
    yield render.safe(f"== result: {obj.get('subtype') or '?'}{error} after "
                      f"{obj.get('num_turns', '?')} turns{took}{spent}")
    text = obj.get("result")
    if isinstance(text, str):
        for line in render.safe(redact(text), multiline=True).splitlines():
            yield _cut("  " + line)


def _cut(line: str) -> str:
    return line if len(line) <= WIDE else line[: WIDE - 1] + "…"
