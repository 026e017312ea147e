"""The budget: one ceiling over compute and API spend, enforced while tasks run.

Money is integer micro-dollars everywhere; rates are ``Decimal`` and every amount is
rounded once, half up, when it becomes an integer (docs/adr/0008-budget.md).

- **Ledger.** API spend is booked by the listener from the agent's reported cost
  (``containers.api_cost_micros`` deltas). Compute is booked here, on the accrual
  tick, per container as ``round(total so far) - already booked``, so the entries of a
  container always add up to its rounded total. A container that ended without its
  agent reporting a cost (stopped, killed) gets its API spend booked from its token
  counts at the model's prices.
- **In flight.** Claude Code reports its cost only at the end of a run, so while an
  agent runs its spend is priced from the cumulative token counts of its turn and
  heartbeat records. That figure counts toward the ceiling and per-task caps (never
  booked while the agent can still report the real one).
- **Reservations.** At dispatch, inside the claim unit, the task's reservation
  (its estimate's high end, or its ``max_cost`` when lower) is checked against
  ``ceiling - used - other reservations`` and recorded (kv ``budget.reservation.*``).
  The single writer runs units one at a time, so concurrent dispatches cannot
  over-commit. A reservation shrinks as its task spends and is released when the task
  is no longer running or recovering.
- **Enforcement** (each tick): a task whose total reaches its ``max_cost`` fails with
  E300 and its worker is stopped; at the ceiling every running task is paused (its
  worker checkpoints and stops); crossing the warning threshold records one E301
  event per period and ceiling; below the ceiling again (raised, or a new month),
  budget-paused tasks go back to pending and resume from their checkpoints.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import structlog

from parhelia.errors import ParheliaError, invalid
from parheliad.config import Config, RatesConfig
from parheliad.core.states import CONTAINER_FINAL, CONTAINER_LIVE, TaskStatus
from parheliad.core.tasks import TaskOptions, fail_task, task_options, transition
from parheliad.core.waiting import Wait
from parheliad.store.clock import US_PER_SECOND, now_us
from parheliad.store.rows import ContainerRow, TaskRow
from parheliad.store.store import Store
from parheliad.store.tx import Tx

log = structlog.get_logger(__name__)

MICROS_PER_USD = 1_000_000
MAX_CEILING_USD = Decimal(1_000_000_000)
GIB_MB = 1024
CACHE_WRITE_FACTOR = Decimal("1.25")
CACHE_READ_FACTOR = Decimal("0.1")
# Tokens per agent turn assumed by estimates (input-equivalent, output).
TURN_TOKENS_LOW = (2_000, 300)
TURN_TOKENS_HIGH = (20_000, 1_500)
LOW_TURN_SHARE = 4  # the low end assumes a quarter of the turn cap...
LOW_TIME_SHARE = 4  # ...and a quarter of the timeout

KV_CEILING = "budget.ceiling_micros"
KV_RESERVATION = "budget.reservation."
KV_WARNED = "budget.warned"
KV_EXCEEDED = "budget.exceeded"
BUDGET_REASON = "budget"
# Ledger entries priced from tokens (the agent reported no figure) start with this note;
# `budget history` adds them up as "estimated".
ESTIMATE_NOTE = "estimated from tokens"
# Compute is booked from the configured rates while a container runs: an estimate until
# its backend's own figure replaces it, booked as the difference in an entry whose note
# starts with this (one per container; see ``book_usage``).
USAGE_NOTE = "usage reported by"
_CORRECTED = ("EXISTS (SELECT 1 FROM ledger u WHERE u.container_id = {cid} AND "  # noqa: S608
              "substr(u.note, 1, " + str(len(USAGE_NOTE)) + ") = '" + USAGE_NOTE + "')")
RECENT_US = 7 * 86_400 * US_PER_SECOND
_LIVE = tuple(s.value for s in CONTAINER_LIVE)
_FINAL = tuple(s.value for s in CONTAINER_FINAL)
assert len(_FINAL) == 4
_ACTIVE = (TaskStatus.RUNNING.value, TaskStatus.RECOVERING.value)
_UNREPORTED_SQL = (
    "SELECT c.id, t.model FROM containers c JOIN tasks t ON t.id = c.task_id WHERE c.state IN "
    "(?, ?, ?, ?) AND c.api_cost_micros = 0 AND c.input_tokens + "
    "c.output_tokens + c.cache_creation_input_tokens + c.cache_read_input_tokens > 0 AND "
    "c.stopped_at >= ? AND NOT EXISTS (SELECT 1 FROM events e WHERE e.container_id = c.id "
    "AND e.type = 'agent_result')")


def to_micros(amount: Decimal) -> int:
    """Micro-dollars of a USD ``Decimal``, rounded half up (the one rounding rule)."""
    return int((amount * MICROS_PER_USD).to_integral_value(rounding=ROUND_HALF_UP))


def round_micros(micros: Decimal) -> int:
    return int(micros.to_integral_value(rounding=ROUND_HALF_UP))


def usd(micros: int) -> str:
    """``$1.250000``-style exact text for messages."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_USD)
    return f"{sign}${whole}.{frac:06d}"


