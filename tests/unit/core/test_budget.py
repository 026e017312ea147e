"""The budget in-process, on a real SQLite store: estimates against the rate table by
hand, amounts, exact accrual (property test), and check-and-reserve under 50
concurrent dispatches."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parhelia.errors import ParheliaError
from parhelia.volume import LocalVolume
from parheliad.backends.base import ChannelBatch, ContainerSpec, ContainerStatus
from parheliad.backends.registry import Backends
from parheliad.config import Config, RatesConfig
from parheliad.core import budget as core
from parheliad.core import pricing
from parheliad.core.dispatcher import Dispatcher
from parheliad.core.states import TaskStatus
from parheliad.core.tasks import TaskDefaults, TaskOptions, transition, validate_options
from parheliad.store import Store, Tx, open_store
from parheliad.store.clock import US_PER_SECOND
from tests.helpers.backend_seams import SeamsMixin

T0 = 1_795_000_000 * US_PER_SECOND  # 2026-11-17, well inside a month


def opts(**kw: Any) -> TaskOptions:
    return validate_options(TaskOptions(**kw), TaskDefaults.from_config(Config()))


# -- estimates, by hand from the rate table ------------------------------------------

def test_estimate_modal_gpu_by_hand() -> None:
    est = pricing.estimate(Config(), opts(backend="modal", gpu="A10G", cpu=2, memory_mb=8192,
                                       timeout_seconds=3600, max_turns=10, model="sonnet"))
    compute, api = est.parts
    # rate = 2 x 0.00003942 + 8 GiB x 0.00000672 + 0.000306 = 0.0004386 USD/s
    assert (compute.low_micros, compute.high_micros) == (394_740, 1_578_960)  # 900 s, 3600 s
    # sonnet $3/$15 per M: low 3 turns x (2000 x 3 + 300 x 15), high 10 x (20000 x 3 + 1500 x 15)
    assert (api.low_micros, api.high_micros) == (31_500, 825_000)
    assert (est.low_micros, est.high_micros) == (426_240, 2_403_960)
    assert "A10G" in compute.basis and "sonnet" in api.basis


def test_estimate_local_costs_no_compute_and_default_model_prices() -> None:
    est = pricing.estimate(Config(), opts(backend="local", max_turns=50))
    compute, api = est.parts
    assert (compute.low_micros, compute.high_micros) == (0, 0)
    assert "no compute" in compute.basis
    # default family ($5/$25): 13 x (10000 + 7500) and 50 x (100000 + 37500)
    assert (api.low_micros, api.high_micros) == (227_500, 6_875_000)


def test_estimate_several_gpus_and_max_cost_cap() -> None:
    o = opts(backend="modal", gpu="H100:2", cpu=4, memory_mb=16384, timeout_seconds=600,
             max_turns=4, model="claude-haiku-4-5", max_cost_micros=1_000_000)
    est = pricing.estimate(Config(), o)
    compute, api = est.parts
    # 4 x 0.00003942 + 16 x 0.00000672 + 2 x 0.001097 = 0.0024592 USD/s
    # 150 s, 600 s (1,475,520: more than the task may spend, so capped at max_cost)
    assert (compute.low_micros, compute.high_micros) == (368_880, 1_000_000)
    assert "capped by max cost $1" in compute.basis and "capped" not in api.basis
    # haiku $1/$5: 1 x (2000 + 1500), 4 x (20000 + 7500)
    assert (api.low_micros, api.high_micros) == (3_500, 110_000)
    assert (est.low_micros, est.high_micros) == (372_380, 1_000_000)  # high capped at max_cost


def test_rates_from_config_override_defaults() -> None:
    rates = dataclasses.replace(RatesConfig(), cpu_core_per_second=Decimal("0.001"),
                                model_input_per_mtok={"default": Decimal(1)},
                                model_output_per_mtok={"default": Decimal(2)})
    cfg = dataclasses.replace(Config(), rates=rates)
    est = pricing.estimate(cfg, opts(backend="modal", cpu=1, memory_mb=1024, timeout_seconds=100,
                                  max_turns=1, model="sonnet"))
    compute, api = est.parts
    # 1 x 0.001 + 1 x 0.00000672 = 0.00100672 USD/s; sonnet falls back to "default"
    assert compute.high_micros == 100_672
    assert api.high_micros == 20_000 * 1 + 1_500 * 2


def test_in_flight_token_pricing() -> None:
    # 1M input at $3, 1M output at $15, 1M cache writes at 1.25 x 3, 1M cache reads at 0.1 x 3
    cost = pricing.token_cost(RatesConfig(), "sonnet", input_tokens=10**6, output_tokens=10**6,
                           cache_write=10**6, cache_read=10**6)
    assert pricing.round_micros(cost) == 3_000_000 + 15_000_000 + 3_750_000 + 300_000


@pytest.mark.parametrize("text", ["-1", "0", "0.0", "nan", "NaN", "inf", "-inf", "abc", "",
                                  "1.0000001", "1e400", "$", "1,5"])
def test_bad_ceilings_are_e101(text: str) -> None:
    with pytest.raises(ParheliaError) as info:
        pricing.parse_amount(text)
    assert info.value.code == "E101"


@pytest.mark.parametrize(("text", "micros"), [("50", 50_000_000), ("$12.50", 12_500_000),
                                              (" 0.000001 ", 1), ("1e2", 100_000_000)])
def test_good_ceilings(text: str, micros: int) -> None:
    assert pricing.parse_amount(text) == micros


def test_period_start() -> None:
    assert pricing.period_start_us("total", T0) == 0
    start = pricing.period_start_us("month", T0)
    assert pricing.period_start_us("month", start) == start
    assert pricing.period_start_us("month", start - 1) < start
    assert 0 < T0 - start < 31 * 86_400 * US_PER_SECOND


# -- ledger arithmetic (property) -----------------------------------------------------

def _insert_container(tx: Tx, task_id: str, cpu: float, memory_mb: int, gpu: str,
                      started: int) -> str:
    c = tx.containers.insert(task_id=task_id, backend="modal", cpu=cpu, memory_mb=memory_mb,
                             gpu=gpu, started_at=started)
    tx.containers.update(c.id, state="starting")
    tx.containers.update(c.id, state="running")
    return c.id


container_st = st.tuples(st.sampled_from([0.125, 0.5, 1.0, 2.0, 3.3, 8.0]),
                         st.integers(min_value=128, max_value=65536),
                         st.sampled_from(["", "T4", "A10G", "H100:2", "B200:8"]))
# per tick: seconds since the previous tick, container to stop (index) or None, api spend
tick_st = st.tuples(st.integers(min_value=1, max_value=5_000_000),  # us .. 5 s
                    st.one_of(st.none(), st.integers(min_value=0, max_value=3)),
                    st.integers(min_value=0, max_value=50_000))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(containers=st.lists(container_st, min_size=1, max_size=4),
       ticks=st.lists(tick_st, min_size=1, max_size=12))
def test_ledger_totals_equal_sum_of_entries(tmp_path: Path, containers: list[Any],
                                            ticks: list[Any]) -> None:
    asyncio.run(_ledger_property(tmp_path, containers, ticks))


async def _ledger_property(tmp_path: Path, containers: list[Any], ticks: list[Any]) -> None:
    # Every example its own database: hypothesis runs many examples in one tmp_path, and
    # a name built from the example's values (or an id() the last one freed) can repeat.
    db = Path(tempfile.mkdtemp(prefix="ledger-", dir=tmp_path)) / "parheliad.db"
    store = await open_store(db)
    try:
        cfg = Config()
        b = core.Budget(store, lambda: cfg)
        task = await store.write(lambda tx: tx.tasks.insert(dict(
            prompt="p", cpu=1.0, memory_mb=1024, timeout_seconds=60, max_turns=5,
            permission_mode="acceptEdits", backend="modal")))
        ids = await store.write(lambda tx: [_insert_container(tx, task.id, *spec, T0)
                                            for spec in containers])
        now, stopped_at, api_total = T0, {}, 0
        for step, (advance, stop, api) in enumerate(ticks):
            now += advance
            if stop is not None and stop < len(ids) and ids[stop] not in stopped_at:
                at = now - advance // 2
                stopped_at[ids[stop]] = at
                await store.write(functools.partial(_stop, cid=ids[stop], at=at))
            if api:
                api_total += api
                await store.ledger.record("api", api, task_id=task.id, note=f"step {step}")
            await b.tick(now=now)
        entries = await store.ledger.list(limit=100_000)
        assert await store.ledger.total() == sum(e.amount_micros for e in entries)
        assert all(e.amount_micros > 0 for e in entries)  # no zero or negative accruals
        assert sum(e.amount_micros for e in entries if e.kind == "api") == api_total
        for cid, (cpu, memory_mb, gpu) in zip(ids, containers, strict=True):
            end = stopped_at.get(cid, now)
            rate = pricing.compute_rate(cfg.rates, "modal", cpu, memory_mb, gpu)
            expected = pricing.to_micros(rate * Decimal(end - T0) / US_PER_SECOND)
            booked = sum(e.amount_micros for e in entries if e.container_id == cid)
            assert booked == expected == (await store.containers.get(cid)).cost_micros
        row = await store.tasks.get(task.id)
        compute = sum(e.amount_micros for e in entries if e.kind == "compute")
        assert row.compute_cost_micros == compute
        status = await b.get()
        assert status.used_micros == status.compute_micros + status.api_micros
    finally:
        await store.close()


def _stop(tx: Tx, *, cid: str, at: int) -> None:
    tx.containers.update(cid, state="exited", stopped_at=at)


# -- check-and-reserve ----------------------------------------------------------------

async def _tasks(store: Store, n: int, *, backend: str = "modal",
                 max_cost: int = 1_000_000) -> list[Any]:
    return await store.write(lambda tx: [tx.tasks.insert(dict(
        prompt=f"p{i}", cpu=1.0, memory_mb=1024, timeout_seconds=600, max_turns=50,
        permission_mode="acceptEdits", backend=backend, max_cost_micros=max_cost))
        for i in range(n)])


def _claim(tx: Tx, *, budget: core.Budget, task_id: str) -> None:
    """What the dispatcher's claim unit does about money: gate, then running."""
    task = tx.tasks.require(task_id)
    budget.gate(tx, task)
    transition(tx, task.id, TaskStatus.RUNNING)


