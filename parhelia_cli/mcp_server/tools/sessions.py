"""Session tools: list, kill, resume, attach info."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from parhelia_cli.convert import page, task_dict, to_dict
from parhelia_cli.flows.session import attach_info
from parhelia_cli.mcp_server.schema import READ, Limit, PageToken, SessionId, acts
from parhelia_cli.mcp_server.tools import Registrar


def register(tools: Registrar) -> None:
    """The sessions tools, on ``tools``."""
    tool, api = tools.tool, tools.api

    @tool("parhelia_session_list", READ)
    def session_list(
        include_finished: Annotated[bool, Field(description=(
            "Include the sessions of finished tasks."))] = False,
        limit: Limit = None,
        page_token: PageToken = None,
    ) -> dict[str, Any]:
        """List sessions (the long-lived execution of a task: its conversation,
        checkpoints and containers), newest first; active and stopped ones unless
        include_finished; next_page_token (null on the last page) asks for the next page.
        Same as `parhelia session list --json`."""
        resp = api.sessions.list(include_finished=include_finished, limit=limit,
                                 page_token=page_token or "")
        return page("sessions", [to_dict(s) for s in resp.sessions],
                    resp.next_page_token)

    @tool("parhelia_session_kill", acts(destructive=True, idempotent=True,
                                        title="Stop a session"))
    def session_kill(session_id: SessionId) -> dict[str, Any]:
        """Stop a session: its worker checkpoints and stops; the session stays resumable
        (parhelia_session_resume). Returns the session. Same as
        `parhelia session kill SESSION -y --json`."""
        return to_dict(api.sessions.kill(session_id))

    @tool("parhelia_session_resume", acts(destructive=False, open_world=True,
                                          title="Resume a session"))
    def session_resume(
        session_id: SessionId,
        checkpoint_id: Annotated[str | None, Field(description=(
            "Resume from this checkpoint of the session (default: the latest)."))] = None,
    ) -> dict[str, Any]:
        """Continue a stopped session in a new container: workspace and conversation are
        restored from its latest (or the given) checkpoint and Claude carries on.
        Returns the task to follow. Same as `parhelia resume SESSION --json`."""
        return task_dict(api.sessions.resume(session_id, checkpoint_id=checkpoint_id))

    @tool("parhelia_session_attach_info", READ)
    def session_attach_info(session_id: SessionId) -> dict[str, Any]:
        """How a person attaches to a session's interactive Claude Code TUI: the command to
        run in their own terminal (`command`; on Modal also `ssh_command`, a real SSH
        session), whether it can work now (`attachable`, with `reason`), how many clients
        are attached and how to detach. Reads only: it never attaches or takes over a
        headless session (the command asks the person first)."""
        s = api.sessions.get(session_id)
        return attach_info(to_dict(s), api.tasks.get(s.task_id).options.backend)
