"""TaskService RPCs that make tasks run and bring results back (upload, dispatch,
retry, watch, logs, diff, pull). A mixin of :class:`parheliad.api.tasks.TaskServicer`;
the work is done by :class:`parheliad.core.runtime.Runtime`."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import grpc

from parhelia import gitsafe
from parhelia.checkpoint.diff import Change
from parhelia.errors import ParheliaError, invalid, missing
from parhelia.progress import BYTES, FILES
from parhelia.v1 import common_pb2, tasks_pb2
from parheliad.api.convert import (
    container_to_proto,
    event_to_proto,
    require_ref,
    task_to_proto,
)
from parheliad.api.system import tracked
from parheliad.context import DaemonContext
from parheliad.core import patches, results, takehome, workspace
from parheliad.core.events import SLOW
from parheliad.core.overlap import MAX_PATHS
from parheliad.core.pricing import round_micros, token_cost
from parheliad.core.pullrequest import Request
from parheliad.core.runtime import Runtime
from parheliad.core.states import TASK_FINAL, TaskStatus
from parheliad.core.tasks import RetryOverrides
from parheliad.store import EventFilter
from parheliad.store.rows import TaskRow

_LIVE_STATUSES = ("running", "recovering")
DEFAULT_RECENT = 20
MAX_RECENT = 1000
MAX_LIVE = 1000


def _inflight(row: TaskRow, ctx: DaemonContext) -> int:
    """What a running task has spent on the API beyond what its agent reported: its
    tokens priced at the configured rates (the CLI reports its cost only at the end)."""
    if row.status not in _LIVE_STATUSES:
        return 0
    cfg = ctx.config
    priced = round_micros(token_cost(
        cfg.rates, row.model or cfg.agent.model, input_tokens=row.input_tokens,
        output_tokens=row.output_tokens, cache_write=row.cache_creation_input_tokens,
        cache_read=row.cache_read_input_tokens))
    return max(0, priced - row.api_cost_micros)


def task_view(row: TaskRow, ctx: DaemonContext) -> common_pb2.Task:
    msg = task_to_proto(row)
    msg.usage.inflight_api_cost_micros = _inflight(row, ctx)
    for found in ctx.overlaps(row.id):
        msg.overlaps.add(task_id=found.task_id, paths=found.paths[:MAX_PATHS],
                         path_count=len(found.paths))
    return msg


def task_ref(value: str) -> str:
    return require_ref(value, "task_id")


def retry_overrides(msg: common_pb2.TaskOptions) -> RetryOverrides:
    """The options a retry may change; E101 naming any other that was given."""
    fixed = [name for name in ("gpu", "cpu", "memory_mb", "permission_mode", "backend",
                               "interactive") if getattr(msg, name)]
    if fixed:
        raise invalid(f"options: a retry may change max_turns, max_cost_micros, "
                      f"timeout_seconds and model, not {', '.join(fixed)}; create a new task "
                      "for those", field="options")
    return RetryOverrides(max_turns=msg.max_turns, max_cost_micros=msg.max_cost_micros,
                          timeout_seconds=msg.timeout_seconds, model=msg.model)


def file_change(c: Change, lines: Mapping[str, patches.Lines] | None = None
                ) -> tasks_pb2.FileChange:
    """``c`` with its line counts (``lines``: by path, from git's numstat)."""
    counted = (lines or {}).get(c.path) or patches.Lines()
    return tasks_pb2.FileChange(path=c.path, change=c.kind, old_size=c.old_size or 0,
                                new_size=c.new_size or 0, lines_added=counted.added,
                                lines_removed=counted.removed, binary=counted.binary)


DIFF_AGAINST = ("upload", "base")
DRAFT_WORDS: dict[str, bool | None] = {"": None, "draft": True, "ready": False}
MAX_TITLE_CHARS = 256


class TaskRunsMixin:
    _ctx: DaemonContext

    @property
    def _runtime(self) -> Runtime:
        return self._ctx.require_runtime()

    async def UploadWorkspace(self, request: tasks_pb2.UploadWorkspaceRequest,
                              context: grpc.aio.ServicerContext
                              ) -> AsyncIterator[tasks_pb2.UploadWorkspaceProgress]:
        if not request.path:
            raise missing("path: give the directory to upload", field="path")
        conversation = None
        if request.conversation_uuid:
            conversation = await asyncio.to_thread(
                takehome.find_local_conversation,
                takehome.claude_config_dir(request.claude_config_dir),
                takehome.check_uuid(request.conversation_uuid, "conversation_uuid"),
                tuple(Path(p) for p in (request.cwd, request.path) if p))
        hub = self._ctx.progress
        op_id = "upload-" + secrets.token_hex(16)
        runtime = self._runtime

        async def run() -> workspace.Upload:
            with hub.track(op_id) as tracker:
                tracker.phase("uploading", BYTES)
                return await runtime.upload(Path(request.path),
                                            list(request.include_secret_files),
                                            conversation, tracker.report)

        job = asyncio.create_task(run())
        try:
            async for state in hub.watch(op_id):
                if not state.finished and state.total:
                    yield tasks_pb2.UploadWorkspaceProgress(bytes_done=state.done,
                                                            bytes_total=state.total)
            up = await job
        finally:
            job.cancel()
        yield tasks_pb2.UploadWorkspaceProgress(
            files_done=up.files, files_total=up.files, bytes_done=up.bytes,
            bytes_total=up.bytes, new_bytes=up.new_bytes, done=True,
            workspace_id=up.workspace_id, base_commit=up.base_commit, root=str(up.root),
            left_out_secret_files=up.left_out, sent_secret_files=up.secret_sent,
            conversation_files=up.conversation_files,
            agent_session_id=up.agent_session_id)

    async def RetryTask(self, request: tasks_pb2.RetryTaskRequest,
                        context: grpc.aio.ServicerContext) -> common_pb2.Task:
        return task_to_proto(await self._runtime.retry(
            task_ref(request.task_id), retry_overrides(request.options)))

    async def DispatchTasks(self, request: tasks_pb2.DispatchTasksRequest,
                            context: grpc.aio.ServicerContext
                            ) -> tasks_pb2.DispatchTasksResponse:
        ids = [task_ref(t) for t in request.task_ids]
        report = await self._runtime.dispatcher.run_pass(release=ids or None)
        return tasks_pb2.DispatchTasksResponse(
            dispatched_task_ids=report.dispatched,
            refused_task_ids=[r.task_id for r in report.refused], detail=report.detail,
            refusals=[tasks_pb2.DispatchRefusal(task_id=r.task_id, code=r.code,
                                                message=r.message) for r in report.refused],
            released_task_ids=report.released)

    async def WatchTask(self, request: tasks_pb2.WatchTaskRequest,
                        context: grpc.aio.ServicerContext
                        ) -> AsyncIterator[tasks_pb2.TaskProgress]:
        """The task now, then once per event of it, until it is completed, failed or
        cancelled (the last message carries the final task)."""
        store = self._ctx.store
        task = await store.tasks.get(task_ref(request.task_id))
        with self._ctx.bus.subscribe(EventFilter(task_id=task.id)) as sub:
            task = await store.tasks.get(task.id)  # after subscribing: no gap
            yield self._progress(task, None, self._ctx)
            if TaskStatus(task.status) in TASK_FINAL:
                return
            async for row in sub:
                task = await store.tasks.get(task.id)
                yield self._progress(task, event_to_proto(row), self._ctx)
                if TaskStatus(task.status) in TASK_FINAL and row.type.startswith("task_"):
                    return

    async def WatchAllTasks(self, request: tasks_pb2.WatchAllTasksRequest,
                         context: grpc.aio.ServicerContext
                         ) -> AsyncIterator[tasks_pb2.TaskProgress]:
        """The unfinished tasks and the newest ``recent`` finished ones, a
        ``snapshot_done`` marker, then one message per event of any task as it commits
        (a deleted task's message has its event and no task). Ends when the daemon stops;
        a watcher too slow to keep up gets E500."""
        if not 0 <= request.recent <= MAX_RECENT:
            raise invalid(f"recent: must be 0 to {MAX_RECENT}", field="recent")
        store = self._ctx.store
        with self._ctx.bus.subscribe(EventFilter()) as sub:
            live = await store.tasks.list(tuple(s for s in TaskStatus if s not in TASK_FINAL),
                                          limit=MAX_LIVE)
            done = await store.tasks.list(tuple(TASK_FINAL),
                                          limit=request.recent or DEFAULT_RECENT)
            for task in live + done:
                yield await self._board_row(task, None)
            yield tasks_pb2.TaskProgress(snapshot_done=True)
            async for row in sub:
                if not row.task_id:
                    continue
                found = await store.tasks.find(row.task_id)
                if found is None:
                    yield tasks_pb2.TaskProgress(event=event_to_proto(row))
                else:
                    yield await self._board_row(found, event_to_proto(row))
            if sub.ended_because == SLOW:
                raise ParheliaError("E500", "the task watch fell behind and was dropped; "
                                            "watch again")

    async def _board_row(self, task: TaskRow, event: common_pb2.Event | None
                         ) -> tasks_pb2.TaskProgress:
        progress = self._progress(task, event, self._ctx)
        if task.container_id:
            container = await self._ctx.store.containers.find(task.container_id)
            if container is not None:
                progress.container.CopyFrom(container_to_proto(container))
        return progress

    @staticmethod
    def _progress(task: TaskRow, event: common_pb2.Event | None,
                  ctx: DaemonContext) -> tasks_pb2.TaskProgress:
        start = task.started_at or task.created_at
        end = task.finished_at or int(time.time() * 1_000_000)
        return tasks_pb2.TaskProgress(task=task_view(task, ctx), event=event,
                                      elapsed_seconds=max(0, end - start) / 1_000_000)

    async def GetTaskLogs(self, request: tasks_pb2.GetTaskLogsRequest,
                          context: grpc.aio.ServicerContext
                          ) -> AsyncIterator[tasks_pb2.LogChunk]:
        async for container_id, data, offset in self._runtime.logs(
                task_ref(request.task_id), follow=request.follow, offset=max(0, request.offset),
                setup=request.setup):
            yield tasks_pb2.LogChunk(container_id=container_id, data=data, offset=offset)

    async def GetTaskDiff(self, request: tasks_pb2.GetTaskDiffRequest,
                          context: grpc.aio.ServicerContext) -> tasks_pb2.GetTaskDiffResponse:
        runtime = self._runtime
        against = request.against or "upload"
        if against not in DIFF_AGAINST:
            raise invalid(f"against: must be one of {', '.join(DIFF_AGAINST)}, got "
                          f"{request.against!r}", field="against")
        task, changes = await runtime.changes(task_ref(request.task_id))
        with_text = not request.stat_only
        if against == "base":
            based = await asyncio.to_thread(results.base_patch, runtime.volume, task, changes,
                                            with_text=with_text)
            files = [tasks_pb2.FileChange(path=f.path, change=f.kind,
                                          lines_added=f.lines.added,
                                          lines_removed=f.lines.removed,
                                          binary=f.lines.binary) for f in based.files]
            patch, base = based.text, based.base
        else:
            made = await asyncio.to_thread(results.patch_text, runtime.volume, changes,
                                           with_text=with_text)
            files = [file_change(c, made.lines) for c in changes.tree.changes]
            patch, base = made.text, task.base_commit
        return tasks_pb2.GetTaskDiffResponse(files=files, patch=patch, against=against,
                                             base_commit=base)

    async def PullTask(self, request: tasks_pb2.PullTaskRequest,
                       context: grpc.aio.ServicerContext) -> tasks_pb2.PullTaskResponse:
        runtime = self._runtime
        task, changes = await runtime.changes(task_ref(request.task_id))
        if not changes.tree:
            raise ParheliaError("E605", f"task {task.id} changed nothing; there is nothing to "
                                        "pull")
        with tracked(self._ctx, context) as tracker:
            tracker.phase("committing the task's files", FILES,
                          len(changes.tree.changes))
            pulled = await asyncio.to_thread(
                results.pull, runtime.volume, task, changes, repo_path=request.repo_path,
                branch=request.branch, patch_path=request.patch_path, force=request.force,
                progress=tracker.report)
        return tasks_pb2.PullTaskResponse(
            branch=pulled.branch, commit=pulled.commit, patch_path=pulled.patch_path,
            files=[file_change(c) for c in changes.tree.changes],
            base_commit=pulled.base_commit, repo_path=str(pulled.repo),
            upload_commit=pulled.upload_commit, skipped=pulled.skipped)

    async def OpenPullRequest(self, request: tasks_pb2.OpenPullRequestRequest,
                              context: grpc.aio.ServicerContext
                              ) -> tasks_pb2.OpenPullRequestResponse:
        if request.draft not in DRAFT_WORDS:
            raise invalid(f"draft: must be draft, ready or empty, not {request.draft!r}",
                          field="draft")
        if len(request.title) > MAX_TITLE_CHARS or any(c in request.title for c in "\0\n\r"):
            raise invalid(f"title: one line of at most {MAX_TITLE_CHARS} characters",
                          field="title")
        wanted = Request(base=request.base, title=request.title, branch=request.branch,
                         draft=DRAFT_WORDS[request.draft])
        for name in ("base", "branch"):
            value = getattr(request, name)
            problem = gitsafe.ref_problem(value) if value else None
            if problem:
                raise invalid(f"{name}: {value!r} is not a branch name: it {problem}",
                              field=name)
        prs = self._ctx.require_pull_requests()
        with tracked(self._ctx, context) as tracker:
            tracker.phase("committing the task's files", FILES)
            row, changes, done = await prs.publish(task_ref(request.task_id), wanted,
                                                   tracker.report)
        task = task_view(row, self._ctx)
        return tasks_pb2.OpenPullRequestResponse(
            task=task, pull_request=task.pull_request, pushed=done.pushed,
            created=done.created, forge=done.forge, draft=done.draft,
            files=[file_change(c) for c in changes.tree.changes], skipped=done.skipped)
