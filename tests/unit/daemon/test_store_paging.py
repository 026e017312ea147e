"""Keyset pages of every list the API answers (tasks, sessions, checkpoints, containers,
ledger, orphans, events): following the pages gives every row once, in the list's own
order, even when many rows share a timestamp; rows added meanwhile shift nothing; and
the page tokens (parheliad/api/paging.py) are read strictly."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from parhelia.errors import ParheliaError
from parheliad.api import paging
from parheliad.store import Store, Tx

TASK = dict(prompt="p", cpu=1.0, memory_mb=1024, timeout_seconds=60, max_turns=5,
            permission_mode="acceptEdits", backend="local")
N = 23


async def pages(read: Callable[[int, Any], Awaitable[list[Any]]],
                key: Callable[[Any], Any], size: int = 4) -> list[Any]:
    """Every row, page by page (``read(limit, after)``), as the API reads them."""
    out: list[Any] = []
    after = None
    while True:
        rows = await read(size + 1, after)
        out.extend(rows[:size])
        if len(rows) <= size:
            return out
        after = key(rows[size - 1])


async def populate(store: Store) -> dict[str, Any]:
    tasks = [await store.tasks.create({**TASK, "prompt": str(i)}) for i in range(N)]

    def rows(tx: Tx) -> dict[str, Any]:
        sessions = [tx.sessions.insert(t.id) for t in tasks]
        for s in sessions:
            tx.containers.insert(task_id=s.task_id, backend="local", session_id=s.id)
            tx.checkpoints.insert(session_id=s.id, trigger="turn")
            tx.ledger.insert("api", 10, task_id=s.task_id, at=1_000)
            tx.orphans.seen(backend="local", backend_id=f"b-{s.id}", container_id="",
                            known=False, started_at=None)
            tx.events.append("task_created", task_id=s.task_id)
        # Ties everywhere: only three distinct timestamps per table.
        for table, column in (("sessions", "created_at"), ("containers", "created_at"),
                              ("checkpoints", "created_at"), ("orphans", "last_seen_at")):
            tx.conn.execute(f"UPDATE {table} SET {column} = 1000 + (rowid % 3)")  # noqa: S608
        return {"sessions": sessions}

    return await store.write(rows)


async def test_every_list_pages_through_all_rows_once(store: Store) -> None:
    await populate(store)
    cases: list[tuple[str, Callable[[int, Any], Awaitable[list[Any]]],
                      Callable[[Any], Any]]] = [
        ("tasks", lambda n, a: store.tasks.list(limit=n, before_seq=a),
         lambda r: r.seq),
        ("sessions", lambda n, a: store.sessions.list(limit=n, after=a),
         lambda r: (r.created_at, r.id)),
        ("checkpoints", lambda n, a: store.checkpoints.list(limit=n, after=a),
         lambda r: (r.created_at, r.id)),
        ("containers", lambda n, a: store.containers.list(limit=n, after=a),
         lambda r: (r.created_at, r.id)),
        ("ledger", lambda n, a: store.ledger.list(limit=n, after=a),
         lambda r: (r.at, r.id)),
        ("orphans", lambda n, a: store.orphans.list(limit=n, after=a, unknown_only=True),
         lambda r: (r.last_seen_at, r.id)),
    ]
    for name, read, key in cases:
        whole = await read(1000, None)
        assert len(whole) == N, name
        assert [key(r) for r in await pages(read, key)] == [key(r) for r in whole], name


async def test_events_page_backwards_from_the_newest(store: Store) -> None:
    await populate(store)
    newest = await store.events.list(limit=5)
    older = await store.events.list(limit=5, before_id=newest[0].id)
    assert [e.id for e in older] == list(range(newest[0].id - 5, newest[0].id))


async def test_rows_added_meanwhile_shift_no_page(store: Store) -> None:
    await populate(store)
    first = await store.tasks.list(limit=5)
    for i in range(3):
        await store.tasks.create({**TASK, "prompt": f"late {i}"})
    second = await store.tasks.list(limit=5, before_seq=first[-1].seq)
    assert second[0].seq == first[-1].seq - 1


def test_tokens_round_trip_and_are_read_strictly() -> None:
    page = paging.page("sessions", 7, paging.token("sessions", (1000, "s-abc")),
                       shape=(int, str))
    assert (page.limit, page.after) == (7, (1000, "s-abc"))
    assert paging.page("tasks", 0, "", shape=(int,)).limit == paging.DEFAULT_LIMIT
    bad = [paging.token("tasks", (5,)),          # another list's
           paging.token("sessions", ("x", "s")),  # a key of the wrong types
           paging.token("sessions", (True, "s")),
           "not base64 !", "e30", "A" * 600]
    for value in bad:
        with pytest.raises(ParheliaError) as caught:
            paging.page("sessions", 0, value, shape=(int, str))
        assert caught.value.code == "E101"
    for limit in (-1, paging.MAX_LIMIT + 1):
        with pytest.raises(ParheliaError):
            paging.page("tasks", limit, "", shape=(int,))


def test_a_page_says_when_there_is_more() -> None:
    page = paging.Page("tasks", 3, None)
    sent, token = page.answer([5, 4, 3, 2], lambda r: (r,))
    assert sent == [5, 4, 3] and paging.page("tasks", 3, token, shape=(int,)).after == (3,)
    assert page.answer([5, 4, 3], lambda r: (r,)) == ([5, 4, 3], "")