async def test_fifty_concurrent_claims_never_over_commit(store: Store) -> None:
    cfg = Config()
    b = core.Budget(store, lambda: cfg)
    await store.kv.set(core.KV_CEILING, 10_500_000)  # room for 10 reservations of $1
    await store.ledger.record("api", 0 + 400_000, note="earlier spend")  # ... and $0.40 used
    tasks = await _tasks(store, 50)
    results = await asyncio.gather(*(store.write(functools.partial(_claim, budget=b,
                                                                   task_id=t.id))
                                     for t in tasks), return_exceptions=True)
    refused = [r for r in results if isinstance(r, ParheliaError)]
    assert all(r.code == "E300" for r in refused)
    assert len(results) - len(refused) == 10
    status = await b.get()
    assert status.used_micros + status.reserved_micros <= status.ceiling_micros
    assert status.reserved_micros == 10_000_000
    running = await store.tasks.list([TaskStatus.RUNNING.value], limit=100)
    assert len(running) == 10


class CountingBackend(SeamsMixin):
    """A backend that launches nothing: the dispatcher's own logic is under test."""

    name = "modal"

    def __init__(self, root: Path) -> None:
        self.volume = LocalVolume(root)
        self.launched: list[str] = []

    async def launch(self, spec: ContainerSpec) -> str:
        await asyncio.sleep(0)
        self.launched.append(spec.task_id)
        return f"sb-{len(self.launched)}"

    async def status(self, backend_id: str, container_id: str) -> ContainerStatus:
        return ContainerStatus(running=True)

    async def events(self, container_id: str, cursor: int) -> ChannelBatch:
        return ChannelBatch([], cursor)


