"""The single writer: one thread owns the write connection and commits in groups.

Callers submit *units* — plain functions ``def unit(tx: Tx) -> T`` — from the event
loop. The writer task takes every unit queued at that moment (up to ``max_batch``) and
runs them, in one hop to the writer thread, inside one ``BEGIN IMMEDIATE`` transaction,
each in its own ``SAVEPOINT``: a failing unit is rolled back alone and its caller gets
the exception while the others commit. After ``COMMIT`` the callers' futures resolve
and the events the batch inserted go to ``on_commit`` (the event bus), in id order.
While one group commits, new units queue up and form the next group: throughput rises
with load, without any timer.

Units are synchronous on purpose (as datasette's write functions): a unit cannot await
the network while holding the write lock. They must be quick and touch only ``tx``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import structlog

from parheliad.store.connection import connect_writer
from parheliad.store.migrate import migrate
from parheliad.store.rows import EventRow
from parheliad.store.schema import MIGRATIONS, Migration
from parheliad.store.tx import Tx

log = structlog.get_logger(__name__)

T = TypeVar("T")
Unit = Callable[[Tx], T]


class StoreClosed(RuntimeError):
    """The writer has stopped; no more writes are accepted."""


@dataclass
class _Item:
    unit: Unit[Any]
    future: asyncio.Future[Any]


@dataclass
class _Transaction:
    """What one transaction of queued units did: each unit's result, the events they
    appended, whether it committed."""

    results: list[tuple[bool, Any]] = field(default_factory=list)  # (ok, value|exception)
    events: list[EventRow] = field(default_factory=list)
    committed: bool = False


class Writer:
    def __init__(self, path: Path, *, on_commit: Callable[[list[EventRow]], None] | None = None,
                 max_batch: int = 1000) -> None:
        self._path = path
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="parheliad-writer")
        self._conn: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.commits = 0
        """Committed transactions so far (tests assert group commit with it)."""
        self.units = 0
        """Units committed so far."""

    async def open(self, migrations: list[Migration] = MIGRATIONS) -> int:
        """Open the connection in the writer thread, migrate, start the writer task.

        Returns the number of migration steps applied.
        """
        loop = asyncio.get_running_loop()
        self._conn = await loop.run_in_executor(self._executor, connect_writer, self._path)
        try:
            applied = await loop.run_in_executor(self._executor, migrate, self._conn, migrations)
        except BaseException:
            await self._close_conn()
            raise
        self._task = asyncio.create_task(self._run(), name="parheliad-store-writer")
        return applied

    async def submit(self, unit: Unit[T]) -> T:
        """Run ``unit`` in the next group transaction and return its result."""
        if self._closed or self._task is None:
            raise StoreClosed("the store is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Item(unit, future))
        return await future

    async def stop(self) -> None:
        """Accept nothing more, commit everything already queued, close the connection."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._queue.put_nowait(None)
            await self._task
        await self._close_conn()

    async def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            def close() -> None:
                try:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error:
                    log.warning("store.wal_checkpoint_failed")
                conn.close()
            await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        try:
            while not stopping:
                first = await self._queue.get()
                if first is None:
                    break
                batch = [first]
                while len(batch) < self._max_batch:
                    try:
                        item = self._queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    if item is None:
                        stopping = True
                        break
                    batch.append(item)
                units = [item.unit for item in batch]
                try:
                    outcome = await loop.run_in_executor(self._executor, self._transaction,
                                                         units)
                    if not outcome.committed and len(units) > 1:
                        # The transaction itself failed (not one unit): retry each unit
                        # alone so that only the culprit fails.
                        outcomes = [await loop.run_in_executor(
                            self._executor, self._transaction, [unit]) for unit in units]
                    else:
                        outcomes = [outcome]
                except BaseException as exc:  # the writer thread itself is gone
                    for item in batch:
                        if not item.future.done():
                            item.future.set_exception(
                                StoreClosed(f"the store writer failed: {type(exc).__name__}"))
                    raise
                results = [r for o in outcomes for r in o.results]
                for item, (ok, value) in zip(batch, results, strict=True):
                    if item.future.done():
                        continue
                    if ok:
                        item.future.set_result(value)
                    else:
                        item.future.set_exception(value)
                events = [e for o in outcomes if o.committed for e in o.events]
                if events and self._on_commit is not None:
                    try:
                        self._on_commit(events)
                    except Exception:
                        log.exception("store.publish_failed")
        finally:
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if item is not None and not item.future.done():
                    item.future.set_exception(StoreClosed("the store is closed"))

    def _transaction(self, units: list[Unit[Any]]) -> _Transaction:
        """Runs in the writer thread: one transaction, a savepoint per unit."""
        conn = self._conn
        assert conn is not None
        outcome = _Transaction()
        try:
            conn.execute("BEGIN IMMEDIATE")
            for unit in units:
                tx = Tx(conn)
                conn.execute("SAVEPOINT unit")
                try:
                    value = unit(tx)
                except Exception as exc:
                    conn.execute("ROLLBACK TO unit")
                    conn.execute("RELEASE unit")
                    outcome.results.append((False, exc))
                    continue
                conn.execute("RELEASE unit")
                outcome.results.append((True, value))
                outcome.events.extend(tx.emitted)
            conn.execute("COMMIT")
        except Exception as exc:
            log.error("store.transaction_failed", error=type(exc).__name__, units=len(units))
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("store.rollback_failed")
            outcome.results = [(False, exc) for _ in units]
            outcome.events = []
            return outcome
        outcome.committed = True
        self.commits += 1
        self.units += sum(1 for ok, _ in outcome.results if ok)
        return outcome
