"""Store unit tests: migrations, group commit, isolation of failing units, exactly-once."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from parhelia.errors import ParheliaError
from parheliad.store import EventFilter, EventRow, Store, Tx, open_store
from parheliad.store.connection import connect_writer
from parheliad.store.migrate import migrate, user_version
from parheliad.store.schema import MIGRATIONS, Migration

TASK = dict(prompt="p", cpu=1.0, memory_mb=1024, timeout_seconds=60, max_turns=5,
            permission_mode="acceptEdits", backend="local")


def test_migrations_idempotent(tmp_path: Path) -> None:
    conn = connect_writer(tmp_path / "m.db")
    assert migrate(conn) == len(MIGRATIONS)
    assert user_version(conn) == len(MIGRATIONS)
    assert migrate(conn) == 0
    assert user_version(conn) == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_failing_migration_step_rolls_back_entirely(tmp_path: Path) -> None:
    conn = connect_writer(tmp_path / "m.db")
    broken = [*MIGRATIONS, Migration("broken", ("CREATE TABLE half_done (x INTEGER)",
                                                "THIS IS NOT SQL"))]
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, broken)
    assert user_version(conn) == len(MIGRATIONS)  # the good steps stayed committed
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "half_done" not in tables and "tasks" in tables
    conn.close()


def test_each_migration_runs_in_its_own_transaction(tmp_path: Path) -> None:
    conn = connect_writer(tmp_path / "m.db")
    seen: list[tuple[bool, int]] = []

    def probe(c: sqlite3.Connection) -> None:
        seen.append((c.in_transaction, user_version(c)))

    steps = [Migration("a", run=probe), Migration("b", run=probe)]
    assert migrate(conn, steps) == 2
    assert seen == [(True, 0), (True, 1)]
    conn.close()


async def test_group_commit_batches_many_writes(store: Store) -> None:
    before = store.writer.commits
    rows = await asyncio.gather(*(store.events.append("task_created", f"e{i}")
                                  for i in range(2000)))
    commits = store.writer.commits - before
    assert all(r is not None for r in rows)
    assert 1 <= commits <= 20, commits
    assert await store.events.count() == 2000
    # every committed event was published once, in id order
    ids = [e.id for e in store.published]  # type: ignore[attr-defined]
    assert ids == sorted(ids) and len(ids) == 2000


async def test_failing_unit_does_not_poison_its_batch(store: Store) -> None:
    def bad(tx: Tx) -> None:
        tx.events.append("task_created", "doomed")
        raise RuntimeError("boom")

    async def good(i: int) -> EventRow | None:
        return await store.events.append("task_created", f"ok{i}")

    before = store.writer.commits
    results = await asyncio.gather(good(1), store.write(bad), good(2),
                                   return_exceptions=True)
    assert isinstance(results[1], RuntimeError)
    assert isinstance(results[0], EventRow) and isinstance(results[2], EventRow)
    assert store.writer.commits - before == 1  # one transaction for all three
    messages = [e.message for e in await store.events.list()]
    assert messages == ["ok1", "ok2"]
    # the rolled-back unit's event was never published
    assert "doomed" not in [e.message for e in store.published]  # type: ignore[attr-defined]


async def test_exactly_once_per_container_seq(store: Store) -> None:
    first = await store.events.append("agent_message", "a", container_id="c-1", container_seq=1)
    again = await store.events.append("agent_message", "a", container_id="c-1", container_seq=1)
    other = await store.events.append("agent_message", "b", container_id="c-2", container_seq=1)
    plain = [await store.events.append("task_created", "x") for _ in range(2)]
    assert first is not None and again is None and other is not None
    assert all(p is not None for p in plain)
    assert await store.write(lambda tx: tx.events.seen("c-1", 1))
    assert not await store.write(lambda tx: tx.events.seen("c-1", 2))


async def test_ids_and_prefix_lookup(store: Store) -> None:
    task = await store.tasks.create(TASK)
    assert task.id.startswith("t-") and len(task.id) == 14
    assert (await store.tasks.get(task.id[:6])).id == task.id
    assert (await store.tasks.get(task.id[2:8])).id == task.id  # type prefix optional
    for ref in ("t-zzz", "nope", "", "s-" + task.id[2:]):
        with pytest.raises(ParheliaError) as err:
            await store.tasks.get(ref)
        assert err.value.code == "E201"
    for repo, code in ((store.sessions, "E200"), (store.checkpoints, "E202"),
                       (store.containers, "E203")):
        with pytest.raises(ParheliaError) as err:
            await repo.get("x-123")
        assert err.value.code == code


async def test_ambiguous_prefix(store: Store) -> None:
    tasks = [await store.tasks.create(TASK) for _ in range(40)]
    firsts = {}
    for t in tasks:
        firsts.setdefault(t.id[2], []).append(t)
    shared = next(group for group in firsts.values() if len(group) > 1)
    with pytest.raises(ParheliaError) as err:
        await store.tasks.get(shared[0].id[:3])
    assert err.value.code == "E104" and "several" in err.value.message
    # Up to five candidates, all from the group (in the store's order, not creation order).
    named = [t.id for t in shared if t.id in err.value.message]
    assert len(named) == min(5, len(shared)), (err.value.message, [t.id for t in shared])


async def test_status_changes_checked_in_the_writer(store: Store) -> None:
    task = await store.tasks.create(TASK)
    with pytest.raises(ParheliaError) as err:
        await store.tasks.update(task.id, status="completed")  # pending -> completed
    assert err.value.code == "E603"
    running = await store.tasks.update(task.id, status="running")
    assert running.status == "running" and running.updated_at >= task.updated_at
    with pytest.raises(ValueError):
        await store.tasks.update(task.id, seq=5)


async def test_fifo_order_and_listing(store: Store) -> None:
    made = [await store.tasks.create({**TASK, "prompt": str(i)}) for i in range(5)]
    assert [t.id for t in await store.tasks.pending()] == [t.id for t in made]
    assert [t.id for t in await store.tasks.list(limit=2)] == [made[4].id, made[3].id]
    await store.tasks.update(made[0].id, status="cancelled")
    assert [t.id for t in await store.tasks.list(["cancelled"])] == [made[0].id]
    counts = await store.tasks.count_by_status()
    assert counts["pending"] == 4 and counts["cancelled"] == 1 and counts["failed"] == 0


async def test_delete_cascades_but_keeps_history_and_spend(store: Store) -> None:
    task = await store.tasks.create(TASK)

    def populate(tx: Tx) -> str:
        session = tx.sessions.insert(task.id)
        container = tx.containers.insert(task_id=task.id, backend="local",
                                         session_id=session.id)
        tx.heartbeats.insert(container.id, cpu_percent=3.0, metrics={"turns": 1})
        tx.checkpoints.insert(session_id=session.id, trigger="start")
        tx.ledger.insert("api", 1234, task_id=task.id, container_id=container.id)
        tx.events.append("task_created", task_id=task.id)
        return container.id

    container_id = await store.write(populate)
    assert (await store.heartbeats.latest(container_id)) is not None
    assert await store.tasks.delete(task.id)
    assert await store.containers.find(container_id) is None
    assert await store.sessions.list(task_id=task.id) == []
    assert await store.checkpoints.list() == []
    assert await store.ledger.total(task_id=task.id) == 1234
    assert await store.events.count(EventFilter(task_id=task.id)) == 1


async def test_container_state_machine_in_writer(store: Store) -> None:
    task = await store.tasks.create(TASK)
    c = await store.containers.create(task_id=task.id, backend="local", cpu=1.0)
    assert (c.state, c.health) == ("created", "unknown")
    with pytest.raises(ValueError):
        await store.containers.update(c.id, state="created2")
    with pytest.raises(ParheliaError) as err:
        await store.containers.update(c.id, state="orphaned")
    assert err.value.code == "E603"
    c = await store.containers.update(c.id, state="starting", backend_id="123:456")
    c = await store.containers.update(c.id, state="running", health="healthy", last_seq=3)
    assert (c.state, c.health, c.last_seq, c.backend_id) == ("running", "healthy", 3, "123:456")
    assert [x.id for x in await store.containers.live()] == [c.id]


async def test_event_filters(store: Store) -> None:
    await store.events.append("task_created", "a", task_id="t-1", at=100)
    await store.events.append("task_failed", "b", task_id="t-1", at=200)
    await store.events.append("agent_message", "c", task_id="t-2", container_id="c-9",
                              session_id="s-1", at=300)
    await store.events.append("budget_warning", "d", at=400)

    async def msgs(**kw: object) -> str:
        flt = EventFilter(**kw)  # type: ignore[arg-type]
        rows = await store.events.list(flt)
        assert [r.message for r in rows] == [r.message for r in rows if flt.matches(r)]
        exported = [r async for r in store.events.iter_export(flt, page=1)]
        assert exported == rows
        return "".join(r.message for r in rows)

    assert await msgs() == "abcd"
    assert await msgs(types=("task_failed", "budget_warning")) == "bd"
    assert await msgs(min_level="warning") == "bd"
    assert await msgs(min_level="debug") == "abcd"
    assert await msgs(since_us=200, until_us=400) == "bc"
    assert await msgs(task_id="t-1") == "ab"
    assert await msgs(session_id="s-1") == "c"
    assert await msgs(container_id="c-9") == "c"
    first = (await store.events.list())[0].id
    assert await msgs(after_id=first) == "bcd"
    assert [e.message for e in await store.events.list(limit=2)] == ["c", "d"]


async def test_kv_and_ledger(store: Store) -> None:
    assert await store.kv.get("missing", 7) == 7
    made = await store.kv.get_or_create("instance_id", lambda: "abc")
    assert made == "abc"
    assert await store.kv.get_or_create("instance_id", lambda: "zzz") == "abc"
    await store.kv.set("budget.ceiling_micros", 5_000_000)
    assert await store.kv.get("budget.ceiling_micros") == 5_000_000
    await store.ledger.record("compute", 10)
    await store.ledger.record("api", 32, input_tokens=5)
    with pytest.raises(TypeError):
        await store.ledger.record("api", 0.5)
    assert await store.ledger.total() == 42
    assert (await store.ledger.totals_by_kind())["api"] == 32


async def test_closed_store_refuses_writes(tmp_path: Path) -> None:
    s = await open_store(tmp_path / "x.db")
    pending = asyncio.ensure_future(s.events.append("task_created", "last"))
    await asyncio.sleep(0)
    await s.close()
    assert (await pending) is not None  # queued before close: committed
    with pytest.raises(RuntimeError):
        await s.events.append("task_created", "late")
    # and it is really on disk
    again = await open_store(tmp_path / "x.db")
    assert [e.message for e in await again.events.list()] == ["last"]
    await again.close()


async def test_session_state_machine_in_writer(store: Store) -> None:
    task = await store.tasks.create(TASK)
    with pytest.raises(ValueError):
        await store.write(lambda tx: tx.sessions.insert(task.id, status="attached"))
    s = await store.write(lambda tx: tx.sessions.insert(task.id, status="detached"))
    s = await store.sessions.update(s.id, status="attached", attached_clients=2)
    assert (s.status, s.attached_clients) == ("attached", 2)
    with pytest.raises(ValueError):
        await store.sessions.update(s.id, status="headless2")
    await store.sessions.update(s.id, status="attached")  # unchanged: no transition
    await store.write(lambda tx: tx.sessions.ended(s.id, completed=True))
    with pytest.raises(ParheliaError) as err:
        await store.sessions.update(s.id, status="attached")
    assert err.value.code == "E603"
    assert "cannot go from completed to attached" in err.value.message
    ended = await store.write(lambda tx: tx.sessions.ended(s.id, completed=False))
    assert (ended.status, ended.attached_clients, ended.tmux_socket) == ("completed", 0, "")


def test_migration_names_old_active_sessions_headless(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "old.sqlite", isolation_level=None)
    before = next(i for i, m in enumerate(MIGRATIONS) if m.name == "session modes")
    migrate(conn, MIGRATIONS[:before])
    conn.execute("INSERT INTO tasks (id, seq, prompt, cpu, memory_mb, timeout_seconds, "
                 "max_turns, permission_mode, backend, status, created_at, updated_at) "
                 "VALUES ('t-1', 1, 'p', 1, 1, 1, 1, 'acceptEdits', 'local', 'running', 0, 0)")
    for sid, status in (("s-1", "active"), ("s-2", "stopped"), ("s-3", "completed")):
        conn.execute("INSERT INTO sessions (id, task_id, agent_session_id, status, created_at,"
                     " updated_at) VALUES (?, 't-1', 'u', ?, 0, 0)", (sid, status))
    migrate(conn)
    assert conn.execute("SELECT id, status, attached_clients, tmux_socket FROM sessions "
                        "ORDER BY id").fetchall() == [
        ("s-1", "headless", 0, ""), ("s-2", "stopped", 0, ""), ("s-3", "completed", 0, "")]


async def test_migration_moves_budget_reservations_out_of_kv(tmp_path: Path) -> None:
    """A daemon upgraded while tasks run keeps their reservations: the kv rows the budget
    used to keep them in become rows of their own table, and only those kv rows go."""
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    before = next(i for i, m in enumerate(MIGRATIONS) if m.name == "budget reservations")
    migrate(conn, MIGRATIONS[:before])
    for key, value, at in (
            ("budget.reservation.t-aaa", '{"micros": 2000000, "base_micros": 150, "at": 7}', 9),
            ("budget.reservation.t-bbb", '{"micros": 5}', 11),
            ("budget.reservation.t-bad", "not json", 12),
            ("budget.ceiling_micros", "5000000", 13),
            ("budget.reservations", '"not a reservation"', 14)):
        conn.execute("INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?)",
                     (key, value, at))
    conn.close()
    store = await open_store(path)
    try:
        assert [(r.task_id, r.micros, r.base_micros, r.reserved_at)
                for r in await store.reservations.list()] == [
            ("t-aaa", 2_000_000, 150, 7), ("t-bbb", 5, 0, 11)]
        assert await store.kv.get("budget.ceiling_micros") == 5_000_000
        assert await store.kv.get("budget.reservations") == "not a reservation"
        assert await store.kv.get("budget.reservation.t-aaa") is None
        assert await store.kv.get("budget.reservation.t-bad") is None
    finally:
        await store.close()
