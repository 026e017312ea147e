"""Every filter combination of `events list` (and export, and the watch's in-memory
match) agrees with a plain SQL query written independently over the same data."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parhelia import events as catalogue
from parhelia.v1 import common_pb2
from parheliad.api.convert import filter_from_proto
from parheliad.store import EventFilter, Tx, open_store

TYPES = ("task_created", "container_lost", "health_changed", "agent_tool_use",
         "checkpoint_created", "state_drift")
TASKS = ("t-aaaaaaaaaaaa", "t-bbbbbbbbbbbb", None)
SESSIONS = ("s-aaaaaaaaaaaa", "s-bbbbbbbbbbbb", None)
CONTAINERS = ("c-aaaaaaaaaaaa", "c-bbbbbbbbbbbb", "c-cccccccccccc", None)
T0 = 1_790_000_000_000_000
SPAN = 10_000_000_000  # 10 000 s of events
N = 600
RANK = {"debug": 10, "info": 20, "warning": 30, "error": 40}


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("filters") / "events.db"
    rng = random.Random(6)

    def unit(tx: Tx) -> None:
        for _ in range(N):
            tx.events.append(rng.choice(TYPES), "m", level=rng.choice(catalogue.LEVELS),
                             task_id=rng.choice(TASKS), session_id=rng.choice(SESSIONS),
                             container_id=rng.choice(CONTAINERS),
                             at=T0 + rng.randrange(SPAN))

    async def seed() -> None:
        store = await open_store(path)
        await store.write(unit)
        await store.close()

    asyncio.run(seed())
    return path


def plain_query(conn: sqlite3.Connection, *, types: list[str], level: str,
                since: int | None, until: int | None, task: str, session: str,
                container: str) -> list[int]:
    """The reference: a hand-written query, nothing shared with the store's filter."""
    sql = ("SELECT id FROM events WHERE (CASE level WHEN 'debug' THEN 10 WHEN 'info' THEN 20 "
           "WHEN 'warning' THEN 30 WHEN 'error' THEN 40 END) >= ?")
    params: list[object] = [RANK[level] if level else 0]
    if types:
        sql += " AND type IN (" + ",".join("?" * len(types)) + ")"
        params += types
    if since is not None:
        sql += " AND at >= ?"
        params.append(since)
    if until is not None:
        sql += " AND at < ?"
        params.append(until)
    for column, value in (("task_id", task), ("session_id", session),
                          ("container_id", container)):
        if value:
            sql += f" AND {column} = ?"
            params.append(value)
    return [r[0] for r in conn.execute(sql + " ORDER BY id", params)]


def _ts(us: int) -> Timestamp:
    ts = Timestamp()
    ts.FromMicroseconds(us)
    return ts


ids = st.one_of(st.just(""), st.sampled_from([x for x in (*TASKS, *SESSIONS, *CONTAINERS)
                                                if x]), st.just("x-nothing"))
instants = st.one_of(st.none(), st.integers(T0 - 1000, T0 + SPAN + 1000))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(types=st.lists(st.sampled_from(TYPES), max_size=3, unique=True),
       level=st.sampled_from(("", *catalogue.LEVELS)), since=instants, until=instants,
       task=ids, session=ids, container=ids, limit=st.integers(1, 700))
def test_list_export_and_watch_match_agree_with_plain_sql(
        db: Path, types: list[str], level: str, since: int | None, until: int | None,
        task: str, session: str, container: str, limit: int) -> None:
    if since is not None and until is not None and until < since:
        since, until = until, since
    msg = common_pb2.EventFilter(types=types, min_level=level, task_id=task,
                                 session_id=session, container_id=container)
    if since is not None:
        msg.since.CopyFrom(_ts(since))
    if until is not None:
        msg.until.CopyFrom(_ts(until))
    flt = filter_from_proto(msg)  # the API's validation and conversion

    conn = sqlite3.connect(db)
    try:
        expected = plain_query(conn, types=types, level=level, since=since, until=until,
                               task=task, session=session, container=container)
    finally:
        conn.close()

    async def check() -> tuple[list[int], list[int], int, list[int]]:
        store = await open_store(db)
        try:
            listed = [e.id for e in await store.events.list(flt, limit=limit)]
            exported = [e.id async for e in store.events.iter_export(flt, page=37)]
            counted = await store.events.count(flt)
            everything = await store.events.list(EventFilter(), limit=N)
            matched = [e.id for e in everything if flt.matches(e)]
            return listed, exported, counted, matched
        finally:
            await store.close()

    listed, exported, counted, matched = asyncio.run(check())
    assert listed == expected[-limit:]  # the newest `limit`, oldest first
    assert exported == expected
    assert counted == len(expected)
    assert matched == expected  # what a watch with this filter would let through