async def test_fifty_concurrent_dispatches_never_over_commit(store: Store,
                                                             tmp_path: Path) -> None:
    cfg = dataclasses.replace(Config(), orchestrator=dataclasses.replace(
        Config().orchestrator, max_concurrent_workers=100))
    b = core.Budget(store, lambda: cfg)
    await store.kv.set(core.KV_CEILING, 7_000_000)
    backend = CountingBackend(tmp_path / "vol")
    dispatcher = Dispatcher(store, Backends(built={"modal": backend}),  # type: ignore[dict-item]
                            lambda: cfg, LocalVolume(tmp_path / "local"), "owner",
                            budget_gate=b.gate)
    tasks = await _tasks(store, 50)
    outcomes = await asyncio.gather(*(dispatcher.dispatch_task(t.id) for t in tasks),
                                    dispatcher.run_pass())
    started = [o for o in outcomes[:-1] if o is True]
    assert len(backend.launched) == 7 and len(started) + len(outcomes[-1].dispatched) == 7
    status = await b.get()
    assert status.reserved_micros == 7_000_000 <= status.ceiling_micros
    pending = await store.tasks.list([TaskStatus.PENDING.value], limit=100)
    assert len(pending) == 43  # refused ones stay pending


async def test_a_reservation_holds_one_answer_while_the_task_runs_and_is_released(
        store: Store) -> None:
    """A running task holds what it can spend before the budget next sees its spend: one
    answer at its model's prices plus one accrual window of compute (capped by its
    max_cost). Spending does not shrink it: the next answer can come whatever was
    spent before."""
    cfg = Config()
    b = core.Budget(store, lambda: cfg)
    (task,) = await _tasks(store, 1, max_cost=5_000_000)
    await store.write(functools.partial(_claim, budget=b, task_id=task.id))
    # default prices $5/$25: 200,000 input + 32,000 output tokens; compute:
    # 1 core and 1 GiB on modal for 10 s of accrual + 10 s of stop grace
    answer = 200_000 * 5 + 32_000 * 25
    compute = pricing.to_micros(pricing.compute_rate(cfg.rates, "modal", 1.0, 1024, "") * 20)
    assert (await b.get()).reserved_micros == answer + compute
    await store.write(lambda tx: tx.tasks.update(task.id, api_cost_micros=500_000))
    await store.ledger.record("api", 500_000, task_id=task.id)
    status = await b.get()
    assert (status.used_micros, status.reserved_micros) == (500_000, answer + compute)
    await store.write(lambda tx: transition(tx, task.id, TaskStatus.COMPLETED))
    await b.tick()
    assert (await b.get()).reserved_micros == 0
    assert await store.reservations.list() == []


