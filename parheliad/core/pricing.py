"""Prices and estimates: pure functions of the configured rates (no database, no clock).

Money is integer micro-dollars everywhere; rates are ``Decimal`` and every amount is
rounded once, half up, when it becomes an integer (docs/adr/0008-budget.md). The
enforcement that uses these figures is :mod:`parheliad.core.budget`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from parhelia import money
from parhelia.backends import LOCAL
from parhelia.errors import invalid
from parheliad.config import Config, RatesConfig
from parheliad.core.tasks import TaskOptions, task_options
from parheliad.store.clock import US_PER_SECOND
from parheliad.store.rows import ContainerRow, TaskRow
from parheliad.store.tables.containers import LiveUsage

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
# One answer at most (input-equivalent, output tokens): a full 200,000-token context
# window read at the input price, and a reply of 32,000 tokens (Claude Code 2.1.332's
# default output cap per request, CLAUDE_CODE_MAX_OUTPUT_TOKENS).
ANSWER_TOKENS = (200_000, 32_000)


def to_micros(amount: Decimal) -> int:
    """Micro-dollars of a USD ``Decimal``, rounded half up (the one rounding rule)."""
    return int((amount * MICROS_PER_USD).to_integral_value(rounding=ROUND_HALF_UP))


def usd_to_micros(amount: object) -> int:
    """Micro-dollars of a USD figure a worker reported (a JSON number); 0 for anything
    that is not a finite number."""
    if isinstance(amount, bool) or not isinstance(amount, int | float) or \
            not math.isfinite(amount):
        return 0
    return to_micros(Decimal(str(amount)))


def round_micros(micros: Decimal) -> int:
    return int(micros.to_integral_value(rounding=ROUND_HALF_UP))


usd = money.usd
"""Amounts in messages: the one format of every process (``$1.25``, ``$0.0042``)."""


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
    if backend == LOCAL:
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


Prices = tuple[str, Decimal, Decimal]
"""(family, USD per million input tokens, per million output tokens)."""


def model_prices(rates: RatesConfig, model: str) -> Prices:
    """(family, USD per million input tokens, per million output tokens)."""
    family = model_family(rates, model)
    default_in = rates.model_input_per_mtok.get("default", Decimal(0))
    default_out = rates.model_output_per_mtok.get("default", Decimal(0))
    return (family, rates.model_input_per_mtok.get(family, default_in),
            rates.model_output_per_mtok.get(family, default_out))


def token_cost(rates: RatesConfig, model: str, *, input_tokens: int, output_tokens: int,
               cache_write: int = 0, cache_read: int = 0) -> Decimal:
    """Micro-dollars (unrounded): a token at $P per million tokens costs P micro-dollars."""
    return _at(model_prices(rates, model), input_tokens, output_tokens, cache_write,
               cache_read)


def _at(prices: Prices, input_tokens: int, output_tokens: int, cache_write: int,
        cache_read: int) -> Decimal:
    _, price_in, price_out = prices
    return (input_tokens * price_in + output_tokens * price_out
            + cache_write * price_in * CACHE_WRITE_FACTOR
            + cache_read * price_in * CACHE_READ_FACTOR)


def priced_tokens(prices: Prices, c: ContainerRow | LiveUsage) -> Decimal:
    """A container's tokens at ``prices`` (``model_prices``), in micro-dollars."""
    return _at(prices, c.input_tokens, c.output_tokens, c.cache_creation_input_tokens,
               c.cache_read_input_tokens)


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
    if opts.backend == LOCAL:
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
        capped = f"; capped by max cost {usd(cap)}"
        parts = tuple(EstimatePart(p.name, min(p.low_micros, cap), min(p.high_micros, cap),
                                   p.basis + (capped if p.high_micros > cap else ""))
                      for p in parts)
    return Estimate(low, high, parts)


def answer_bound(rates: RatesConfig, model: str) -> int:
    """The most one answer of the agent can cost at ``model``'s prices: a whole context
    window read at the input price plus the largest reply (:data:`ANSWER_TOKENS`)."""
    return round_micros(token_cost(rates, model, input_tokens=ANSWER_TOKENS[0],
                                   output_tokens=ANSWER_TOKENS[1]))


def reservation_for(cfg: Config, task: TaskRow) -> int:
    """What a running ``task`` holds of the ceiling (docs/adr/0045-spend-checked-when-booked.md):
    what it can still spend before the budget sees it - one answer (API spend is checked
    as each answer is booked) plus its compute over one accrual interval and the stop
    grace (compute is booked on the timer) - capped by its ``max_cost``."""
    opts = task_options(task)
    rate = compute_rate(cfg.rates, opts.backend, opts.cpu, opts.memory_mb, opts.gpu)
    window = Decimal(str(cfg.budget.accrual_interval_seconds)) + \
        Decimal(str(cfg.orchestrator.cancel_grace_seconds))
    amount = answer_bound(cfg.rates, opts.model) + to_micros(rate * window)
    return min(amount, opts.max_cost_micros) if opts.max_cost_micros else amount