def parse_amount(text: str) -> int:
    """A ceiling in USD (``"50"``, ``"12.5"``, ``"$50.00"``) -> micro-dollars; E101 if it
    is malformed, not finite, zero or negative, has more than 6 decimals or is absurd."""
    raw = (text or "").strip()
    value = raw.removeprefix("$").strip()
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise invalid(f"amount: {raw!r} is not an amount in USD (like 50 or 12.50)",
                      field="amount_usd") from None
    if not amount.is_finite():
        raise invalid(f"amount: {raw!r} is not a finite amount", field="amount_usd")
    if amount <= 0:
        raise invalid(f"amount: the ceiling must be greater than zero, got {raw!r}",
                      field="amount_usd")
    if amount > MAX_CEILING_USD:
        raise invalid(f"amount: {raw!r} is above the largest ceiling "
                      f"(${MAX_CEILING_USD:,})", field="amount_usd")
    micros = amount * MICROS_PER_USD
    if micros != micros.to_integral_value():
        raise invalid(f"amount: {raw!r} has more than 6 decimals", field="amount_usd")
    return int(micros)


# -- rates ----------------------------------------------------------------------------

def split_gpu(gpu: str) -> tuple[str, int]:
    """``"A10G:2"`` -> ``("A10G", 2)``; ``""`` -> ``("", 0)``."""
    if not gpu:
        return "", 0
    name, _, count = gpu.partition(":")
    return name, int(count) if count.isdigit() else 1


def compute_rate(rates: RatesConfig, backend: str, cpu: float, memory_mb: int,
                 gpu: str) -> Decimal:
    """USD per second of one container; local workers cost nothing."""
    if backend == "local":
        return Decimal(0)
    name, count = split_gpu(gpu)
    gpu_rate = rates.gpu.get(name, Decimal(0)) * count if name else Decimal(0)
    return (Decimal(str(cpu)) * rates.cpu_core_per_second
            + Decimal(memory_mb) / GIB_MB * rates.memory_gib_per_second + gpu_rate)


def model_family(rates: RatesConfig, model: str) -> str:
    """The price key for ``model``: the longest key contained in its name, else default."""
    name = model.lower()
    keys = sorted((k for k in rates.model_input_per_mtok if k != "default"),
                  key=len, reverse=True)
    return next((k for k in keys if k in name), "default")


def model_prices(rates: RatesConfig, model: str) -> tuple[str, Decimal, Decimal]:
    """(family, USD per million input tokens, per million output tokens)."""
    family = model_family(rates, model)
    default_in = rates.model_input_per_mtok.get("default", Decimal(0))
    default_out = rates.model_output_per_mtok.get("default", Decimal(0))
    return (family, rates.model_input_per_mtok.get(family, default_in),
            rates.model_output_per_mtok.get(family, default_out))


def token_cost(rates: RatesConfig, model: str, *, input_tokens: int, output_tokens: int,
               cache_write: int = 0, cache_read: int = 0) -> Decimal:
    """Micro-dollars (unrounded): a token at $P per million tokens costs P micro-dollars."""
    _, price_in, price_out = model_prices(rates, model)
    return (input_tokens * price_in + output_tokens * price_out
            + cache_write * price_in * CACHE_WRITE_FACTOR
            + cache_read * price_in * CACHE_READ_FACTOR)


def container_token_cost(rates: RatesConfig, model: str, c: ContainerRow) -> Decimal:
    return token_cost(rates, model, input_tokens=c.input_tokens, output_tokens=c.output_tokens,
                      cache_write=c.cache_creation_input_tokens,
                      cache_read=c.cache_read_input_tokens)