async def test_a_small_max_cost_reserves_less(store: Store) -> None:
    b = core.Budget(store, Config)
    (task,) = await _tasks(store, 1, max_cost=300_000)
    await store.write(functools.partial(_claim, budget=b, task_id=task.id))
    assert (await b.get()).reserved_micros == 300_000


async def test_history_says_which_spend_was_estimated(store: Store) -> None:
    """An entry priced from tokens (the agent never reported its figure) is counted as
    estimated, and so is compute at the rates (no backend figure replaced it yet); the
    agent's own figures are not."""
    from parheliad.core.budget import ESTIMATE_NOTE, history

    def unit(tx: Any) -> None:
        tx.ledger.insert("api", 1_200, task_id="t-a", note="agent usage")
        tx.ledger.insert("api", 300, task_id="t-a", note=ESTIMATE_NOTE + ": stopped")
        tx.ledger.insert("api", 50, task_id="t-b", note="agent usage (the agent's own figure)")
        tx.ledger.insert("compute", 7, task_id="t-b", note="modal compute")

    await store.write(unit)
    rows = {r.key: r for r in await history(store, "task", 0)}
    assert (rows["t-a"].total_micros, rows["t-a"].estimated_micros) == (1_500, 300)
    assert (rows["t-b"].total_micros, rows["t-b"].estimated_micros) == (57, 7)
    assert (rows["t-a"].estimated_compute_micros, rows["t-b"].estimated_compute_micros) == (0, 7)
    day = await history(store, "day", 0)
    assert [(r.estimated_micros, r.estimated_compute_micros) for r in day] == [(307, 7)]


async def test_modal_usage_replaces_the_compute_estimate_once_and_for_good(store: Store) -> None:
    """Compute booked at the rates counts as estimated in history; the backend's figure
    books the difference once; a later tick (a restarted daemon looks back 7 days) does
    not book the estimate again."""
    from parheliad.core.budget import book_usage, history, usage_pending

    cfg = Config()
    task = await store.write(lambda tx: tx.tasks.insert(dict(
        prompt="p", cpu=2.0, memory_mb=2048, timeout_seconds=600, max_turns=5,
        permission_mode="acceptEdits", backend="modal")))
    cid = await store.write(lambda tx: _insert_container(tx, task.id, 2.0, 2048, "", T0))
    await store.write(functools.partial(_stop, cid=cid, at=T0 + 100 * US_PER_SECOND))
    await core.Budget(store, lambda: cfg).tick(now=T0 + 101 * US_PER_SECOND)
    estimate = (await store.containers.get(cid)).cost_micros
    assert estimate == pricing.to_micros(pricing.compute_rate(cfg.rates, "modal", 2.0, 2048, "")
                                      * 100)
    (row,) = await history(store, "task", 0)
    assert row.estimated_compute_micros == row.estimated_micros == row.compute_micros \
        == estimate
    pending = await store.write(lambda tx: usage_pending(
        tx, "modal", ended_before=T0 + 200 * US_PER_SECOND, ended_after=0))
    assert [c.id for c in pending] == [cid]

    delta = await store.write(lambda tx: book_usage(tx, cid, Decimal("0.0042"), "modal"))
    assert delta == 4_200 - estimate
    assert await store.write(lambda tx: book_usage(tx, cid, Decimal("1"), "modal")) is None
    await core.Budget(store, lambda: cfg).tick(now=T0 + 300 * US_PER_SECOND)  # a new daemon
    (row,) = await history(store, "task", 0)
    assert (row.compute_micros, row.estimated_micros, row.estimated_compute_micros) == \
        (4_200, 0, 0)
    assert (await store.containers.get(cid)).cost_micros == 4_200
    assert (await store.tasks.get(task.id)).compute_cost_micros == 4_200
    assert await store.write(lambda tx: usage_pending(
        tx, "modal", ended_before=T0 + 400 * US_PER_SECOND, ended_after=0)) == []
    entries = await store.ledger.list(kind="compute")
    assert entries[0].note.startswith(core.USAGE_NOTE) and "$0.0042 " in entries[0].note
    assert all(e.note == "modal compute, estimated at the [rates]" for e in entries[1:])


