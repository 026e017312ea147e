"""Task tools: create (and wait), list, show, cancel, retry, diff, pull, pr, logs."""

from __future__ import annotations

import contextlib
import functools
from collections import deque
from pathlib import Path
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context
from pydantic import Field

from parhelia import statuses
from parhelia.backends import Backend
from parhelia.limits import MAX_PROMPT_CHARS
from parhelia.permissions import PermissionMode
from parhelia_cli import views
from parhelia_cli.api import Api
from parhelia_cli.convert import task_dict, to_dict, with_related
from parhelia_cli.errors import CliError, invalid, missing
from parhelia_cli.flows.follow import FINAL, progress_text, stuck
from parhelia_cli.flows.submit import submit_task
from parhelia_cli.mcp_server.schema import (
    LOG_BYTES_MAX,
    LOG_LINES_MAX,
    PATCH_CHARS_MAX,
    READ,
    Cpu,
    Gpu,
    Limit,
    MaxCost,
    MaxTurns,
    Memory,
    Model,
    PageToken,
    TaskId,
    Timeout,
    absolute_path,
    acts,
    cut_patch,
    parse_seconds,
    task_options_of,
)
from parhelia_cli.mcp_server.tools import Registrar


def register(tools: Registrar) -> None:
    """The tasks tools, on ``tools``."""
    tool, api = tools.tool, tools.api

    @tool("parhelia_task_create", acts(destructive=False, open_world=True,
                                       title="Create a task"))
    async def task_create(
        prompt: Annotated[str, Field(max_length=MAX_PROMPT_CHARS, description=(
            "What Claude Code should do, as you would type it to Claude Code."))],
        workspace: Annotated[str | None, Field(description=(
            "Absolute path of a directory to upload as the task's workspace (git-aware: "
            "tracked and untracked-not-ignored files). Omit to start with an empty "
            "workspace; nothing is uploaded unless you give one."))] = None,
        repo: Annotated[str | None, Field(description=(
            "A repository URL to work on instead of uploading a workspace: the daemon "
            "clones it (private GitHub repositories with the user's GitHub token); the "
            "agent never holds a git credential."))] = None,
        ref: Annotated[str | None, Field(description="Branch, tag or commit of repo.")] = None,
        gpu: Gpu = None, cpu: Cpu = None, memory: Memory = None, timeout: Timeout = None,
        max_turns: MaxTurns = None, max_cost_usd: MaxCost = None, model: Model = None,
        permission_mode: Annotated[PermissionMode | None, Field(description=(
            "Claude Code permission mode (default: the daemon's config)."))] = None,
        backend: Annotated[Backend | None, Field(description=(
            "Where to run it: local worker processes or Modal (default: config)."))] = None,
        no_dispatch: Annotated[bool, Field(description=(
            "Create it pending without starting it."))] = False,
        open_pr: Annotated[bool, Field(description=(
            "Open a pull request when the task completes with changes (needs a git "
            "workspace or repo)."))] = False,
        wait: Annotated[bool, Field(description=(
            "Wait for the task to finish and return it final, with progress notifications "
            "(turns, cost) meanwhile; cancelling the call stops the wait, not the "
            "task."))] = False,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Create a Parhelia task: Claude Code runs PROMPT in an isolated worker (local
        process or Modal sandbox), checkpointed and budget-capped. Returns at once with
        the task (status pending), or with wait the finished task; otherwise poll
        parhelia_task_show or parhelia_events_stream until it is completed, failed or
        cancelled. Same as `parhelia task create [--sync] --json` (plus notices about
        credential-looking files of the workspace)."""
        if no_dispatch and wait:
            raise invalid("wait waits for a result that no_dispatch never starts")
        created = await anyio.to_thread.run_sync(functools.partial(
            _create, api, prompt, workspace=workspace, repo=repo, ref=ref,
            options=task_options_of(gpu, cpu, memory, timeout, max_turns, max_cost_usd, model,
                                    permission_mode, backend), no_dispatch=no_dispatch,
            open_pr=open_pr))
        task, notices = created
        if wait:
            task = await _wait_for(api, task["id"], ctx)
        return with_related(task, notices=notices) if notices else task

    @tool("parhelia_task_list", READ)
    def task_list(
        status: Annotated[list[statuses.TaskStatus] | None, Field(description=(
            "Only tasks in these states."))] = None,
        limit: Limit = None,
        page_token: PageToken = None,
    ) -> dict[str, Any]:
        """List tasks, newest first, with status, options, usage (turns, tokens, cost) and
        result; next_page_token (null on the last page) asks for the next page. Same as
        `parhelia task list --json`."""
        resp = api.tasks.list(statuses=status, limit=limit, page_token=page_token or "")
        return views.task_page(resp)

    @tool("parhelia_task_show", READ)
    def task_show(task_id: TaskId) -> dict[str, Any]:
        """One task: status and reason, prompt, options, source, times, session and
        container, usage (turns, tokens, api/compute/total cost), last tool and result
        (text, error code), and resume_degraded (resumes that had to start a new
        conversation). Same as `parhelia task show ID --json`."""
        return views.task_show(api, task_id)

    @tool("parhelia_task_cancel", acts(destructive=True, idempotent=True,
                                       title="Cancel a task"))
    def task_cancel(
        task_id: TaskId,
        grace: Annotated[int | str | None, Field(description=(
            "Time the worker gets to checkpoint before it is killed: seconds or '30s', "
            "'2m' (default: the daemon's config)."))] = None,
    ) -> dict[str, Any]:
        """Cancel a task: its worker is asked to checkpoint and stop, and is killed after
        the grace period. Returns the task. Same as `parhelia task cancel ID --json`."""
        return task_dict(api.tasks.cancel(task_id, grace_seconds=parse_seconds("grace", grace)))

    @tool("parhelia_task_retry", acts(destructive=False, open_world=True,
                                      title="Retry a task"))
    def task_retry(task_id: TaskId) -> dict[str, Any]:
        """Run a finished task again, in a fresh session from its checkpoint zero (the
        uploaded workspace). Returns the task. Same as `parhelia task retry ID --json`."""
        return task_dict(api.tasks.retry(task_id))

    @tool("parhelia_task_diff", READ)
    def task_diff(
        task_id: TaskId,
        stat_only: Annotated[bool, Field(description=(
            "Only the changed files and line counts, no patch."))] = False,
        max_patch_chars: Annotated[int, Field(ge=1000, le=PATCH_CHARS_MAX, description=(
            "Cut the unified diff after this many characters (patch_truncated says "
            "so)."))] = 100_000,
    ) -> dict[str, Any]:
        """What a task changed against its uploaded workspace (checkpoint zero): files
        (path, change, sizes, lines added/removed, binary) and a unified diff. Same as
        `parhelia task diff ID --json`, plus patch_truncated."""
        return cut_patch(to_dict(api.tasks.diff(task_id, stat_only=stat_only)),
                         max_patch_chars)

    # Destructive: with patch_path and force it replaces any file the user can write.
    @tool("parhelia_task_pull", acts(destructive=True, title="Bring a task's changes back"))
    def task_pull(
        task_id: TaskId,
        branch: Annotated[str | None, Field(max_length=250, description=(
            "Branch to create in the task's repository (default: parhelia/<task id>)."))
                          ] = None,
        patch_path: Annotated[str | None, Field(max_length=4096, description=(
            "Absolute path of a patch file to write instead of creating a branch."))] = None,
        repo_path: Annotated[str | None, Field(max_length=4096, description=(
            "Absolute path of the repository to create the branch in (default: the "
            "directory the task's workspace was uploaded from)."))] = None,
        force: Annotated[bool, Field(description=(
            "Replace patch_path when the file exists (it is overwritten)."))] = False,
    ) -> dict[str, Any]:
        """Bring a finished task's changes back as a new branch (or a patch file) in the
        user's repository; the working tree and the current branch are never touched.
        Same as `parhelia task pull ID --json`."""
        if branch and patch_path:
            raise invalid("branch and patch_path are alternatives; give one")
        return to_dict(api.tasks.pull(
            task_id, branch=branch or "",
            patch_path=absolute_path("patch_path", patch_path) if patch_path else "",
            repo_path=absolute_path("repo_path", repo_path) if repo_path else "", force=force))

    @tool("parhelia_task_pr", acts(destructive=False, idempotent=True, open_world=True,
                                   title="Open a pull request of a task"))
    def task_pr(
        task_id: TaskId,
        base: Annotated[str | None, Field(max_length=250, description=(
            "Branch the pull request goes into (default: the one recorded, else the "
            "branch the workspace was uploaded from when the remote has it, else the "
            "remote's default branch)."))] = None,
        title: Annotated[str | None, Field(max_length=256, description=(
            "Its title (default: the first line of the task's prompt)."))] = None,
        branch: Annotated[str | None, Field(max_length=250, description=(
            "Branch to push (default: the one recorded, else parhelia/<task id>)."))] = None,
        draft: Annotated[bool | None, Field(description=(
            "Open it as a draft (true) or ready for review (false); default: the "
            "daemon's github.draft."))] = None,
    ) -> dict[str, Any]:
        """Push a task's branch (the same commits as parhelia_task_pull) from the daemon's
        side with the user's GitHub token and open its pull request, or update the branch
        and the same pull request when they exist. Returns pull_request (url, number,
        branch, commit, base, remote), pushed, created and the task. Same as `parhelia
        task pr ID --json`."""
        resp = api.tasks.pr(task_id, base=base or "", title=title or "", branch=branch or "",
                            draft=draft)
        data = to_dict(resp)
        data["task"] = task_dict(resp.task)
        return data

    @tool("parhelia_task_logs", READ)
    def task_logs(
        task_id: TaskId,
        lines: Annotated[int, Field(ge=1, le=LOG_LINES_MAX, description=(
            "How many of the last lines to return."))] = 100,
        max_bytes: Annotated[int, Field(ge=1024, le=LOG_BYTES_MAX, description=(
            "Upper bound on the bytes returned (older lines are dropped first)."))] = 65536,
    ) -> dict[str, Any]:
        """The tail of the agent's raw output (Claude Code stream-json, one JSON object
        per line) over every container of a task, oldest line first. Bounded: at most
        `lines` lines and `max_bytes` bytes; `truncated` says whether anything older was
        left out. Like `parhelia task logs ID`, without following."""
        return _tail_logs(api, task_id, lines, max_bytes)


def _create(api: Api, prompt: str, *, workspace: str | None, repo: str | None,
            ref: str | None, options: Any, no_dispatch: bool, open_pr: bool = False
            ) -> tuple[dict[str, Any], list[str]]:
    """``task create``'s checks and its one "upload then create" (``submit_task``): the
    created task and the upload's notices."""
    if not prompt.strip():
        raise missing("prompt: the prompt is empty; give the task something to do")
    if repo and workspace:
        raise invalid("repo is the task's workspace (the daemon clones it); it cannot be "
                      "combined with workspace")
    if ref and not repo:
        raise invalid(f"ref {ref!r} needs repo")
    directory = _workspace_dir(workspace) if workspace else None
    notices: list[str] = []
    created = submit_task(api, prompt, options, directory=directory, repo=repo, ref=ref,
                          no_dispatch=no_dispatch, quiet=True, notices=notices,
                          open_pr=open_pr)
    return task_dict(created), notices


