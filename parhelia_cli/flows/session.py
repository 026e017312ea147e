"""Sessions seen from the user's machine: how a person attaches to one (`session attach
--print`, the bridge's ``parhelia_session_attach_info``), where their Claude Code
configuration is, and the command that resumes a conversation taken home."""

from __future__ import annotations

from typing import Any

from parhelia.backends import MODAL
from parhelia.interactive import DETACH_HINT

LIVE = ("headless", "detached", "attached")


def attach_info(s: dict[str, Any], backend: str) -> dict[str, Any]:
    """How a person attaches to session ``s`` (a ``Session`` dict) of a task on ``backend``:
    the command to run in a terminal, and whether it can work now. Reads only: attaching
    (and taking a headless session over) is the command's business, at the terminal."""
    import shlex

    argv = ["parhelia", "session", "attach", s["id"]]
    status = s["status"] or "unknown"
    info: dict[str, Any] = {
        "session_id": s["id"], "task_id": s["task_id"], "status": status,
        "backend": backend, "interactive": bool(s["interactive"]),
        "attached_clients": s["attached_clients"] or 0, "attachable": status in LIVE,
        "argv": argv, "command": shlex.join(argv), "detach": DETACH_HINT,
    }
    if backend == MODAL:
        info["ssh_argv"] = [*argv, "--ssh"]
        info["ssh_command"] = shlex.join(info["ssh_argv"])
    if status not in LIVE:
        info["reason"] = (f"the session is {status}: nothing runs to attach to; "
                          f"`parhelia resume {s['id']}` continues it headless, "
                          f"`parhelia session pull {s['id']} --to DIR` takes it home")
    elif status == "headless":
        info["reason"] = ("the agent runs headless: attaching offers to take it over "
                          "(checkpoint, stop the headless agent, start the interactive TUI on "
                          "the same conversation); `parhelia session release` hands it back")
    return info


def claude_config_dir() -> str:
    """The user's Claude Code config dir, as the CLI finds it: ``CLAUDE_CONFIG_DIR``, else
    ``~/.claude`` (absolute)."""
    import os

    configured = os.environ.get("CLAUDE_CONFIG_DIR", "").strip()
    return os.path.abspath(os.path.expanduser(configured or "~/.claude"))


def resume_command(directory: str, agent_session_id: str) -> str:
    import shlex

    return f"cd {shlex.quote(directory)} && claude --resume {shlex.quote(agent_session_id)}"
