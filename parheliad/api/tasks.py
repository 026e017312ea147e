"""TaskService: create, list, get, cancel, delete (and, from the mixin, running them)."""

from __future__ import annotations

import grpc

from parhelia.errors import invalid
from parhelia.v1 import common_pb2, tasks_pb2, tasks_pb2_grpc
from parheliad.api import paging
from parheliad.api.budget import EstimateMixin
from parheliad.api.convert import (
    options_from_proto,
    source_from_proto,
    status_from_proto,
    task_to_proto,
)
from parheliad.api.task_runs import TaskRunsMixin, task_ref, task_view
from parheliad.context import DaemonContext
from parheliad.core.notify import override_key
from parheliad.environments import service as environments

_ref = task_ref


class TaskServicer(TaskRunsMixin, EstimateMixin, tasks_pb2_grpc.TaskServiceServicer):
    def __init__(self, ctx: DaemonContext) -> None:
        self._ctx = ctx

    async def CreateTask(self, request: tasks_pb2.CreateTaskRequest,
                         context: grpc.aio.ServicerContext) -> tasks_pb2.CreateTaskResponse:
        if request.notify not in ("", "on", "off"):
            raise invalid(f"notify: must be on, off or empty, not {request.notify!r}",
                          field="notify")
        if request.validate_only:
            self._ctx.tasks.prepare(
                request.prompt, options_from_proto(request.options),
                source_from_proto(request.source), workspace_path=request.workspace_path,
                base_commit=request.base_commit, dispatch=not request.no_dispatch,
                trust_project_config=request.trust_project_config)
            return tasks_pb2.CreateTaskResponse()
        row = await self._ctx.tasks.create(
            request.prompt, options_from_proto(request.options),
            source_from_proto(request.source), workspace_path=request.workspace_path,
            base_commit=request.base_commit, dispatch=not request.no_dispatch,
            trust_project_config=request.trust_project_config, open_pr=request.open_pr)
        if request.notify:
            await self._ctx.store.kv.set(override_key(row.id), request.notify == "on")
        return tasks_pb2.CreateTaskResponse(task=task_to_proto(row),
                                            notices=environments.create_notices(row))

    async def ListTasks(self, request: tasks_pb2.ListTasksRequest,
                        context: grpc.aio.ServicerContext) -> tasks_pb2.ListTasksResponse:
        statuses = tuple(status_from_proto(s) for s in request.statuses)
        page = paging.page("tasks", request.limit, request.page_token, shape=(int,))
        before = int(page.after[0]) if page.after else None
        rows = await self._ctx.tasks.list(statuses, limit=page.limit + 1, before_seq=before)
        sent, next_token = page.answer(rows, lambda r: (r.seq,))
        total = await self._ctx.store.tasks.count(statuses) \
            if page.is_part(next_token) else len(sent)
        return tasks_pb2.ListTasksResponse(tasks=[task_view(r, self._ctx) for r in sent],
                                           next_page_token=next_token, total=total)

    async def GetTask(self, request: tasks_pb2.GetTaskRequest,
                      context: grpc.aio.ServicerContext) -> common_pb2.Task:
        row = await self._ctx.tasks.get(_ref(request.task_id))
        msg = task_view(row, self._ctx)
        container = await self._ctx.store.containers.find(row.container_id) \
            if row.container_id else None
        if container is not None:
            msg.isolation, msg.credential = container.isolation, container.credential
            if msg.HasField("environment"):  # the mode as its container runs it
                mode, why = environments.permission(row, container.isolation)
                msg.environment.permission_mode, msg.environment.permission_reason = mode, why
        return msg

    async def CancelTask(self, request: tasks_pb2.CancelTaskRequest,
                         context: grpc.aio.ServicerContext) -> common_pb2.Task:
        if request.grace_seconds < 0:
            raise invalid("grace_seconds: must not be negative", field="grace_seconds")
        row = await self._ctx.tasks.cancel(_ref(request.task_id), request.grace_seconds)
        return task_to_proto(row)

    async def DeleteTask(self, request: tasks_pb2.DeleteTaskRequest,
                         context: grpc.aio.ServicerContext) -> tasks_pb2.DeleteTaskResponse:
        task_id = await self._ctx.tasks.delete(_ref(request.task_id), force=request.force)
        return tasks_pb2.DeleteTaskResponse(task_id=task_id)
