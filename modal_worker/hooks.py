"""Checkpoint before risky tool calls, through a Claude Code ``PreToolUse`` hook.

The worker installs ``python -m modal_worker.hooks pre-tool-use`` as a PreToolUse hook
for Bash in the session's settings. Claude Code runs it before each Bash command with
the call as JSON on stdin. When the command matches one of the configured patterns
(``rm -rf``, ``git reset --hard``...) the hook drops a request file in the hook
directory, wakes the worker (SIGUSR1) and waits until the worker has written the
checkpoint — so the checkpoint really precedes the command. The hook always allows
the call (exit 0): it protects work, it does not police the agent, and a worker that
does not answer in time must not wedge the session.

Environment given to the agent (and so to its hooks): ``PARHELIA_HOOK_DIR``,
``PARHELIA_WORKER_PID``, ``PARHELIA_RISKY_PATTERNS`` (a JSON list).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parhelia.redact import redact

HOOK_DIR_ENV = "PARHELIA_HOOK_DIR"
WORKER_PID_ENV = "PARHELIA_WORKER_PID"
PATTERNS_ENV = "PARHELIA_RISKY_PATTERNS"
WAIT_SECONDS = 120.0
POLL_SECONDS = 0.05
SUMMARY_CHARS = 120


def hook_settings(python: str = sys.executable) -> dict[str, Any]:
    """The settings.json ``hooks`` fragment that installs the risky-command hook."""
    command = f"{shlex.quote(python)} -m modal_worker.hooks pre-tool-use"
    return {"PreToolUse": [{"matcher": "Bash",
                            "hooks": [{"type": "command", "command": command,
                                       "timeout": int(WAIT_SECONDS) + 30}]}]}


def hook_env(hook_dir: Path, worker_pid: int, patterns: Iterable[str]) -> dict[str, str]:
    return {HOOK_DIR_ENV: str(hook_dir), WORKER_PID_ENV: str(worker_pid),
            PATTERNS_ENV: json.dumps(list(patterns))}


def risky(command: str, patterns: Iterable[str]) -> str | None:
    """The first pattern ``command`` contains (whitespace-normalised), or None."""
    normal = " ".join(command.split())
    return next((p for p in patterns if p and " ".join(p.split()) in normal), None)


@dataclass(frozen=True)
class Request:
    id: str
    summary: str
    pattern: str


def pending(hook_dir: Path) -> list[Request]:
    """Requests waiting for a checkpoint (the worker's side), oldest first."""
    out = []
    try:
        names = sorted(hook_dir.glob("*.req"), key=lambda p: p.stat().st_mtime_ns)
    except OSError:
        return []
    for path in names:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        out.append(Request(path.stem, redact(str(data.get("summary", "")))[:SUMMARY_CHARS],
                           str(data.get("pattern", ""))))
    return out


def answer(hook_dir: Path, request: Request, checkpoint_id: str | None) -> None:
    """Tell the waiting hook its checkpoint is written (or failed: it proceeds anyway)."""
    done = hook_dir / f"{request.id}.done"
    tmp = hook_dir / f".{request.id}.tmp"
    tmp.write_text(json.dumps({"checkpoint_id": checkpoint_id}))
    os.replace(tmp, done)
    (hook_dir / f"{request.id}.req").unlink(missing_ok=True)


def pre_tool_use(payload: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
    """Run the hook for one call; returns the checkpoint id when one was taken."""
    if payload.get("tool_name") != "Bash":
        return None
    tool_input = payload.get("tool_input")
    command = tool_input.get("command") if isinstance(tool_input, Mapping) else None
    if not isinstance(command, str):
        return None
    try:
        patterns = json.loads(env.get(PATTERNS_ENV) or "[]")
    except ValueError:
        return None
    pattern = risky(command, [p for p in patterns if isinstance(p, str)])
    hook_dir = Path(env.get(HOOK_DIR_ENV) or "")
    if pattern is None or not env.get(HOOK_DIR_ENV) or not hook_dir.is_dir():
        return None
    request_id = uuid.uuid4().hex
    # the summary becomes a checkpoint's message (manifest, event, database): redact it,
    # before it is cut so that no prefix of a token survives unrecognised
    summary = f"before `{redact(' '.join(command.split()))[:SUMMARY_CHARS]}` ({pattern})"
    tmp = hook_dir / f".{request_id}.tmp"
    tmp.write_text(json.dumps({"summary": summary, "pattern": pattern}))
    os.replace(tmp, hook_dir / f"{request_id}.req")
    pid = env.get(WORKER_PID_ENV) or ""
    if pid.isdigit() and int(pid) > 1:  # never 0: that would signal our own process group
        with contextlib.suppress(OSError):
            os.kill(int(pid), signal.SIGUSR1)  # the worker also polls
    done = hook_dir / f"{request_id}.done"
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if done.exists():
            try:
                result = json.loads(done.read_text())
            except (OSError, ValueError):
                result = {}
            done.unlink(missing_ok=True)
            return str(result.get("checkpoint_id") or "") or None
        time.sleep(POLL_SECONDS)
    (hook_dir / f"{request_id}.req").unlink(missing_ok=True)
    print("parhelia: no checkpoint before this command (the worker did not answer)",
          file=sys.stderr)
    return None


def main(argv: list[str]) -> int:
    if argv[:1] != ["pre-tool-use"]:
        print("usage: python -m modal_worker.hooks pre-tool-use", file=sys.stderr)
        return 2
    try:
        payload = json.loads(sys.stdin.read() or "{}")
    except ValueError:
        return 0
    if isinstance(payload, dict):
        pre_tool_use(payload, os.environ)
    return 0  # always allow the call


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
