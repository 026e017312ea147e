"""ConfigService: the effective configuration (GetConfig), its reload (ReloadConfig)
and config sync (SyncConfig).

``GetConfig`` answers ``parhelia config show``: every key of the schema with its value
as JSON, where it came from, and the value the daemon uses when that differs (not yet
reloaded, or read only at start). ``ReloadConfig`` answers ``parhelia daemon reload``.
``SyncConfig`` answers ``parhelia config sync``: what the user's Claude configuration
bundle holds, what stays home and why, every path rewrite; it uploads unless
``dry_run``. No secret value is ever part of an answer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import grpc

from parhelia.errors import invalid
from parhelia.v1 import config_pb2, config_pb2_grpc
from parheliad.api.system import tracked
from parheliad.config import ConfigChange, config_items, needs_restart, to_jsonable
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
        source_dir=result.source_dir, mcp_servers=result.mcp_servers)


def _json(value: object) -> str:
    return json.dumps(to_jsonable(value), ensure_ascii=False)


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
        in_use = {key: value for key, value, _ in config_items(self._ctx.config)}
        values = []
        for key, value, source in config_items(cfg):
            # A project file's per-task keys apply per task, not to the daemon.
            stale = not source.startswith("project:") and in_use[key] != value
            values.append(config_pb2.ConfigValue(
                key=key, source=source, value_json=_json(value),
                in_use_json=_json(in_use[key]) if stale else "",
                needs_restart=needs_restart(key)))
        return config_pb2.GetConfigResponse(values=values, files=list(cfg.files))

    async def ReloadConfig(self, request: config_pb2.ReloadConfigRequest,
                           context: grpc.aio.ServicerContext
                           ) -> config_pb2.ReloadConfigResponse:
        report = await self._ctx.reload_config()

        def changes(items: list[ConfigChange]) -> list[config_pb2.ConfigChange]:
            return [config_pb2.ConfigChange(key=c.key, before_json=_json(c.before),
                                            after_json=_json(c.after)) for c in items]

        return config_pb2.ReloadConfigResponse(applied=changes(report.applied),
                                               needs_restart=changes(report.needs_restart))

    async def SyncConfig(self, request: config_pb2.SyncConfigRequest,
                         context: grpc.aio.ServicerContext) -> config_pb2.SyncConfigResponse:
        runtime = self._ctx.require_runtime()
        with tracked(self._ctx, context) as tracker:
            result = await runtime.config_sync.sync(
                runtime.volume, dry_run=request.dry_run,
                command_exists=local_command_exists(runtime.environ), tracker=tracker)
        return sync_response(result)