def period_start_us(period: str, now: int) -> int:
    """Start of the budget period containing ``now``: the UTC month, or the epoch."""
    if period != "month":
        return 0
    t = datetime.fromtimestamp(now / US_PER_SECOND, tz=UTC)
    start = datetime(t.year, t.month, 1, tzinfo=UTC)
    return int(start.timestamp()) * US_PER_SECOND


# -- estimates ------------------------------------------------------------------------

@dataclass(frozen=True)
class EstimatePart:
    name: str
    low_micros: int
    high_micros: int
    basis: str


@dataclass(frozen=True)
class Estimate:
    low_micros: int
    high_micros: int
    parts: tuple[EstimatePart, ...]


def _fmt_rate(value: Decimal) -> str:
    return format(value.normalize(), "f")


def estimate(cfg: Config, opts: TaskOptions) -> Estimate:
    """The cost range of a task with validated ``opts`` (see ``parhelia help budget``).

    compute: rate x timeout (high) and rate x ceil(timeout / 4) (low), where rate =
    cores x CPU rate + GiB x memory rate + GPUs x GPU rate (0 on the local backend);
    api: turn cap x (20,000 input + 1,500 output tokens) at the model's prices (high)
    and ceil(turn cap / 4) x (2,000 input + 300 output tokens) (low).
    """
    rates = cfg.rates
    rate = compute_rate(rates, opts.backend, opts.cpu, opts.memory_mb, opts.gpu)
    low_seconds = math.ceil(opts.timeout_seconds / LOW_TIME_SHARE)
    compute_low = to_micros(rate * low_seconds)
    compute_high = to_micros(rate * opts.timeout_seconds)
    if opts.backend == "local":
        compute_basis = "local worker: no compute charge"
    else:
        gpu = f" + {opts.gpu}" if opts.gpu else ""
        compute_basis = (f"{opts.cpu:g} cores + {opts.memory_mb / GIB_MB:g} GiB{gpu} at "
                         f"${_fmt_rate(rate)}/s for {low_seconds}-{opts.timeout_seconds} s")
    family, price_in, price_out = model_prices(rates, opts.model)
    low_turns = math.ceil(opts.max_turns / LOW_TURN_SHARE)
    api_low = round_micros(low_turns * (TURN_TOKENS_LOW[0] * price_in
                                        + TURN_TOKENS_LOW[1] * price_out))
    api_high = round_micros(opts.max_turns * (TURN_TOKENS_HIGH[0] * price_in
                                              + TURN_TOKENS_HIGH[1] * price_out))
    model = opts.model or "the agent's default model"
    api_basis = (f"{low_turns}-{opts.max_turns} turns of {model} ({family}: "
                 f"${_fmt_rate(price_in)}/${_fmt_rate(price_out)} per M input/output tokens)")
    parts: tuple[EstimatePart, ...] = (
        EstimatePart("compute", compute_low, compute_high, compute_basis),
        EstimatePart("api", api_low, api_high, api_basis))
    low, high = compute_low + api_low, compute_high + api_high
    cap = opts.max_cost_micros
    if cap:
        # The task stops at its cap: no part, and not the total, can cost more.
        low, high = min(low, cap), min(high, cap)
        capped = f"; capped by max cost ${_fmt_rate(Decimal(cap) / 1_000_000)}"
        parts = tuple(EstimatePart(p.name, min(p.low_micros, cap), min(p.high_micros, cap),
                                   p.basis + (capped if p.high_micros > cap else ""))
                      for p in parts)
    return Estimate(low, high, parts)


def reservation_for(cfg: Config, task: TaskRow) -> int:
    """What a dispatch of ``task`` reserves: its estimate's high end (capped by max_cost)."""
    return estimate(cfg, task_options(task)).high_micros


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


