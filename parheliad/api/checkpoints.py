"""CheckpointService over :class:`parheliad.core.checkpoints.CheckpointOps`."""

from __future__ import annotations

import json

import grpc

from parhelia.errors import ParheliaError
from parhelia.v1 import checkpoints_pb2, checkpoints_pb2_grpc, common_pb2
from parheliad.api import paging
from parheliad.api.convert import checkpoint_to_proto, require_ref
from parheliad.api.system import tracked
from parheliad.api.task_runs import file_change
from parheliad.context import DaemonContext
from parheliad.core.checkpoints import problems
from parheliad.core.runtime import Runtime

MAX_MESSAGE = 500


def _ref(value: str, what: str = "checkpoint_id") -> str:
    return require_ref(value, what)


class CheckpointServicer(checkpoints_pb2_grpc.CheckpointServiceServicer):
    def __init__(self, ctx: DaemonContext) -> None:
        self._ctx = ctx

    @property
    def _rt(self) -> Runtime:
        return self._ctx.require_runtime()

    async def CreateCheckpoint(self, request: checkpoints_pb2.CreateCheckpointRequest,
                               context: grpc.aio.ServicerContext) -> common_pb2.Checkpoint:
        if len(request.message) > MAX_MESSAGE:
            raise ParheliaError("E101", f"message: at most {MAX_MESSAGE} characters")
        row = await self._rt.checkpoints.create(_ref(request.session_id, "session_id"),
                                                request.message)
        return checkpoint_to_proto(row)

    async def ListCheckpoints(self, request: checkpoints_pb2.ListCheckpointsRequest,
                              context: grpc.aio.ServicerContext
                              ) -> checkpoints_pb2.ListCheckpointsResponse:
        store = self._ctx.store
        session_id = None
        if request.session_id.strip():
            session_id = (await store.sessions.get(request.session_id.strip())).id
        page = paging.page("checkpoints", request.limit, request.page_token,
                           shape=(int, str))
        after = (int(page.after[0]), str(page.after[1])) if page.after else None
        rows = await store.checkpoints.list(session_id, limit=page.limit + 1, after=after)
        sent, next_token = page.answer(rows, lambda r: (r.created_at, r.id))
        total = await store.checkpoints.count(session_id) \
            if page.is_part(next_token) else len(sent)
        return checkpoints_pb2.ListCheckpointsResponse(
            checkpoints=[checkpoint_to_proto(r) for r in sent], next_page_token=next_token,
            total=total)

    async def GetCheckpoint(self, request: checkpoints_pb2.GetCheckpointRequest,
                            context: grpc.aio.ServicerContext
                            ) -> checkpoints_pb2.GetCheckpointResponse:
        row = await self._ctx.store.checkpoints.get(_ref(request.checkpoint_id))
        manifest = await self._rt.checkpoints.manifest(row)
        body = manifest.whole_dict()
        return checkpoints_pb2.GetCheckpointResponse(checkpoint=checkpoint_to_proto(row),
                                                     manifest_json=json.dumps(body))

    async def DiffCheckpoints(self, request: checkpoints_pb2.DiffCheckpointsRequest,
                              context: grpc.aio.ServicerContext
                              ) -> checkpoints_pb2.DiffCheckpointsResponse:
        ops = self._rt.checkpoints
        a, b, tree = await ops.diff(_ref(request.from_checkpoint_id, "from_checkpoint_id"),
                                    _ref(request.to_checkpoint_id, "to_checkpoint_id"))
        patch = await ops.patch(a, b, with_text=request.files)
        files = [file_change(c, patch.lines) for c in tree.changes]
        response = checkpoints_pb2.DiffCheckpointsResponse(files=files, patch=patch.text)
        if request.conversation:
            response.turns_added.extend(
                checkpoints_pb2.ConversationTurn(role=t.role, text=t.text)
                for t in await ops.turns_added(a, b))
        return response

    async def RollbackCheckpoint(self, request: checkpoints_pb2.RollbackCheckpointRequest,
                                 context: grpc.aio.ServicerContext
                                 ) -> checkpoints_pb2.RollbackCheckpointResponse:
        with tracked(self._ctx, context) as tracker:
            done = await self._rt.checkpoints.rollback(_ref(request.checkpoint_id), tracker)
        response = checkpoints_pb2.RollbackCheckpointResponse(
            restored=checkpoint_to_proto(done.restored), resumed=done.resumed)
        if done.safety is not None:
            response.safety_checkpoint.CopyFrom(checkpoint_to_proto(done.safety))
        return response

    async def VerifyCheckpoint(self, request: checkpoints_pb2.VerifyCheckpointRequest,
                               context: grpc.aio.ServicerContext
                               ) -> checkpoints_pb2.VerifyCheckpointResponse:
        report = await self._rt.checkpoints.verify(_ref(request.checkpoint_id))
        return checkpoints_pb2.VerifyCheckpointResponse(
            ok=report.ok, blobs_checked=report.blobs, bytes_checked=report.bytes,
            problems=problems(report))

    async def GcCheckpoints(self, request: checkpoints_pb2.GcCheckpointsRequest,
                            context: grpc.aio.ServicerContext
                            ) -> checkpoints_pb2.GcCheckpointsResponse:
        report = await self._rt.checkpoints.gc(dry_run=request.dry_run)
        return checkpoints_pb2.GcCheckpointsResponse(
            removed_checkpoint_ids=report.removed, blobs_removed=report.blobs_removed,
            bytes_freed=report.bytes_freed)
