"""Submitting a task: the credential check before anything is created, the workspace
upload (checkpoint zero) and ``CreateTask`` (`task create`, and the bridge's
``parhelia_task_create``)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parhelia.backends import LOCAL
from parhelia.credentials import CREDENTIAL_VARS
from parhelia_cli import render
from parhelia_cli.durations import human_bytes
from parhelia_cli.errors import CliError
from parhelia_cli.flows.session import claude_config_dir

if TYPE_CHECKING:
    from parhelia.v1 import common_pb2, tasks_pb2
    from parhelia_cli.api import Api


def find_git_root(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` holding ``.git`` (dir or file): the
    repository a task or ``env show`` is about."""
    for directory in (start, *start.parents):
        if (directory / ".git").exists():
            return directory
    return None


def check_credential(api: Api, backend: str | None) -> None:
    """Before anything is created: this shell has a credential the daemon lacks. Refused
    when the task would run locally (it would fail at dispatch); a warning otherwise (a
    Modal secret may hold the credential)."""
    status = api.system.status()
    message = shell_credential_missing_in_daemon(status)
    if message is None:
        return
    others = [b.name for b in status.backends if b.available and b.name != LOCAL]
    if backend == LOCAL or (backend is None and not others):
        raise CliError("E400", message)
    render.warn(message)


def submit_task(api: Api, prompt: str, options: common_pb2.TaskOptions, *,
                directory: Path | None = None,
                repo: str | None = None, ref: str | None = None, no_dispatch: bool = False,
                quiet: bool = False, include_secret: Sequence[str] = (),
                notices: list[str] | None = None,
                trust_project_config: bool = False, notify: str = "",
                conversation: str = "", open_pr: bool = False) -> common_pb2.Task:
    """Upload ``directory`` (when given) as checkpoint zero, then ``CreateTask``; the
    created ``Task``. The one "upload then create" of `task create` and the MCP bridge:
    nothing is uploaded unless a directory is given, and ``repo`` (cloned by the daemon)
    takes precedence over it. Upload notices (credential-looking files left
    out or sent) are printed, or appended to ``notices`` when it is given.
    ``conversation``: the id of a local Claude Code conversation sent with the upload."""
    workspace_id = workspace_path = base_commit = ""
    if not repo and directory is not None:
        # Refused options or a refused project file are said before anything is uploaded.
        api.tasks.create(prompt, options, no_dispatch=no_dispatch,
                         workspace_path=str(directory.absolute()),
                         trust_project_config=trust_project_config, validate_only=True)
        done = upload_workspace(api, directory, quiet=quiet, include_secret=include_secret,
                                conversation=conversation)
        for notice in secret_notices(done):
            if notices is not None:
                notices.append(notice)
            else:
                render.info(notice)
        workspace_id = done.workspace_id
        workspace_path = done.root or str(directory)
        base_commit = done.base_commit
    created = api.tasks.create(
        prompt, options, workspace_id=workspace_id, repo_url=repo or "",
        repo_ref=(ref or "") if repo else "", no_dispatch=no_dispatch,
        workspace_path=workspace_path, base_commit=base_commit,
        trust_project_config=trust_project_config, notify=notify,
        open_pr=open_pr)
    for notice in created.notices:  # the environment's warnings, refused commands
        if notices is not None:
            notices.append(notice)
        else:
            render.warn(render.safe(notice))
    return created.task


def secret_notices(done: tasks_pb2.UploadWorkspaceProgress) -> list[str]:
    """What an upload did with files that look like credentials, in words."""
    out = []
    left = list(done.left_out_secret_files)
    if left:
        flags = " ".join(f"--include-secret-file {shlex.quote(p)}" for p in left[:3])
        out.append(f"Left out {len(left)} file(s) that look like credentials: "
                   f"{', '.join(left[:10])}{' ...' if len(left) > 10 else ''}. "
                   f"To send them: {flags}{' ...' if len(left) > 3 else ''}")
    sent = list(done.sent_secret_files)
    if sent:
        out.append(f"Sent {len(sent)} file(s) that look like credentials (tracked by git, "
                   f"or named with --include-secret-file): {', '.join(sent[:10])}"
                   f"{' ...' if len(sent) > 10 else ''}")
    return out


def upload_workspace(api: Api, directory: Path, quiet: bool,
                     include_secret: Sequence[str] = (), conversation: str = ""
                     ) -> tasks_pb2.UploadWorkspaceProgress:
    """Stream ``UploadWorkspace`` with a progress bar on a terminal's stderr (not with
    ``quiet``); return the last (``done``) progress message."""
    from parhelia_cli.progress import Bar

    last: tasks_pb2.UploadWorkspaceProgress | None = None
    with Bar(quiet) as bar:
        for progress in api.tasks.upload_workspace(
                str(directory), include_secret_files=include_secret,
                conversation_uuid=conversation,
                claude_config_dir=claude_config_dir() if conversation else "",
                cwd=os.getcwd() if conversation else ""):
            last = progress
            if progress.done:
                break
            bar.update("Uploading the workspace", progress.bytes_done, progress.bytes_total)
    if last is None or not last.done or not last.workspace_id:
        raise CliError("E600", f"the upload of {directory} did not finish")
    if not quiet:
        render.info(f"Uploaded {last.files_total} files, {human_bytes(last.bytes_total)} "
                    f"({human_bytes(last.new_bytes)} new) from {last.root or directory}.")
        if last.agent_session_id:
            render.info(f"Sent conversation {last.agent_session_id} ({last.conversation_files} "
                        "file(s)); the task resumes it.")
    return last


def shell_credential_missing_in_daemon(status: Any) -> str | None:
    """The warning of `task create` when this shell has a credential the daemon lacks."""
    if status.credential_name or status.credential_problem:
        return None
    mine = [n for n in CREDENTIAL_VARS if os.environ.get(n, "").strip()]
    if not mine:
        return None
    return (f"{mine[0]} is set in this shell but the daemon has no credential (it was "
            "started without one). Either run `parhelia auth set` (stored in "
            f"{status.env_file}, no restart needed), or restart the daemon from this "
            "shell: `parhelia daemon stop`, then run the command again.")
