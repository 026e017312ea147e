"""The budget: one ceiling over compute and API spend, enforced while tasks run.

Money is integer micro-dollars everywhere; rates are ``Decimal`` and every amount is
rounded once, half up, when it becomes an integer (docs/adr/0008-budget.md).

- **Ledger.** API spend is booked here, as the listener applies the agent's usage
  records (``book_agent_usage``), and enforced in the same unit (``enforce_booked``:
  docs/adr/0045-spend-checked-when-booked.md). Compute is booked on the accrual tick,
  per container as ``round(total so far) - already booked``, so the entries of a
  container always add up to its rounded total. A container that ended without its
  agent reporting a cost (stopped, killed) gets its API spend booked from its token
  counts at the model's prices.
- **In flight.** Claude Code reports its cost only at the end of a run, so while an
  agent runs its spend is priced from the cumulative token counts of its turn and
  heartbeat records. That figure counts toward the ceiling and per-task caps (never
  booked while the agent can still report the real one).
- **Reservations.** At dispatch, inside the claim unit, the task's reservation (what
  it can spend before the budget sees it: one answer and one accrual window of compute,
  capped by its ``max_cost``) is checked against ``ceiling - used - other
  reservations`` and recorded (the ``reservations`` table). The single writer runs
  units one at a time, so concurrent dispatches cannot over-commit. A reservation is
  held whole while its task runs and released when it no longer runs or recovers.
- **Enforcement** (as spend is booked, and each tick): a task whose total reaches its
  ``max_cost`` fails with E300 and its worker is stopped; at the ceiling every running
  task is paused (its worker checkpoints and stops); crossing the warning threshold
  records one E301 event per period and ceiling; below the ceiling again (raised, or a new month),
  budget-paused tasks go back to pending and resume from their checkpoints.

Prices and estimates are pure functions in :mod:`parheliad.core.pricing`; every query is
a typed method of the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import structlog

from parhelia import records
from parhelia.errors import ParheliaError, invalid
from parhelia.records import USAGE_FIELDS
from parheliad.config import Config
from parheliad.core.pricing import (
    Prices,
    compute_rate,
    container_token_cost,
    model_prices,
    parse_amount,
    period_start_us,
    priced_tokens,
    reservation_for,
    round_micros,
    to_micros,
    usd,
    usd_to_micros,
)
from parheliad.core.states import SessionStatus, TaskStatus
from parheliad.core.tasks import fail_task, transition
from parheliad.core.waiting import Wait
from parheliad.store.clock import US_PER_SECOND, now_us
from parheliad.store.rows import ContainerRow, TaskRow
from parheliad.store.store import Store
from parheliad.store.tables.ledger import GROUP_BY, LedgerGroup
from parheliad.store.tx import Tx

log = structlog.get_logger(__name__)

KV_CEILING = "budget.ceiling_micros"
KV_WARNED = "budget.warned"
KV_EXCEEDED = "budget.exceeded"
BUDGET_REASON = "budget"
# Ledger entries priced from tokens (the agent reported no figure) start with this note;
# `budget history` adds them up as "estimated".
ESTIMATE_NOTE = "estimated from tokens"
AGENT_USAGE_NOTE = "agent usage"
AGENT_COST_NOTE = "agent usage (the agent's own figure, from its transcript: it stopped " \
    "before its result)"
# Compute is booked from the configured rates while a container runs: an estimate until
# its backend's own figure replaces it, booked as the difference in an entry whose note
# starts with this (one per container; see ``book_usage``).
USAGE_NOTE = "usage reported by"
RECENT_US = 7 * 86_400 * US_PER_SECOND
_ACTIVE = (TaskStatus.RUNNING.value, TaskStatus.RECOVERING.value)


# -- status ---------------------------------------------------------------------------

@dataclass(frozen=True)
class BudgetStatus:
    ceiling_micros: int
    used_micros: int
    reserved_micros: int
    remaining_micros: int
    used_percent: float
    tasks: int
    input_tokens: int
    output_tokens: int
    cache_tokens: int
    period: str
    period_start_us: int
    warning_threshold_percent: int
    warning: bool
    exceeded: bool
    compute_micros: int
    api_micros: int
    inflight_micros: int = 0

    def banner(self) -> tuple[str, str]:
        """(``""`` | ``warning`` | ``exceeded``, one line for the CLI's banner)."""
        if not (self.warning or self.exceeded):
            return "", ""
        text = (f"Budget {'ceiling reached' if self.exceeded else 'warning'}: "
                f"{usd(self.used_micros)} of {usd(self.ceiling_micros)} used "
                f"({self.used_percent:.1f}%)")
        if self.exceeded:
            text += "; running tasks are paused and no task is dispatched until " \
                    "`parhelia budget set` raises it"
        return ("exceeded" if self.exceeded else "warning"), text


@dataclass
class TickResult:
    status: BudgetStatus
    stops: list[tuple[ContainerRow, str]] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)


