"""BudgetService (status, history, ceiling, ledger) and ``TaskService.EstimateTask``.

The work is done by :class:`parheliad.core.budget.Budget`, owned by the runtime; the
estimate by :func:`parheliad.core.pricing.estimate`.
"""

from __future__ import annotations

import grpc

from parhelia.errors import ParheliaError
from parhelia.v1 import budget_pb2, budget_pb2_grpc, common_pb2, tasks_pb2
from parheliad.api import paging
from parheliad.api.convert import options_from_proto, set_ts
from parheliad.context import DaemonContext
from parheliad.core import budget as core
from parheliad.core import pricing
from parheliad.core.tasks import TaskDefaults, validate_options
from parheliad.store.clock import now_us
from parheliad.store.rows import LedgerRow

DEFAULT_LEDGER_LIMIT = 100
MAX_LEDGER_LIMIT = 10_000


def _budget(ctx: DaemonContext) -> core.Budget:
    if ctx.runtime is None:
        raise ParheliaError("E500", "the task runtime (and its budget) is not running")
    return ctx.runtime.budget


def status_to_proto(s: core.BudgetStatus) -> budget_pb2.BudgetStatus:
    msg = budget_pb2.BudgetStatus(
        ceiling_micros=s.ceiling_micros, used_micros=s.used_micros,
        reserved_micros=s.reserved_micros, remaining_micros=s.remaining_micros,
        used_percent=s.used_percent, tasks=s.tasks, input_tokens=s.input_tokens,
        output_tokens=s.output_tokens, cache_tokens=s.cache_tokens, period=s.period,
        warning_threshold_percent=s.warning_threshold_percent, warning=s.warning,
        exceeded=s.exceeded, compute_micros=s.compute_micros, api_micros=s.api_micros)
    set_ts(msg.period_start, s.period_start_us)
    return msg


def ledger_to_proto(row: LedgerRow) -> common_pb2.LedgerEntry:
    msg = common_pb2.LedgerEntry(
        id=row.id, kind=row.kind, amount_micros=row.amount_micros, task_id=row.task_id or "",
        container_id=row.container_id or "", input_tokens=row.input_tokens,
        output_tokens=row.output_tokens, cache_tokens=row.cache_tokens, note=row.note)
    set_ts(msg.at, row.at)
    return msg


class BudgetServicer(budget_pb2_grpc.BudgetServiceServicer):
    def __init__(self, ctx: DaemonContext) -> None:
        self._ctx = ctx

    async def GetBudget(self, request: budget_pb2.GetBudgetRequest,
                        context: grpc.aio.ServicerContext) -> budget_pb2.BudgetStatus:
        return status_to_proto(await _budget(self._ctx).get())

    async def SetCeiling(self, request: budget_pb2.SetCeilingRequest,
                         context: grpc.aio.ServicerContext) -> budget_pb2.BudgetStatus:
        return status_to_proto(await _budget(self._ctx).set_ceiling(request.amount_usd))

    async def GetHistory(self, request: budget_pb2.GetBudgetHistoryRequest,
                         context: grpc.aio.ServicerContext) -> budget_pb2.BudgetHistory:
        cfg = self._ctx.config
        since = request.since.ToMicroseconds() if request.HasField("since") else \
            pricing.period_start_us(cfg.budget.period, now_us())
        rows = await core.history(self._ctx.store, request.by or "day", since)
        return budget_pb2.BudgetHistory(rows=[budget_pb2.BudgetHistoryRow(
            key=r.key, compute_micros=r.compute_micros, api_micros=r.api_micros,
            total_micros=r.total_micros, input_tokens=r.input_tokens,
            output_tokens=r.output_tokens, estimated_micros=r.estimated_micros,
            estimated_compute_micros=r.estimated_compute_micros)
            for r in rows])

    async def ListLedger(self, request: budget_pb2.ListLedgerRequest,
                         context: grpc.aio.ServicerContext) -> budget_pb2.ListLedgerResponse:
        page = paging.page("ledger", request.limit, request.page_token, shape=(int, int),
                           default=DEFAULT_LEDGER_LIMIT, maximum=MAX_LEDGER_LIMIT)
        after = (int(page.after[0]), int(page.after[1])) if page.after else None
        task_id = ""
        if request.task_id.strip():
            task_id = request.task_id.strip()
            try:
                task_id = (await self._ctx.store.tasks.get(task_id)).id
            except ParheliaError as exc:  # spend outlives deleted tasks: keep the raw id
                if exc.code != "E201":
                    raise
        rows = await self._ctx.store.ledger.list(task_id=task_id or None, limit=page.limit + 1,
                                                 after=after)
        sent, next_token = page.answer(rows, lambda r: (r.at, r.id))
        return budget_pb2.ListLedgerResponse(entries=[ledger_to_proto(r) for r in sent],
                                             next_page_token=next_token)


class EstimateMixin:
    """``TaskService.EstimateTask``: the cost range of a task's options; creates nothing."""

    _ctx: DaemonContext

    async def EstimateTask(self, request: tasks_pb2.EstimateTaskRequest,
                           context: grpc.aio.ServicerContext) -> tasks_pb2.EstimateTaskResponse:
        cfg = self._ctx.config
        opts = validate_options(options_from_proto(request.options),
                                TaskDefaults.from_config(cfg))
        est = pricing.estimate(cfg, opts)
        return tasks_pb2.EstimateTaskResponse(
            low_micros=est.low_micros, high_micros=est.high_micros,
            parts=[tasks_pb2.EstimatePart(name=p.name, low_micros=p.low_micros,
                                          high_micros=p.high_micros, basis=p.basis)
                   for p in est.parts])
