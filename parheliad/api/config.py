"""ConfigService: the effective configuration (GetConfig) and config sync (SyncConfig).

``GetConfig`` answers ``parhelia config show``: every key of the schema with its value
as JSON and where it came from. ``SyncConfig`` answers ``parhelia config sync``: what
the user's Claude configuration bundle holds, what stays home and why, every path
rewrite; it uploads unless ``dry_run``. No secret value is ever part of an answer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import grpc

from parhelia.errors import invalid
from parhelia.v1 import config_pb2, config_pb2_grpc
from parheliad.api.system import tracked
from parheliad.config import config_items, to_jsonable
from parheliad.context import DaemonContext
from parheliad.core.configsync import SyncResult, local_command_exists


def sync_response(result: SyncResult) -> config_pb2.SyncConfigResponse:
    return config_pb2.SyncConfigResponse(
        bundle_id=result.bundle_id or "",
        items=[config_pb2.SyncItem(path=i.path, bytes=i.bytes, new=i.new)
               for i in result.items],
        excluded=[config_pb2.SyncExclusion(path=e.path, reason=e.reason, detail=e.detail)
                  for e in result.exclusions],
        rewrites=[config_pb2.SyncRewrite(file=r.file, key=r.key, before=r.before,
                                         after=r.after) for r in result.rewrites],
        files=result.files, bytes=result.bytes, new_bytes=result.new_bytes,
        warnings=result.warnings, uploaded=result.uploaded, passed_env=result.passed_env,
        source_dir=result.source_dir)


class ConfigServicer(config_pb2_grpc.ConfigServiceServicer):
    def __init__(self, ctx: DaemonContext) -> None:
        self._ctx = ctx

    async def GetConfig(self, request: config_pb2.GetConfigRequest,
                        context: grpc.aio.ServicerContext) -> config_pb2.GetConfigResponse:
        project = None
        if request.project_dir:
            if not os.path.isabs(request.project_dir):
                raise invalid("project_dir: must be an absolute path", field="project_dir")
            project = Path(request.project_dir)
        cfg = self._ctx.config_for(project)
        return config_pb2.GetConfigResponse(
            values=[config_pb2.ConfigValue(key=key, source=source,
                                           value_json=json.dumps(to_jsonable(value),
                                                                 ensure_ascii=False))
                    for key, value, source in config_items(cfg)],
            files=list(cfg.files), warnings=list(cfg.warnings))

    async def SyncConfig(self, request: config_pb2.SyncConfigRequest,
                         context: grpc.aio.ServicerContext) -> config_pb2.SyncConfigResponse:
        runtime = self._ctx.require_runtime()
        with tracked(self._ctx, context) as tracker:
            result = await runtime.config_sync.sync(
                runtime.volume, dry_run=request.dry_run,
                command_exists=local_command_exists(runtime.environ), tracker=tracker)
        return sync_response(result)