def _cannot_fit(task: TaskRow, status: BudgetStatus, amount: int) -> str:
    return (f"task {task.id} cannot fit the budget: used {usd(status.used_micros)} + what "
            f"it reserves while it runs {usd(amount)} (one answer; `parhelia help budget`) > "
            f"ceiling {usd(status.ceiling_micros)}. It stays queued and later tasks go ahead; "
            "raise the ceiling with `parhelia budget set AMOUNT`, or cancel it and "
            f"`parhelia task retry {task.id} --max-cost USD` (a smaller cap reserves less)")


class Budget:
    """The budget of one daemon. ``stop(container, reason)`` asks the runtime to stop a
    worker (checkpointing first); ``kick()`` asks the dispatcher for a pass."""

    def __init__(self, store: Store, config: Callable[[], Config], *,
                 stop: Callable[[ContainerRow, str], None] = lambda c, r: None,
                 kick: Callable[[], None] = lambda: None) -> None:
        self._store = store
        self._config = config
        self._stop = stop
        self._kick = kick
        self._last_tick_us: int | None = None
        self.last_status: BudgetStatus | None = None

    # -- pieces used inside writer units ----------------------------------------------

    def _model(self, cfg: Config, model: str) -> str:
        return model or cfg.agent.model

    def ceiling(self, tx: Tx, cfg: Config) -> int:
        value = tx.kv.get(KV_CEILING)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        return to_micros(cfg.budget.default_ceiling_usd)

    def inflight(self, tx: Tx, cfg: Config) -> dict[str, int]:
        """Per task: API spend of its live agents priced from their tokens, since they
        last reported a cost of their own (what they reported is booked already)."""
        out: dict[str, int] = {}
        prices: dict[str, Prices] = {}  # one lookup per model, not per container
        for c in tx.containers.live_usage():
            name = self._model(cfg, c.model)
            if name not in prices:
                prices[name] = model_prices(cfg.rates, name)
            extra = round_micros(priced_tokens(prices[name], c)) \
                - c.api_priced_at_report_micros
            if extra > 0:
                out[c.task_id] = out.get(c.task_id, 0) + extra
        return out

    @staticmethod
    def _task_spent(tx: Tx, task_id: str, inflight: dict[str, int]) -> int:
        task = tx.tasks.get(task_id)
        booked = task.api_cost_micros + task.compute_cost_micros if task is not None else 0
        return booked + inflight.get(task_id, 0)

    def outstanding(self, tx: Tx, *, exclude: str = "") -> int:
        """What the running and recovering tasks hold of the ceiling: each its whole
        reservation, what it can still spend before the budget sees it (one answer and
        one accrual window of compute; ``reservation_for``). It does not shrink as the
        task spends: the next answer can come whatever was spent before."""
        return tx.reservations.held(_ACTIVE, exclude=exclude)

    def status(self, tx: Tx, cfg: Config, now: int | None = None,
               inflight: dict[str, int] | None = None) -> BudgetStatus:
        now = now_us() if now is None else now
        start = period_start_us(cfg.budget.period, now)
        ceiling = self.ceiling(tx, cfg)
        inflight = self.inflight(tx, cfg) if inflight is None else inflight
        inflight_total = sum(inflight.values())
        booked = tx.ledger.period_totals(start)
        compute, api = booked.compute_micros, booked.other_micros
        tasks = booked.tasks + len(set(inflight) - tx.ledger.tasks_among(start, inflight))
        used = compute + api + inflight_total
        reserved = self.outstanding(tx)
        threshold = cfg.budget.warning_threshold_percent
        return BudgetStatus(
            ceiling_micros=ceiling, used_micros=used, reserved_micros=reserved,
            remaining_micros=ceiling - used - reserved,
            used_percent=round(used * 100 / ceiling, 1) if ceiling else 0.0, tasks=tasks,
            input_tokens=booked.input_tokens, output_tokens=booked.output_tokens,
            cache_tokens=booked.cache_tokens,
            period=cfg.budget.period, period_start_us=start,
            warning_threshold_percent=threshold,
            warning=used * 100 >= ceiling * threshold, exceeded=used >= ceiling,
            compute_micros=compute, api_micros=api + inflight_total,
            inflight_micros=inflight_total)

    # -- the dispatch gate (inside the dispatcher's claim unit) -----------------------

    def gate(self, tx: Tx, task: TaskRow) -> None:
        """Check-and-reserve for dispatching ``task``: raises E300 when used + reserved +
        this task's reservation would cross the ceiling; records the reservation."""
        cfg = self._config()
        amount = reservation_for(cfg, task)
        inflight = self.inflight(tx, cfg)
        status = self.status(tx, cfg, inflight=inflight)
        others = self.outstanding(tx, exclude=task.id)
        if status.used_micros + amount > status.ceiling_micros:
            # Not even with every other reservation released: only the user ends this wait.
            raise ParheliaError("E300", _cannot_fit(task, status, amount),
                                ceiling_micros=status.ceiling_micros, never_fits=True)
        if status.used_micros + others + amount > status.ceiling_micros:
            raise ParheliaError(
                "E300", f"waiting for budget: used {usd(status.used_micros)} + reserved by "
                f"running tasks {usd(others)} + this task's {usd(amount)} > ceiling "
                f"{usd(status.ceiling_micros)}. It starts when running tasks release their "
                "reservations (later tasks queue behind it); `parhelia budget set AMOUNT` "
                "raises the ceiling", ceiling_micros=status.ceiling_micros, never_fits=False)
        tx.reservations.put(task.id, amount,
                            base_micros=self._task_spent(tx, task.id, inflight))

    def admission(self, tx: Tx, task: TaskRow) -> Wait | None:
        """At creation, inside its unit: the wait of a task that cannot fit the budget as
        it stands (so `task create` can say so at once), else None."""
        cfg = self._config()
        amount = reservation_for(cfg, task)
        status = self.status(tx, cfg)
        if status.used_micros + amount > status.ceiling_micros:
            return Wait(_cannot_fit(task, status, amount), code="E300", needs_user=True)
        return None

    # -- the accrual tick -------------------------------------------------------------

    async def tick(self, now: int | None = None) -> BudgetStatus:
        """Accrue, book, enforce; then stop the workers that must stop. (``now`` is for
        tests; the scheduler's job passes nothing.)"""
        cfg = self._config()
        now = now_us() if now is None else now
        since = now - RECENT_US if self._last_tick_us is None else self._last_tick_us - \
            10 * US_PER_SECOND
        result = await self._store.write(lambda tx: self._tick_unit(tx, cfg, now, since))
        self._last_tick_us = now
        self.last_status = result.status
        self.stop_workers(result.stops)
        if result.resumed:
            self._kick()
        return result.status

    def _tick_unit(self, tx: Tx, cfg: Config, now: int, since: int) -> TickResult:
        self._accrue_compute(tx, cfg, now, since)
        self._book_unreported(tx, cfg, since)
        self._release(tx)
        return self._enforce(tx, cfg, now, resume=True)

    def _enforce(self, tx: Tx, cfg: Config, now: int, *, resume: bool) -> TickResult:
        """Per-task caps, the ceiling and the warning, on what is booked and in flight
        now: the tasks that reach a limit stop (their workers in ``stops``). A task whose
        agent returned its result already is left to complete (what it spent is spent;
        stopping it now would only throw its result away). ``resume``: below the
        ceiling, budget-paused tasks go back to pending."""
        inflight = self.inflight(tx, cfg)
        stops: list[tuple[ContainerRow, str]] = []
        for task in tx.tasks.capped(_ACTIVE):
            if task.result_subtype and not task.result_is_error:
                continue  # finished: see ``finished``
            spent = task.booked_micros + inflight.get(task.id, 0)
            if spent >= task.max_cost_micros:
                self._cap_reached(tx, task.id, task.max_cost_micros, spent)
                stops += [(c, BUDGET_REASON) for c in tx.containers.live_of(task.id)]
        # (failing a task released its reservation; what was spent stays spent)
        status = self.status(tx, cfg, now, inflight)
        result = TickResult(status, stops)
        mark = f"{status.period_start_us}:{status.ceiling_micros}"
        if status.exceeded:
            self._pause_all(tx, status, result)
            if tx.kv.get(KV_EXCEEDED) != mark:
                tx.kv.set(KV_EXCEEDED, mark)
                tx.events.append("budget_exceeded",
                                 f"spending reached the ceiling: {usd(status.used_micros)} of "
                                 f"{usd(status.ceiling_micros)}",
                                 data={"code": "E300", "used_micros": status.used_micros,
                                       "ceiling_micros": status.ceiling_micros,
                                       "paused": len(result.stops)})
        elif resume:
            result.resumed = self._resume_paused(tx, cfg, status)
        if status.warning and tx.kv.get(KV_WARNED) != mark:
            tx.kv.set(KV_WARNED, mark)
            tx.events.append("budget_warning",
                             f"E301: spending crossed {status.warning_threshold_percent}% of "
                             f"the ceiling: {usd(status.used_micros)} of "
                             f"{usd(status.ceiling_micros)} ({status.used_percent:.1f}%)",
                             data={"code": "E301", "used_micros": status.used_micros,
                                   "ceiling_micros": status.ceiling_micros,
                                   "threshold_percent": status.warning_threshold_percent})
        return result

    # -- API spend, booked as the listener applies the agent's usage ------------------

    def book_agent_usage(self, tx: Tx, c: ContainerRow, usage: records.Usage,
                         note: str = AGENT_USAGE_NOTE) -> bool:
        """Record an incarnation's cumulative usage (a heartbeat, turn, result or cost
        record) and book the increase of its reported cost as an ``api`` entry; the
        task's totals are the sums over its containers. True when anything changed:
        then :meth:`enforce_booked` must run before the unit ends. ``usage.cost_usd`` is
        this incarnation's share (``parhelia.records.AgentResult``)."""
        fields: dict[str, Any] = {k: getattr(usage, k) for k in USAGE_FIELDS}
        if usage.cost_usd is not None:
            fields["api_cost_micros"] = usd_to_micros(usage.cost_usd)
        # Cumulative figures never go down within an incarnation; unchanged ones (most
        # heartbeats) cost no write at all.
        fields = {k: v for k, v in fields.items() if v > getattr(c, k)}
        if not fields:
            return False
        delta_cost = fields.get("api_cost_micros", c.api_cost_micros) - c.api_cost_micros
        if delta_cost > 0:
            # The agent's own figure replaces the in-flight one: what its tokens came to
            # at the [rates] is remembered, so in-flight spend counts from here.
            cfg = self._config()
            task = tx.tasks.get(c.task_id)
            model = self._model(cfg, task.model if task is not None else "")
            fields["api_priced_at_report_micros"] = round_micros(
                container_token_cost(cfg.rates, model, replace(c, **fields)))
        tx.containers.update(c.id, **fields)
        if delta_cost > 0:
            # Tokens arrive with every turn but the cost only with the result: an entry
            # carries the tokens used since this container's previous api entry.
            booked_in, booked_out, booked_cache = tx.ledger.api_tokens(c.id)
            cache = fields.get("cache_creation_input_tokens", c.cache_creation_input_tokens) \
                + fields.get("cache_read_input_tokens", c.cache_read_input_tokens)
            tx.ledger.insert("api", delta_cost, task_id=c.task_id, container_id=c.id,
                             input_tokens=max(0, fields.get("input_tokens", c.input_tokens)
                                              - booked_in),
                             output_tokens=max(0, fields.get("output_tokens", c.output_tokens)
                                               - booked_out),
                             cache_tokens=max(0, cache - booked_cache), note=note)
        tx.tasks.recount_usage(c.task_id)
        return True

    def enforce_booked(self, tx: Tx) -> list[tuple[ContainerRow, str]]:
        """Inside the unit that booked API spend: the caps, the ceiling and the warning,
        enforced at once (not on the next tick). The workers to stop once the unit has
        committed (:meth:`stop_workers`)."""
        cfg, now = self._config(), now_us()
        if self._clear(tx, cfg, now):
            return []  # the common case, without the whole status (ADR 0045: its cost)
        result = self._enforce(tx, cfg, now, resume=False)
        self.last_status = result.status
        return result.stops

    def _clear(self, tx: Tx, cfg: Config, now: int) -> bool:
        """Whether nothing can be due: no live task at or over its cap, spend below the
        warning threshold (or the warning recorded already) and below the ceiling. Cheaper
        than the whole status: one sum of the ledger, the live containers' tokens."""
        inflight = self.inflight(tx, cfg)
        for task in tx.tasks.capped(_ACTIVE):
            if task.booked_micros + inflight.get(task.id, 0) >= task.max_cost_micros:
                return False
        start = period_start_us(cfg.budget.period, now)
        ceiling = self.ceiling(tx, cfg)
        used = tx.ledger.total(since_us=start) + sum(inflight.values())
        if used >= ceiling:
            return False
        warned = tx.kv.get(KV_WARNED) == f"{start}:{ceiling}"
        return warned or used * 100 < ceiling * cfg.budget.warning_threshold_percent

    def stop_workers(self, stops: list[tuple[ContainerRow, str]]) -> None:
        """Ask the runtime to stop these workers (after the unit that decided it)."""
        for container, reason in stops:
            self._stop(container, reason)

    def _accrue_compute(self, tx: Tx, cfg: Config, now: int, since: int) -> None:
        """Book compute per container: round(rate x seconds so far) - already booked."""
        touched: set[str] = set()
        for c in tx.containers.running_since(since, uncorrected=USAGE_NOTE):
            if c.started_at is None:
                continue
            rate = compute_rate(cfg.rates, c.backend, c.cpu, c.memory_mb, c.gpu)
            if not rate:
                continue  # its backend's compute is free
            end = c.stopped_at if c.stopped_at is not None else now
            total = to_micros(rate * Decimal(max(0, end - c.started_at)) / US_PER_SECOND)
            due = total - c.cost_micros
            if due <= 0:
                continue
            tx.ledger.insert("compute", due, task_id=c.task_id, container_id=c.id,
                             note=f"{c.backend} compute, estimated at the [rates]",
                             at=min(end, now))
            tx.containers.update(c.id, cost_micros=total)
            touched.add(c.task_id)
        for task_id in touched:
            tx.tasks.recount_cost(task_id, "compute_cost_micros")

    def _book_unreported(self, tx: Tx, cfg: Config, since: int) -> None:
        """Containers that ended without their agent's result: book their API spend
        from their tokens (the agent was stopped or died before it could report)."""
        for c, model in tx.containers.ended_unreported(since):
            amount = round_micros(container_token_cost(cfg.rates, self._model(cfg, model), c))
            if amount <= 0:
                continue
            tx.ledger.insert("api", amount, task_id=c.task_id, container_id=c.id,
                             input_tokens=c.input_tokens, output_tokens=c.output_tokens,
                             cache_tokens=c.cache_creation_input_tokens
                             + c.cache_read_input_tokens,
                             note=ESTIMATE_NOTE + ": the agent stopped before reporting "
                                  "its cost", at=c.stopped_at)
            tx.containers.update(c.id, api_cost_micros=amount)
            tx.tasks.recount_cost(c.task_id, "api_cost_micros")

    def _release(self, tx: Tx) -> None:
        for r in tx.reservations.all():
            task = tx.tasks.get(r.task_id)
            if task is None or task.status not in _ACTIVE:
                tx.reservations.delete(r.task_id)

    def _cap_reached(self, tx: Tx, task_id: str, cap: int, spent: int) -> None:
        fail_task(tx, task_id, "E300",
                  f"the task reached its cost cap of {usd(cap)} (--max-cost): it has spent "
                  f"{usd(spent)}; its worker was stopped. Retry it with a higher --max-cost")
        tx.reservations.delete(task_id)

    def _pause_all(self, tx: Tx, status: BudgetStatus, result: TickResult) -> None:
        reason = (f"{BUDGET_REASON}: the ceiling of {usd(status.ceiling_micros)} was reached "
                  f"({usd(status.used_micros)} used)")
        for task in tx.tasks.with_status(_ACTIVE):
            if finished(task):
                continue  # its agent returned its result: it completes (_enforce)
            transition(tx, task.id, TaskStatus.PAUSED, reason=reason,
                       data={"code": "E300", "ceiling_micros": status.ceiling_micros})
            tx.reservations.delete(task.id)
            result.stops += [(c, BUDGET_REASON) for c in tx.containers.live_of(task.id)]

    def _resume_paused(self, tx: Tx, cfg: Config, status: BudgetStatus) -> list[str]:
        """Budget-paused tasks that could be dispatched again go back to pending: below
        the ceiling by what each reserves to run (the dispatch gate's own test). A pause
        takes the task's in-flight spend out of ``used``: resuming on ``used`` alone put a
        task paused at the ceiling back to pending on the next tick, where the gate
        refused it for good ("cannot fit the budget")."""
        resumed = []
        for task in tx.tasks.with_status((TaskStatus.PAUSED.value,)):
            if not task.status_reason.startswith(BUDGET_REASON + ":"):
                continue
            if status.used_micros + reservation_for(cfg, task) > status.ceiling_micros:
                continue
            transition(tx, task.id, TaskStatus.PENDING,
                       reason=f"{BUDGET_REASON}: below the ceiling again",
                       message=f"task {task.id} resumes: the budget allows it again")
            resumed.append(task.id)
        return resumed

    # -- API-facing operations --------------------------------------------------------

    async def get(self) -> BudgetStatus:
        cfg = self._config()
        status = await self._store.write(lambda tx: self.status(tx, cfg))
        self.last_status = status
        return status

    async def set_ceiling(self, amount_text: str, *, agent: bool = False) -> BudgetStatus:
        """Persist a new ceiling (E101 on a bad amount), then enforce at once: paused
        tasks resume when it now allows them, running ones pause when it does not. An
        ``agent`` (the MCP bridge) may not raise it above ``budget.agent_max_ceiling_usd``
        (E403): a prompt injection must not decide how much the user spends."""
        micros = parse_amount(amount_text)
        cfg = self._config()

        def unit(tx: Tx) -> None:
            before = self.ceiling(tx, cfg)
            cap = to_micros(cfg.budget.agent_max_ceiling_usd)
            if agent and micros > before and micros > cap:
                where = cfg.source("budget.agent_max_ceiling_usd")
                raise ParheliaError(
                    "E403", f"an agent may not raise the budget ceiling to {usd(micros)}: the "
                    f"limit for agents is {usd(cap)} (budget.agent_max_ceiling_usd, "
                    f"{where}); it is now {usd(before)}. Raise it yourself with "
                    "`parhelia budget set AMOUNT`", limit_micros=cap)
            tx.kv.set(KV_CEILING, micros)
            tx.events.append("budget_ceiling_changed",
                             f"ceiling {usd(before)} -> {usd(micros)}",
                             data={"from_micros": before, "to_micros": micros})

        await self._store.write(unit)
        log.info("budget.ceiling_set", ceiling_micros=micros)
        return await self.tick()

    def banner(self) -> tuple[str, str]:
        return self.last_status.banner() if self.last_status is not None else ("", "")