@pytest.mark.parametrize(("cap", "ask", "allowed"), [
    ("0", "60", False),    # by default an agent never raises the ceiling
    ("0", "20", True),     # ... but it may lower it
    ("100", "100", True),  # up to what the user lets agents set
    ("100", "100.01", False),
])
async def test_an_agent_may_not_raise_the_ceiling_past_the_users_cap(
        store: Store, cap: str, ask: str, allowed: bool) -> None:
    """Issue 22, finding 5: parhelia_budget_set let a model raise the ceiling to any
    amount. A person's `budget set` is never capped."""
    base = Config()
    cfg = dataclasses.replace(base, budget=dataclasses.replace(
        base.budget, agent_max_ceiling_usd=Decimal(cap)))
    b = core.Budget(store, lambda: cfg)
    await store.kv.set(core.KV_CEILING, 50_000_000)
    if allowed:
        assert (await b.set_ceiling(ask, agent=True)).ceiling_micros == pricing.parse_amount(ask)
    else:
        with pytest.raises(ParheliaError) as err:
            await b.set_ceiling(ask, agent=True)
        assert err.value.code == "E403" and "budget.agent_max_ceiling_usd" in err.value.message
        assert await store.kv.get(core.KV_CEILING) == 50_000_000
        assert (await b.set_ceiling(ask)).ceiling_micros == pricing.parse_amount(ask)


async def test_a_task_that_cannot_fit_waits_from_its_creation(store: Store) -> None:
    """The admission check at create (not only the dispatch gate): a task whose
    reservation cannot fit the ceiling is created waiting for the user with E300 and the
    reason, before any dispatch; one that fits (its max cost within what is left) is
    not; a held task is not asked."""
    from parheliad.core.tasks import TaskService

    cfg = Config()
    budget = core.Budget(store, lambda: cfg)
    await store.write(lambda tx: tx.kv.set(core.KV_CEILING, 1_000))
    service = TaskService(store, config=lambda project: cfg, admit=budget.admission)

    big = await service.create("p", TaskOptions(max_turns=50))
    assert (big.status, big.status_code, big.needs_user) == ("pending", "E300", True)
    assert "cannot fit the budget" in big.status_reason and "ceiling" in big.status_reason
    small = await service.create("p", TaskOptions(max_cost_micros=1_000))
    assert (small.status_code, small.needs_user) == ("", False)
    held = await service.create("p", TaskOptions(max_turns=50), dispatch=False)
    assert held.held and held.status_code == ""


async def test_a_budget_paused_task_resumes_only_when_it_can_be_dispatched(
        store: Store) -> None:
    """A pause takes the task's in-flight spend out of `used`, so the ceiling may no
    longer be reached a tick later: the task stays paused until one more answer (what it
    reserves to run) fits, then goes back to pending (and the dispatch gate takes it)."""
    cfg = Config()
    b = core.Budget(store, lambda: cfg)
    (task,) = await _tasks(store, 1, max_cost=0)
    await store.ledger.record("api", 400_000, task_id=task.id)
    await store.kv.set(core.KV_CEILING, 500_000)  # not reached: $0.40 of $0.50
    await store.write(lambda tx: (transition(tx, task.id, TaskStatus.RUNNING),
                                  transition(tx, task.id, TaskStatus.PAUSED,
                                             reason=f"{core.BUDGET_REASON}: the ceiling of "
                                                    "$0.50 was reached ($0.52 used)")))
    needs = await store.write(lambda tx: pricing.reservation_for(cfg, tx.tasks.require(task.id)))
    await b.tick()
    assert (await store.tasks.get(task.id)).status == TaskStatus.PAUSED
    await b.set_ceiling(f"{(400_000 + needs - 1) / 1_000_000:.6f}")
    assert (await store.tasks.get(task.id)).status == TaskStatus.PAUSED
    await b.set_ceiling(f"{(400_000 + needs) / 1_000_000:.6f}")
    assert (await store.tasks.get(task.id)).status == TaskStatus.PENDING
    await store.write(functools.partial(_claim, budget=b, task_id=task.id))  # it fits