async def _wait_for(api: Api, task_id: str, ctx: Context | None) -> dict[str, Any]:
    """Follow ``WatchTask`` until the task is final, sending a progress notification per
    update (turns, tokens, cost, in words); the final task. A task that waits for the
    user (it cannot fit the budget, the budget paused it) is that error (E300...), as
    for `task create --sync`. Cancelling the call closes the watch; the task runs on."""
    stream = api.tasks.watch(task_id)
    last: dict[str, Any] | None = None
    sent = 0
    try:
        while True:
            progress = await anyio.to_thread.run_sync(next, stream, None,
                                                      abandon_on_cancel=True)
            if progress is None:
                break
            last = task_dict(progress.task)
            if stuck(last):
                raise CliError(last["status_code"] or "E300",
                               f"task {last['id']} is {last['status']}: "
                               f"{last['status_reason']}. It stays queued; "
                               "parhelia_task_show follows it")
            if ctx is not None:  # progress must grow with each notification: a count
                sent += 1
                await ctx.report_progress(sent, None,
                                          progress_text(last, progress.elapsed_seconds))
            if last["status"] in FINAL:
                break
    finally:
        stream.close()
    if last is None or last["status"] not in FINAL:
        raise CliError("E900", f"the progress stream of task {task_id} ended before it "
                               "finished; parhelia_task_show follows it")
    return last