def finished(task: TaskRow) -> bool:
    """Whether the task's agent returned its final, successful result in this run: the
    budget no longer stops it (its spend is spent, and stopping would lose the result)."""
    return bool(task.result_subtype) and not task.result_is_error


def complete_if_paused(tx: Tx, task_id: str) -> None:
    """The agent's successful result arrived for a task the budget paused meanwhile (the
    ceiling was reached by the same answer, or a tick came first): it completes, and
    raising the ceiling does not run it again. Its worker, asked to stop, checkpoints
    the finished workspace on its way out."""
    task = tx.tasks.get(task_id)
    if task is None or task.status != TaskStatus.PAUSED or not finished(task) or \
            not task.status_reason.startswith(BUDGET_REASON + ":"):
        return
    transition(tx, task.id, TaskStatus.COMPLETED,
               reason="completed: its agent returned its result as the budget's ceiling was "
                      "reached")
    tx.reservations.delete(task.id)
    if task.session_id:
        tx.sessions.update(task.session_id, status=SessionStatus.COMPLETED)


# -- the backends' own figures ----------------------------------------------------------

def usage_pending(tx: Tx, backend: str, *, ended_before: int, ended_after: int
                  ) -> list[ContainerRow]:
    """Ended containers of ``backend`` whose compute is still the estimate, ended within
    (``ended_after``, ``ended_before``]."""
    return tx.containers.ended_between(ended_after, ended_before, backend=backend,
                                       uncorrected=USAGE_NOTE)