def _rows(tx: Tx, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return list(tx.conn.execute(query, params).fetchall())


def _live_containers(tx: Tx) -> list[tuple[ContainerRow, str]]:
    """Live containers with their task's model."""
    out = []
    for (cid, model) in _rows(tx, "SELECT c.id, t.model FROM containers c JOIN tasks t ON "
                                  "t.id = c.task_id WHERE c.state IN (?, ?, ?)", _LIVE):
        c = tx.containers.get(str(cid))
        if c is not None:
            out.append((c, str(model or "")))
    return out


def _cannot_fit(task: TaskRow, status: BudgetStatus, amount: int) -> str:
    return (f"task {task.id} cannot fit the budget: used {usd(status.used_micros)} + its "
            f"estimate {usd(amount)} > ceiling {usd(status.ceiling_micros)}. It stays queued "
            "and later tasks go ahead; raise the ceiling with `parhelia budget set AMOUNT`, "
            f"or cancel it and `parhelia task retry {task.id} --max-cost USD` (or fewer "
            "--max-turns, a shorter --timeout)")


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
        """Per task: API spend of its live agents priced from their tokens, beyond what
        they reported themselves."""
        out: dict[str, int] = {}
        for c, model in _live_containers(tx):
            extra = round_micros(container_token_cost(cfg.rates, self._model(cfg, model), c)) \
                - c.api_cost_micros
            if extra > 0:
                out[c.task_id] = out.get(c.task_id, 0) + extra
        return out

    def _reservations(self, tx: Tx) -> dict[str, dict[str, int]]:
        out = {}
        for key, value in _rows(tx, "SELECT key, value FROM kv WHERE key >= ? AND key < ?",
                                (KV_RESERVATION, KV_RESERVATION + "\uffff")):
            data = json.loads(str(value))
            if isinstance(data, dict):
                out[str(key)[len(KV_RESERVATION):]] = data
        return out

    def _task_spent(self, tx: Tx, task_id: str, inflight: dict[str, int]) -> int:
        row = tx.conn.execute("SELECT api_cost_micros + compute_cost_micros FROM tasks "
                              "WHERE id = ?", (task_id,)).fetchone()
        return (int(row[0]) if row else 0) + inflight.get(task_id, 0)

    def outstanding(self, tx: Tx, inflight: dict[str, int], *, exclude: str = "") -> int:
        """What active tasks' reservations still hold: reserved minus spent since."""
        total = 0
        for task_id, r in self._reservations(tx).items():
            if task_id == exclude:
                continue
            status = tx.conn.execute("SELECT status FROM tasks WHERE id = ?",
                                     (task_id,)).fetchone()
            if status is None or status[0] not in _ACTIVE:
                continue
            spent = self._task_spent(tx, task_id, inflight) - int(r.get("base_micros", 0))
            total += max(0, int(r.get("micros", 0)) - spent)
        return total

    def status(self, tx: Tx, cfg: Config, now: int | None = None) -> BudgetStatus:
        now = now_us() if now is None else now
        start = period_start_us(cfg.budget.period, now)
        ceiling = self.ceiling(tx, cfg)
        inflight = self.inflight(tx, cfg)
        inflight_total = sum(inflight.values())
        compute, api, tasks, tokens_in, tokens_out, cache = (int(v or 0) for v in tx.conn.execute(
            "SELECT COALESCE(SUM(CASE WHEN kind = 'compute' THEN amount_micros END), 0), "
            "COALESCE(SUM(CASE WHEN kind <> 'compute' THEN amount_micros END), 0), "
            "COUNT(DISTINCT task_id), COALESCE(SUM(input_tokens), 0), "
            "COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cache_tokens), 0) "
            "FROM ledger WHERE at >= ?", (start,)).fetchone())
        tasks += len(set(inflight) - self._ledger_tasks(tx, start, set(inflight)))
        used = compute + api + inflight_total
        reserved = self.outstanding(tx, inflight)
        threshold = cfg.budget.warning_threshold_percent
        return BudgetStatus(
            ceiling_micros=ceiling, used_micros=used, reserved_micros=reserved,
            remaining_micros=ceiling - used - reserved,
            used_percent=round(used * 100 / ceiling, 1) if ceiling else 0.0, tasks=tasks,
            input_tokens=tokens_in, output_tokens=tokens_out, cache_tokens=cache,
            period=cfg.budget.period, period_start_us=start,
            warning_threshold_percent=threshold,
            warning=used * 100 >= ceiling * threshold, exceeded=used >= ceiling,
            compute_micros=compute, api_micros=api + inflight_total,
            inflight_micros=inflight_total)

    @staticmethod
    def _ledger_tasks(tx: Tx, start: int, among: set[str]) -> set[str]:
        if not among:
            return set()
        marks = ",".join("?" * len(among))
        return {str(r[0]) for r in _rows(
            tx, f"SELECT DISTINCT task_id FROM ledger WHERE at >= ? AND task_id IN ({marks})",  # noqa: S608
            (start, *sorted(among)))}

    # -- the dispatch gate (inside the dispatcher's claim unit) -----------------------

    def gate(self, tx: Tx, task: TaskRow) -> None:
        """Check-and-reserve for dispatching ``task``: raises E300 when used + reserved +
        this task's reservation would cross the ceiling; records the reservation."""
        cfg = self._config()
        amount = reservation_for(cfg, task)
        inflight = self.inflight(tx, cfg)
        status = self.status(tx, cfg)
        others = self.outstanding(tx, inflight, exclude=task.id)
        if status.used_micros + amount > status.ceiling_micros:
            # Not even with every other reservation released: only the user ends this wait.
            raise ParheliaError("E300", _cannot_fit(task, status, amount),
                                ceiling_micros=status.ceiling_micros, never_fits=True)
        if status.used_micros + others + amount > status.ceiling_micros:
            raise ParheliaError(
                "E300", f"waiting for budget: used {usd(status.used_micros)} + reserved by "
                f"running tasks {usd(others)} + this task's estimate {usd(amount)} > ceiling "
                f"{usd(status.ceiling_micros)}. It starts when running tasks release their "
                "reservations (later tasks queue behind it); `parhelia budget set AMOUNT` "
                "raises the ceiling", ceiling_micros=status.ceiling_micros, never_fits=False)
        tx.kv.set(KV_RESERVATION + task.id, {
            "micros": amount, "base_micros": self._task_spent(tx, task.id, inflight),
            "at": now_us()})

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
        for container, reason in result.stops:
            self._stop(container, reason)
        if result.resumed:
            self._kick()
        return result.status

    def _tick_unit(self, tx: Tx, cfg: Config, now: int, since: int) -> TickResult:
        self._accrue_compute(tx, cfg, now, since)
        self._book_unreported(tx, cfg, since)
        self._release(tx)
        result = TickResult(self.status(tx, cfg, now))
        inflight = self.inflight(tx, cfg)
        live = {c.task_id: c for c, _ in _live_containers(tx)}
        # Per-task caps.
        for task_id, cap in _rows(tx, "SELECT id, max_cost_micros FROM tasks WHERE status IN "
                                      "(?, ?) AND max_cost_micros > 0", _ACTIVE):
            spent = self._task_spent(tx, str(task_id), inflight)
            if spent >= int(cap):
                self._cap_reached(tx, str(task_id), int(cap), spent)
                if str(task_id) in live:
                    result.stops.append((live[str(task_id)], BUDGET_REASON))
        status = result.status = self.status(tx, cfg, now)
        mark = f"{status.period_start_us}:{status.ceiling_micros}"
        if status.exceeded:
            self._pause_all(tx, status, live, result)
            if tx.kv.get(KV_EXCEEDED) != mark:
                tx.kv.set(KV_EXCEEDED, mark)
                tx.events.append("budget_exceeded",
                                 f"spending reached the ceiling: {usd(status.used_micros)} of "
                                 f"{usd(status.ceiling_micros)}",
                                 data={"code": "E300", "used_micros": status.used_micros,
                                       "ceiling_micros": status.ceiling_micros,
                                       "paused": len(result.stops)})
        else:
            result.resumed = self._resume_paused(tx)
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

    def _accrue_compute(self, tx: Tx, cfg: Config, now: int, since: int) -> None:
        """Book compute per container: round(rate x seconds so far) - already booked."""
        touched: set[str] = set()
        for (cid,) in _rows(tx, "SELECT id FROM containers WHERE backend <> 'local' AND "  # noqa: S608
                                "started_at IS NOT NULL AND (state IN (?, ?, ?) OR "
                                "stopped_at >= ?) AND NOT "
                                + _CORRECTED.format(cid="containers.id"), (*_LIVE, since)):
            c = tx.containers.get(str(cid))
            if c is None or c.started_at is None:
                continue
            end = c.stopped_at if c.stopped_at is not None else now
            rate = compute_rate(cfg.rates, c.backend, c.cpu, c.memory_mb, c.gpu)
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
            _sum_task_compute(tx, task_id)

    def _book_unreported(self, tx: Tx, cfg: Config, since: int) -> None:
        """Containers that ended without their agent's result: book their API spend
        from their tokens (the agent was stopped or died before it could report)."""
        for cid, model in _rows(tx, _UNREPORTED_SQL, (*_FINAL, since)):
            c = tx.containers.get(str(cid))
            if c is None:
                continue
            amount = round_micros(container_token_cost(cfg.rates, self._model(cfg, str(model
                                                                                   or "")), c))
            if amount <= 0:
                continue
            tx.ledger.insert("api", amount, task_id=c.task_id, container_id=c.id,
                             input_tokens=c.input_tokens, output_tokens=c.output_tokens,
                             cache_tokens=c.cache_creation_input_tokens
                             + c.cache_read_input_tokens,
                             note=ESTIMATE_NOTE + ": the agent stopped before reporting "
                                  "its cost", at=c.stopped_at)
            tx.containers.update(c.id, api_cost_micros=amount)
            tx.conn.execute("UPDATE tasks SET api_cost_micros = (SELECT COALESCE(SUM("
                            "api_cost_micros), 0) FROM containers WHERE task_id = ?) WHERE id = ?",
                            (c.task_id, c.task_id))

    def _release(self, tx: Tx) -> None:
        for task_id in self._reservations(tx):
            row = tx.conn.execute("SELECT status FROM tasks WHERE id = ?", (task_id,)).fetchone()
            if row is None or row[0] not in _ACTIVE:
                tx.kv.delete(KV_RESERVATION + task_id)

    def _cap_reached(self, tx: Tx, task_id: str, cap: int, spent: int) -> None:
        fail_task(tx, task_id, "E300",
                  f"the task reached its cost cap of {usd(cap)} (--max-cost): it has spent "
                  f"{usd(spent)}; its worker was stopped. Retry it with a higher --max-cost")
        tx.kv.delete(KV_RESERVATION + task_id)

    def _pause_all(self, tx: Tx, status: BudgetStatus, live: dict[str, ContainerRow],
                   result: TickResult) -> None:
        reason = (f"{BUDGET_REASON}: the ceiling of {usd(status.ceiling_micros)} was reached "
                  f"({usd(status.used_micros)} used)")
        for (task_id,) in _rows(tx, "SELECT id FROM tasks WHERE status IN (?, ?) ORDER BY seq",
                                _ACTIVE):
            transition(tx, str(task_id), TaskStatus.PAUSED, reason=reason,
                       data={"code": "E300", "ceiling_micros": status.ceiling_micros})
            tx.kv.delete(KV_RESERVATION + str(task_id))
            if str(task_id) in live:
                result.stops.append((live[str(task_id)], BUDGET_REASON))

    def _resume_paused(self, tx: Tx) -> list[str]:
        resumed = []
        for (task_id,) in _rows(tx, "SELECT id FROM tasks WHERE status = ? AND status_reason "
                                    "LIKE ? ORDER BY seq",
                                (TaskStatus.PAUSED.value, BUDGET_REASON + ":%")):
            transition(tx, str(task_id), TaskStatus.PENDING,
                       reason=f"{BUDGET_REASON}: below the ceiling again",
                       message=f"task {task_id} resumes: the budget allows it again")
            resumed.append(str(task_id))
        return resumed

    # -- API-facing operations --------------------------------------------------------

    async def get(self) -> BudgetStatus:
        cfg = self._config()
        status = await self._store.write(lambda tx: self.status(tx, cfg))
        self.last_status = status
        return status

    async def set_ceiling(self, amount_text: str) -> BudgetStatus:
        """Persist a new ceiling (E101 on a bad amount), then enforce at once: paused
        tasks resume when it now allows them, running ones pause when it does not."""
        micros = parse_amount(amount_text)
        cfg = self._config()

        def unit(tx: Tx) -> None:
            before = self.ceiling(tx, cfg)
            tx.kv.set(KV_CEILING, micros)
            tx.events.append("budget_ceiling_changed",
                             f"ceiling {usd(before)} -> {usd(micros)}",
                             data={"from_micros": before, "to_micros": micros})

        await self._store.write(unit)
        log.info("budget.ceiling_set", ceiling_micros=micros)
        return await self.tick()

    def banner(self) -> tuple[str, str]:
        return self.last_status.banner() if self.last_status is not None else ("", "")


# -- the backends' own figures ----------------------------------------------------------

def usage_pending(tx: Tx, *, ended_before: int, ended_after: int) -> list[ContainerRow]:
    """Ended non-local containers whose compute is still the estimate, ended within
    (``ended_after``, ``ended_before``]."""
    out = []
    for (cid,) in _rows(tx, "SELECT id FROM containers WHERE backend <> 'local' AND "  # noqa: S608
                            "started_at IS NOT NULL AND state IN (?, ?, ?, ?) AND "
                            "stopped_at <= ? AND stopped_at > ? AND NOT "
                            + _CORRECTED.format(cid="containers.id") + " ORDER BY stopped_at",
                        (*_FINAL, ended_before, ended_after)):
        c = tx.containers.get(str(cid))
        if c is not None:
            out.append(c)
    return out


def book_usage(tx: Tx, container_id: str, amount: Decimal, source: str) -> int | None:
    """Replace ``container_id``'s compute estimate by ``source``'s own figure (USD): the
    difference is booked (possibly negative, possibly 0: the entry marks it corrected)
    and its container and task costs follow. None when it was corrected already."""
    c = tx.containers.get(container_id)
    if c is None or tx.conn.execute("SELECT " + _CORRECTED.format(cid="?"),
                                    (container_id,)).fetchone()[0]:
        return None
    micros = to_micros(amount)
    delta = micros - c.cost_micros
    tx.ledger.insert("compute", delta, task_id=c.task_id, container_id=c.id,
                     note=f"{USAGE_NOTE} {source}: {usd(micros)} replaces the estimate of "
                          f"{usd(c.cost_micros)} at the configured rates",
                     at=c.stopped_at or now_us())
    tx.containers.update(c.id, cost_micros=micros)
    _sum_task_compute(tx, c.task_id)
    tx.events.append("compute_corrected",
                     f"{source} reports {usd(micros)} of compute for {c.id} (estimated "
                     f"{usd(c.cost_micros)})", task_id=c.task_id, session_id=c.session_id,
                     container_id=c.id, data={"source": source, "micros": micros,
                                              "estimated_micros": c.cost_micros})
    return delta


def _sum_task_compute(tx: Tx, task_id: str) -> None:
    tx.conn.execute("UPDATE tasks SET compute_cost_micros = (SELECT COALESCE(SUM("
                    "cost_micros), 0) FROM containers WHERE task_id = ?) WHERE id = ?",
                    (task_id, task_id))


# -- history --------------------------------------------------------------------------

@dataclass(frozen=True)
class HistoryRow:
    key: str
    compute_micros: int
    api_micros: int
    total_micros: int
    input_tokens: int
    output_tokens: int
    estimated_micros: int = 0
    """Of the total: API spend priced from tokens, and compute not (yet) replaced by its
    backend's own figure."""
    estimated_compute_micros: int = 0
    """Of ``estimated_micros``: the compute part (at the configured [rates])."""


HISTORY_BY = ("day", "task")
_HISTORY_SQL = {
    "day": ("SELECT strftime('%Y-%m-%d', at / 1000000, 'unixepoch') AS k, {sums} FROM ledger "
            "WHERE at >= ? GROUP BY k ORDER BY k"),
    "task": ("SELECT COALESCE(task_id, '') AS k, {sums} FROM ledger WHERE at >= ? "
             "GROUP BY k ORDER BY SUM(amount_micros) DESC, k"),
}
_SUMS = ("COALESCE(SUM(CASE WHEN kind = 'compute' THEN amount_micros END), 0), "
         "COALESCE(SUM(CASE WHEN kind <> 'compute' THEN amount_micros END), 0), "
         "COALESCE(SUM(amount_micros), 0), COALESCE(SUM(input_tokens), 0), "
         "COALESCE(SUM(output_tokens), 0), "
         "COALESCE(SUM(CASE WHEN substr(note, 1, " + str(len(ESTIMATE_NOTE)) + ") = '"
         + ESTIMATE_NOTE + "' OR (kind = 'compute' AND NOT "
         + _CORRECTED.format(cid="ledger.container_id") + ") THEN amount_micros END), 0), "
         "COALESCE(SUM(CASE WHEN kind = 'compute' AND NOT "
         + _CORRECTED.format(cid="ledger.container_id") + " THEN amount_micros END), 0)")


async def history(store: Store, by: str, since_us: int) -> list[HistoryRow]:
    """Ledger spend grouped per UTC day or per task since ``since_us`` (E101 on ``by``)."""
    if by not in HISTORY_BY:
        raise invalid(f"by: must be one of {', '.join(HISTORY_BY)}, got {by!r}", field="by")
    rows = await store.reader.execute_fetchall(_HISTORY_SQL[by].format(sums=_SUMS),
                                               (since_us,))
    return [HistoryRow(str(r[0]), *(int(v) for v in r[1:])) for r in rows]
