"""EnvironmentService: a directory's environment, its image built ahead of time, what is
cached and its removal (``parheliad.environments.ops``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from parhelia.errors import invalid
from parhelia.v1 import environments_pb2, environments_pb2_grpc
from parheliad.api.convert import set_ts
from parheliad.context import DaemonContext
from parheliad.environments.ops import EnvironmentOps, hosts, is_built, parts


def _path(value: str) -> Path:
    path = Path(value)
    if not value or "\0" in value or not path.is_absolute():
        raise invalid("path: must be an absolute directory", field="path")
    return path


class EnvironmentServicer(environments_pb2_grpc.EnvironmentServiceServicer):
    def __init__(self, ctx: DaemonContext) -> None:
        self._ctx = ctx

    def _ops(self) -> EnvironmentOps:
        runtime = self._ctx.require_runtime()
        return EnvironmentOps(self._ctx.store, runtime.backends, runtime.images,
                              self._ctx.config_for, runtime.environ)

    async def ShowEnvironment(self, request: environments_pb2.ShowEnvironmentRequest,
                              context: grpc.aio.ServicerContext
                              ) -> environments_pb2.EnvironmentView:
        runtime = self._ctx.require_runtime()
        env, backend, image = await self._ops().show(
            _path(request.path), gpu=request.gpu, trusted=request.trust_project_config,
            backend=request.backend)
        return environments_pb2.EnvironmentView(
            hash=env.hash, image_hash=env.image_hash, source=env.source,
            source_file=env.source_file, network=env.network,
            agent_hosts=hosts(env, runtime.environ), backend=backend,
            parts=[environments_pb2.EnvironmentPart(name=p.name, values=p.values,
                                                    origin=p.origin, note=p.note)
                   for p in parts(env, backend)],
            ignored=list(env.ignored), warnings=list(env.warnings),
            image_built=is_built(image), image_id=image.image_id if image else "")

    async def BuildEnvironment(self, request: environments_pb2.BuildEnvironmentRequest,
                               context: grpc.aio.ServicerContext
                               ) -> AsyncIterator[environments_pb2.BuildProgress]:
        async for p in self._ops().build(_path(request.path), gpu=request.gpu,
                                         trusted=request.trust_project_config,
                                         backend=request.backend):
            yield environments_pb2.BuildProgress(
                line=p.line, done=p.done, image_hash=p.image_hash, image_id=p.image_id,
                seconds=p.seconds, error=p.error, log=p.log)

    async def ListEnvironments(self, request: environments_pb2.ListEnvironmentsRequest,
                               context: grpc.aio.ServicerContext
                               ) -> environments_pb2.ListEnvironmentsResponse:
        images, snapshots, caches = await self._ops().lists()
        out = environments_pb2.ListEnvironmentsResponse()
        for i in images:
            msg = out.images.add(image_hash=i.image_hash, backend=i.backend, status=i.status,
                                 image_id=i.image_id, description=i.description,
                                 error=i.error, build_ms=i.build_ms)
            set_ts(msg.started_at, i.started_at)
            set_ts(msg.built_at, i.built_at)
            set_ts(msg.last_used_at, i.last_used_at)
        for s in snapshots:
            snap = out.snapshots.add(environment_hash=s.environment_hash, base=s.base,
                                     backend=s.backend, image_id=s.image_id,
                                     container_id=s.container_id)
            set_ts(snap.created_at, s.created_at)
            set_ts(snap.expires_at, s.expires_at)
            set_ts(snap.last_used_at, s.last_used_at)
        for c in caches:
            cache = out.caches.add(name=c.name, backend=c.backend, repository=c.repository)
            set_ts(cache.created_at, c.created_at)
            set_ts(cache.last_used_at, c.last_used_at)
        return out

    async def PruneEnvironments(self, request: environments_pb2.PruneEnvironmentsRequest,
                                context: grpc.aio.ServicerContext
                                ) -> environments_pb2.PruneEnvironmentsResponse:
        pruned = await self._ops().prune(older_than_hours=request.older_than_hours,
                                         everything=request.all, dry_run=request.dry_run)
        return environments_pb2.PruneEnvironmentsResponse(
            images=pruned.images, snapshots=pruned.snapshots, caches=pruned.caches,
            dry_run=request.dry_run)
