"""A fresh start's first prompt when ``claude --resume`` cannot continue a conversation.

Claude Code refuses a transcript it cannot read ("No conversation found with session
ID"); the worker then starts a new conversation and hands it what the stored one knew:
the task's prompt, the files it touched, its last tool results and its last message.
The transcript is read tolerantly (it is the agent's file: any line may be damaged).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parhelia.redact import shorten

FILE_TOOLS = {"Write": "file_path", "Edit": "file_path", "MultiEdit": "file_path",
              "NotebookEdit": "notebook_path"}
MAX_FILES = 50
LAST_RESULTS = 3
RESULT_CHARS = 600
MESSAGE_CHARS = 2000
MAX_READ = 64 << 20


@dataclass
class StoredConversation:
    prompt: str | None = None
    files: list[str] = field(default_factory=list)
    results: list[str] = field(default_factory=list)
    last_message: str | None = None
    entries: int = 0


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [_text(b.get("text") if b.get("type") == "text" else b.get("content"))
                 for b in content if isinstance(b, dict)]
        return "\n".join(p for p in parts if p)
    return ""


def read_stored(transcript: Path) -> StoredConversation:
    out = StoredConversation()
    try:
        with open(transcript, "rb") as fh:
            data = fh.read(MAX_READ)
    except OSError:
        return out
    for line in data.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        message = entry.get("message") if isinstance(entry, dict) else None
        if not isinstance(message, dict) or entry.get("type") not in ("user", "assistant"):
            continue
        out.entries += 1
        content = message.get("content")
        blocks = content if isinstance(content, list) else []
        if entry["type"] == "user":
            results = [b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
            if results:
                out.results += [shorten(_text(b.get("content")), RESULT_CHARS) for b in results]
                out.results = out.results[-LAST_RESULTS:]
            elif out.prompt is None and not entry.get("isMeta"):
                texts = [str(b["text"]) for b in blocks if isinstance(b, dict)
                         and b.get("type") == "text" and isinstance(b.get("text"), str)]
                texts = [t for t in texts if not t.startswith("<system-reminder>")]
                prompt = content if isinstance(content, str) else (texts[-1] if texts else "")
                out.prompt = prompt or None
            continue
        for block in blocks:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                out.last_message = block["text"]
            elif block.get("type") == "tool_use" and block.get("name") in FILE_TOOLS:
                tool_input = block.get("input")
                path = tool_input.get(FILE_TOOLS[block["name"]]) if isinstance(
                    tool_input, dict) else None
                if isinstance(path, str) and path not in out.files:
                    out.files.append(path)
    return out


def fresh_prompt(stored: StoredConversation, *, reason: str, task_prompt: str | None,
                 continuation: str) -> str:
    """The first prompt of the conversation that replaces the stored one."""
    prompt = task_prompt or stored.prompt
    lines = [f"[Parhelia] The earlier conversation of this task could not be resumed "
             f"({reason}), so this is a new conversation. What the earlier one knew:", ""]
    lines += ["The task:", prompt or "(not recorded)", ""]  # whole: it is the user's request
    if stored.files:
        shown = stored.files[-MAX_FILES:]
        lines += ["Files it wrote or edited: " + ", ".join(shown), ""]
    if stored.results:
        lines += ["Its last tool results:"] + [f"- {r}" for r in stored.results] + [""]
    if stored.last_message:
        lines += ["Its last message:", _cut(stored.last_message, MESSAGE_CHARS), ""]
    lines.append(continuation)
    return "\n".join(lines)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