def book_usage(tx: Tx, container_id: str, amount: Decimal, source: str) -> int | None:
    """Replace ``container_id``'s compute estimate by ``source``'s own figure (USD): the
    difference is booked (possibly negative, possibly 0: the entry marks it corrected)
    and its container and task costs follow. None when it was corrected already."""
    c = tx.containers.get(container_id)
    if c is None or tx.ledger.has_note(container_id, USAGE_NOTE):
        return None
    micros = to_micros(amount)
    delta = micros - c.cost_micros
    tx.ledger.insert("compute", delta, task_id=c.task_id, container_id=c.id,
                     note=f"{USAGE_NOTE} {source}: {usd(micros)} replaces the estimate of "
                          f"{usd(c.cost_micros)} at the configured rates",
                     at=c.stopped_at or now_us())
    tx.containers.update(c.id, cost_micros=micros)
    tx.tasks.recount_cost(c.task_id, "compute_cost_micros")
    tx.events.append("compute_corrected",
                     f"{source} reports {usd(micros)} of compute for {c.id} (estimated "
                     f"{usd(c.cost_micros)})", task_id=c.task_id, session_id=c.session_id,
                     container_id=c.id, data={"source": source, "micros": micros,
                                              "estimated_micros": c.cost_micros})
    return delta


# -- history --------------------------------------------------------------------------

HistoryRow = LedgerGroup
HISTORY_BY = GROUP_BY


async def history(store: Store, by: str, since_us: int) -> list[HistoryRow]:
    """Ledger spend grouped per UTC day or per task since ``since_us`` (E101 on ``by``)."""
    if by not in HISTORY_BY:
        raise invalid(f"by: must be one of {', '.join(HISTORY_BY)}, got {by!r}", field="by")
    return await store.ledger.grouped(by, since_us, estimate_note=ESTIMATE_NOTE,
                                      usage_note=USAGE_NOTE)
