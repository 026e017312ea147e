"""Redaction of secrets and short summaries of tool calls for events.

Events reach the daemon's database and the user's terminal: they carry a tool's
name and a short summary (a command's first characters, a file path), never file
contents, and anything that looks like a credential is replaced by ``***``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

_NAME = r"[A-Za-z0-9_.-]*(?:key|token|secret|passw(?:or)?d|pwd|credential)[A-Za-z0-9_]*"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"sk-ant-[A-Za-z0-9_\-]+"), "sk-ant-***"),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}"), "sk-***"),
    (re.compile(r"\b(gh[pousr]_|github_pat_)[A-Za-z0-9_]{16,}"), r"\1***"),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{8,}"), "xox-***"),
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), r"\1***"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), "eyJ***"),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"), r"\1 ***"),  # any length
    (re.compile(r"(?i)\b(basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 ***"),  # "basic usage" stays
    (re.compile(r"(://[^/\s:@]+):[^@\s/]+@"), r"\1:***@"),
    (re.compile(r"\b(ak|as)-[A-Za-z0-9]{16,}"), r"\1-***"),  # Modal token id / secret
    (re.compile(rf"(?i)(--{_NAME})(=|\s+)(\"[^\"]*\"|'[^']*'|\S+)"), r"\1\2***"),
    (re.compile(rf"(?i)\b({_NAME})(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&|]+)"),
     r"\1\2***"),
)
SUMMARY_CHARS = 80
TEXT_CHARS = 4000


def redact(text: str) -> str:
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def shorten(text: str, limit: int = SUMMARY_CHARS) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


def _rel(path: str, cwd: str | None) -> str:
    if cwd and path.startswith(cwd.rstrip("/") + "/"):
        return os.path.relpath(path, cwd)
    return path


def tool_summary(name: str, tool_input: Mapping[str, Any] | Any, cwd: str | None = None) -> str:
    """A short, redacted description of one tool call (never file contents)."""
    inp = tool_input if isinstance(tool_input, Mapping) else {}

    def field(*keys: str) -> str:
        for key in keys:
            value = inp.get(key)
            if isinstance(value, str) and value:
                return value
        return ""

    if name == "Bash":
        # redact first: a cut token may be too short for its pattern to recognise
        summary = shorten(redact(field("command")))
    elif name in ("Write", "Edit", "MultiEdit", "Read", "NotebookEdit", "NotebookRead"):
        summary = _rel(field("file_path", "notebook_path", "path"), cwd)
    elif name in ("Glob", "Grep"):
        where = field("path")
        summary = field("pattern") + (f" in {_rel(where, cwd)}" if where else "")
    elif name == "WebFetch":
        summary = field("url").split("?", 1)[0]
    elif name == "WebSearch":
        summary = field("query")
    elif name in ("Task", "Agent"):
        summary = field("description", "subagent_type")
    elif name == "TodoWrite":
        todos = inp.get("todos")
        summary = f"{len(todos)} todos" if isinstance(todos, list) else ""
    else:
        summary = ", ".join(sorted(str(k) for k in inp)[:6])
    return shorten(redact(summary), SUMMARY_CHARS + 40)


def redact_text(text: str, limit: int = TEXT_CHARS) -> str:
    text = redact(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
