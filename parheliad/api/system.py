"""SystemService: version and capabilities, status, doctor, shutdown."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager

import grpc

from parhelia import envfile, progress
from parhelia.errors import ParheliaError, invalid
from parhelia.v1 import system_pb2, system_pb2_grpc
from parheliad.api.convert import set_ts
from parheliad.context import DaemonContext
from parheliad.core.doctor import backend_checks, credential_in_force, run_checks
from parheliad.core.progress import Tracker
from parheliad.core.reconciler import LAST_RUN_KEY
from parheliad.core.states import Health, TaskStatus
from parheliad.store.clock import US_PER_SECOND, now_us

SHUTDOWN_DELAY_S = 0.05
"""Let the Shutdown reply leave before the server starts closing."""


def operation_id(context: grpc.aio.ServicerContext) -> str:
    """The operation id the client tagged its call with ("" when none)."""
    for key, value in context.invocation_metadata() or ():
        if key == progress.METADATA_KEY and isinstance(value, str):
            return value
    return ""


def tracked(ctx: DaemonContext, context: grpc.aio.ServicerContext
            ) -> AbstractContextManager[Tracker]:
    """The progress tracker of this call (reports go nowhere when it is not tagged)."""
    return ctx.progress.track(operation_id(context))


class SystemServicer(system_pb2_grpc.SystemServiceServicer):
    def __init__(self, ctx: DaemonContext) -> None:
        self._ctx = ctx
        self.capabilities: tuple[str, ...] = ()
        """Filled in by the server once every service is registered."""

    async def GetVersion(self, request: system_pb2.GetVersionRequest,
                         context: grpc.aio.ServicerContext) -> system_pb2.GetVersionResponse:
        state, detail = self._ctx.runtime.budget.banner() if self._ctx.runtime else ("", "")
        return system_pb2.GetVersionResponse(version=self._ctx.version, api="parhelia.v1",
                                             capabilities=list(self.capabilities),
                                             instance_id=self._ctx.instance_id,
                                             budget_state=state, budget_detail=detail)

    async def WatchOperation(self, request: system_pb2.WatchOperationRequest,
                             context: grpc.aio.ServicerContext
                             ) -> AsyncIterator[system_pb2.OperationProgress]:
        if not progress.valid_operation_id(request.operation_id):
            raise invalid("operation_id: must be 16 to 64 of A-Z a-z 0-9 _ -",
                          field="operation_id")
        async for state in self._ctx.progress.watch(request.operation_id):
            yield system_pb2.OperationProgress(phase=state.phase, done=state.done,
                                               total=state.total, unit=state.unit,
                                               finished=state.finished)

    async def GetGitHubCredential(self, request: system_pb2.GetGitHubCredentialRequest,
                                  context: grpc.aio.ServicerContext
                                  ) -> system_pb2.GetGitHubCredentialResponse:
        host = (request.host or "github.com").strip().lower()
        if not re.fullmatch(r"[a-z0-9.-]{1,253}(:[0-9]{1,5})?", host):
            raise invalid(f"host: {request.host!r} is not a host name", field="host")
        found = await self._ctx.require_runtime().repos.credential(host.split(":")[0])
        return system_pb2.GetGitHubCredentialResponse(
            host=host, name=found.token.name if found.token else "",
            source=found.token.source if found.token else "",
            env_file=str(envfile.env_file(self._ctx.paths)), problem=found.problem,
            modal_secret=found.modal_secret, modal_secret_found=found.modal_secret_found,
            hosts=list(found.hosts))

    async def GetStatus(self, request: system_pb2.GetStatusRequest,
                        context: grpc.aio.ServicerContext) -> system_pb2.GetStatusResponse:
        ctx = self._ctx
        store = ctx.store
        counts = await store.tasks.count_by_status()
        health = {h.value: 0 for h in Health}
        live = await store.containers.live()
        for container in live:
            health[container.health] = health.get(container.health, 0) + 1
        orphans = await store.orphans.count()
        recovering = counts.get(TaskStatus.RECOVERING.value, 0)
        attention = []
        if health["unhealthy"] or health["dead"]:
            attention.append(f"{health['unhealthy'] + health['dead']} container(s) unhealthy "
                             "or dead")
        if health.get("unreachable"):
            attention.append(f"{health['unreachable']} container(s) unreachable: their backend "
                             "cannot be asked now; nothing is stopped or relaunched meanwhile")
        if orphans:
            attention.append(f"{orphans} orphaned container(s) still running: `parhelia "
                             "cleanup` lists them, `parhelia cleanup --terminate` ends them")
        if recovering:
            attention.append(f"{recovering} task(s) recovering")
        attention.extend(await self._tasks_needing_user())
        response = system_pb2.GetStatusResponse(
            version=ctx.version, pid=os.getpid(),
            uptime_seconds=(now_us() - ctx.started_at_us) / US_PER_SECOND,
            socket_path=str(ctx.socket), database_path=str(store.path),
            tasks_by_status=counts, instance_id=ctx.instance_id,
            home=str(ctx.paths.home or ""),
            running_containers=sum(1 for c in live if c.state == "running"),
            backends=[system_pb2.BackendStatus(name=b.name, available=b.available,
                                               detail=b.detail)
                      for b in await ctx.backend_status()],
            health=system_pb2.HealthSummary(
                healthy=health["healthy"], degraded=health["degraded"],
                unhealthy=health["unhealthy"], dead=health["dead"], unknown=health["unknown"],
                orphans=orphans, recovering_tasks=recovering,
                needs_attention=bool(attention), attention=attention))
        set_ts(response.started_at, ctx.started_at_us)
        env_path = envfile.env_file(ctx.paths)
        response.env_file = str(env_path)
        try:
            source = await asyncio.to_thread(envfile.credential, env_path, os.environ)
        except ParheliaError as exc:
            response.credential_problem = f"{exc.code} {exc.message}"
        else:
            if source is not None:
                response.credential_name = source.name
                response.credential_source = source.origin
        last_run = await store.kv.get(LAST_RUN_KEY)
        if isinstance(last_run, int):
            set_ts(response.health.reconciler_last_run, last_run)
            poll = ctx.config.reconciler.poll_interval_seconds
            late = (now_us() - last_run) / US_PER_SECOND
            if late > 3 * poll + 60:
                response.health.attention.append(
                    f"the reconciler last ran {late:.0f}s ago (every {poll:g}s expected); "
                    "see `parhelia daemon logs`")
                response.health.needs_attention = True
        return response

    async def _tasks_needing_user(self) -> list[str]:
        """One line per task that waits for the user (cannot fit the budget, paused,
        held by --no-dispatch), the first few; then how many more."""
        shown = 5
        tasks = await self._ctx.store.tasks.needing_user(limit=shown + 1000)
        lines = [f"task {t.id} is {t.status}: "
                 + (f"{t.status_code} " if t.status_code else "") + (t.status_reason or "")
                 for t in tasks[:shown]]
        if len(tasks) > shown:
            lines.append(f"{len(tasks) - shown} more task(s) wait for you: `parhelia task "
                         "list --status pending --status paused`")
        return lines

    async def Doctor(self, request: system_pb2.DoctorRequest,
                     context: grpc.aio.ServicerContext) -> system_pb2.DoctorResponse:
        ctx = self._ctx
        default = ctx.config.orchestrator.default_backend
        checks = await asyncio.to_thread(run_checks, ctx.paths, ctx.config, ctx.socket)
        if ctx.runtime is not None:  # each backend's own checks of its setup
            checks += await asyncio.to_thread(ctx.runtime.registry.doctor, default)
        checks += backend_checks(await ctx.backend_status(), default)
        if request.check_modal and ctx.runtime is not None:
            with tracked(ctx, context) as tracker:
                checks += await ctx.runtime.registry.check_now(
                    lambda what: tracker.phase(what, total=0))
        for name in ctx.runtime.registry.built if ctx.runtime is not None else ():
            recent = await ctx.store.containers.list(backend=name, limit=20)
            in_force = credential_in_force(name, next((c for c in recent if c.credential),
                                                      None))
            if in_force is not None:
                checks.append(in_force)
        return system_pb2.DoctorResponse(checks=[
            system_pb2.DoctorCheck(name=c.name, status=c.status, detail=c.detail, fix=c.fix)
            for c in checks])

    async def Shutdown(self, request: system_pb2.ShutdownRequest,
                       context: grpc.aio.ServicerContext) -> system_pb2.ShutdownResponse:
        asyncio.get_running_loop().call_later(SHUTDOWN_DELAY_S, self._ctx.request_shutdown)
        return system_pb2.ShutdownResponse()
