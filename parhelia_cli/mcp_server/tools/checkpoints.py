"""Checkpoint tools: create, list, rollback (and its earlier name restore), diff."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from parhelia_cli.convert import page, to_dict
from parhelia_cli.mcp_server.schema import (
    PATCH_CHARS_MAX,
    READ,
    CheckpointId,
    Limit,
    PageToken,
    SessionId,
    acts,
    cut_patch,
)
from parhelia_cli.mcp_server.tools import Registrar


def register(tools: Registrar) -> None:
    """The checkpoints tools, on ``tools``."""
    tool, api = tools.tool, tools.api

    @tool("parhelia_checkpoint_create", acts(destructive=False,
                                             title="Checkpoint a session"))
    def checkpoint_create(
        session_id: SessionId,
        message: Annotated[str, Field(max_length=2000, description=(
            "A note to remember it by."))] = "",
    ) -> dict[str, Any]:
        """Checkpoint a session now: workspace, conversation, environment and git state
        (a running worker snapshots; a stopped session is checkpointed from its last
        state). Manual checkpoints are kept by gc. Same as
        `parhelia checkpoint create SESSION --json`."""
        return to_dict(api.checkpoints.create(session_id, message=message))

    @tool("parhelia_checkpoint_list", READ)
    def checkpoint_list(
        session_id: Annotated[str | None, Field(description=(
            "Only this session's checkpoints (default: all sessions)."))] = None,
        limit: Limit = None,
        page_token: PageToken = None,
    ) -> dict[str, Any]:
        """List checkpoints, newest first: trigger, message, manual flag, stats (files,
        bytes, new bytes), git state; next_page_token (null on the last page) asks for the
        next page. Same as `parhelia checkpoint list --json`."""
        resp = api.checkpoints.list(session_id=session_id, limit=limit,
                                    page_token=page_token or "")
        return page("checkpoints", [to_dict(c) for c in resp.checkpoints],
                    resp.next_page_token)

    @tool("parhelia_checkpoint_rollback", acts(destructive=True,
                                               title="Roll a session back to a checkpoint"))
    def checkpoint_rollback(checkpoint_id: CheckpointId) -> dict[str, Any]:
        """Roll a session back: restore its workspace and conversation to the checkpoint.
        A safety checkpoint of the current state is taken first (rolling back to it
        undoes this); a running session is stopped, restored and resumed. Same as
        `parhelia checkpoint rollback CP -y --json`."""
        return to_dict(api.checkpoints.rollback(checkpoint_id))

    tool("parhelia_checkpoint_restore", acts(destructive=True,
                                             title="Roll a session back to a checkpoint"),
         description="The earlier name of parhelia_checkpoint_rollback (same call, same "
                     "answer).")(checkpoint_rollback)

    @tool("parhelia_checkpoint_diff", READ)
    def checkpoint_diff(
        from_checkpoint_id: Annotated[str, Field(min_length=1, max_length=200, description=(
            "The older checkpoint (cp-...) or a unique prefix."))],
        to_checkpoint_id: Annotated[str, Field(min_length=1, max_length=200, description=(
            "The newer checkpoint (cp-...) or a unique prefix."))],
        files: Annotated[bool, Field(description=(
            "Include the unified diff of text files."))] = False,
        conversation: Annotated[bool, Field(description=(
            "Include the conversation turns added."))] = False,
        max_patch_chars: Annotated[int, Field(ge=1000, le=PATCH_CHARS_MAX, description=(
            "Cut the unified diff after this many characters (patch_truncated says "
            "so)."))] = 100_000,
    ) -> dict[str, Any]:
        """What changed from one checkpoint to another: files added, removed and modified
        (sizes, line counts), optionally the patch and the conversation turns added. Same
        as `parhelia checkpoint diff A B --json`, plus patch_truncated."""
        return cut_patch(to_dict(api.checkpoints.diff(
            from_checkpoint_id, to_checkpoint_id, files=files, conversation=conversation)),
            max_patch_chars)
