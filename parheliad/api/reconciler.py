"""ReconcilerService: the last report and the next run, a run now, and cleanup of orphans."""

from __future__ import annotations

import grpc

from parhelia.v1 import reconciler_pb2, reconciler_pb2_grpc
from parheliad.api.containers import orphan_to_proto
from parheliad.api.convert import set_ts
from parheliad.context import DaemonContext
from parheliad.core.reconciler import Reconciler, Report


def report_to_proto(report: Report) -> reconciler_pb2.ReconcileReport:
    msg = reconciler_pb2.ReconcileReport(
        duration_ms=report.duration_ms,
        findings=[reconciler_pb2.Finding(kind=f.kind, container_id=f.container_id,
                                         backend_id=f.backend_id, detail=f.detail,
                                         action=f.action) for f in report.findings])
    set_ts(msg.started_at, report.started_at_us)
    return msg


class ReconcilerServicer(reconciler_pb2_grpc.ReconcilerServiceServicer):
    def __init__(self, ctx: DaemonContext) -> None:
        self._ctx = ctx

    def _reconciler(self) -> Reconciler:
        return self._ctx.require_runtime().reconciler

    async def GetStatus(self, request: reconciler_pb2.GetReconcilerStatusRequest,
                        context: grpc.aio.ServicerContext) -> reconciler_pb2.ReconcilerStatus:
        reconciler = self._reconciler()
        cfg = self._ctx.config.reconciler
        msg = reconciler_pb2.ReconcilerStatus(
            poll_interval_seconds=round(cfg.poll_interval_seconds),
            auto_terminate_orphans=cfg.auto_terminate_orphans)
        if reconciler.last_report is not None:
            msg.last_run.CopyFrom(report_to_proto(reconciler.last_report))
        runtime = self._ctx.runtime
        job = runtime.scheduler.get_job("reconcile") if runtime is not None else None
        if job is not None and job.next_run_time is not None:
            msg.next_run.FromDatetime(job.next_run_time)
        return msg

    async def Run(self, request: reconciler_pb2.RunReconcilerRequest,
                  context: grpc.aio.ServicerContext) -> reconciler_pb2.ReconcileReport:
        return report_to_proto(await self._reconciler().run(manual=True))

    async def Cleanup(self, request: reconciler_pb2.CleanupRequest,
                      context: grpc.aio.ServicerContext) -> reconciler_pb2.CleanupResponse:
        items = await self._reconciler().cleanup(terminate=request.terminate)
        return reconciler_pb2.CleanupResponse(orphans=[
            reconciler_pb2.Orphan(container=orphan_to_proto(i.orphan, i.container),
                                  age_seconds=i.age_seconds,
                                  accrued_cost_micros=(i.container.cost_micros if i.container
                                                       else i.orphan.cost_micros),
                                  terminated=i.terminated)
            for i in items])