def _workspace_dir(workspace: str) -> Path:
    """The directory to upload: absolute, existing, a directory (E101 otherwise)."""
    path = Path(absolute_path("workspace", workspace))
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist"
        raise invalid(f"workspace: {workspace} {what}")
    return path


def _tail_logs(api: Api, task_id: str, lines: int, max_bytes: int) -> dict[str, Any]:
    """The last ``lines`` lines (at most ``max_bytes``) of ``GetTaskLogs``, in bounded
    memory however long the logs are."""
    kept: deque[tuple[str, bytes]] = deque()
    kept_bytes = 0
    dropped = False
    seen: list[str] = []
    partial = b""
    current = ""

    def push(container_id: str, line: bytes) -> None:
        nonlocal kept_bytes, dropped
        if len(line) > max_bytes:
            line, dropped = line[-max_bytes:], True
        kept.append((container_id, line))
        kept_bytes += len(line)
        while len(kept) > lines or kept_bytes > max_bytes:
            kept_bytes -= len(kept.popleft()[1])
            dropped = True

    # Resolve the id first: an unknown task is E201 (not "no output"), and the answer
    # names the full id.
    task_id = api.tasks.get(task_id).id
    total = 0
    with contextlib.closing(api.tasks.logs(task_id)) as stream:
        for chunk in stream:
            total += len(chunk.data)
            if chunk.container_id != current:
                if partial:
                    push(current, partial)
                partial, current = b"", chunk.container_id
                seen.append(current)
            parts = (partial + chunk.data).split(b"\n")
            partial = parts.pop()
            if len(partial) > max_bytes:  # one enormous line: keep its tail only
                partial, dropped = partial[-max_bytes:], True
            for part in parts:
                push(current, part)
    if partial:
        push(current, partial)
    return {"task_id": task_id, "containers": seen, "bytes_total": total,
            "truncated": dropped,
            "lines": [{"container_id": c, "text": line.decode("utf-8", "replace")}
                      for c, line in kept]}

