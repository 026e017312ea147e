"""The orphans table: owner-tagged containers a backend runs that the database does not own.

One row per ``(backend, backend_id)``; the reconciler upserts it on every sighting.
``state`` is ``present`` while the backend still runs it, then ``terminated`` (we ended
it) or ``gone`` (it vanished by itself).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from parheliad.store import sql
from parheliad.store.clock import now_us
from parheliad.store.rows import OrphanRow

if TYPE_CHECKING:
    from parheliad.store.store import Store
    from parheliad.store.tx import Tx

PRESENT = "present"
TERMINATED = "terminated"
GONE = "gone"
STATES = (PRESENT, TERMINATED, GONE)

_SELECT = f"{sql.select(OrphanRow)} FROM orphans"


class OrphanWrites:
    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    def get(self, backend: str, backend_id: str) -> OrphanRow | None:
        return sql.one(self._tx.conn, OrphanRow,
                       f"{_SELECT} WHERE backend = ? AND backend_id = ?", (backend, backend_id))

    def seen(self, *, backend: str, backend_id: str, container_id: str, known: bool,
             started_at: int | None, cost_micros: int = 0,
             detail: str = "") -> tuple[OrphanRow, bool]:
        """Record a sighting; returns the row and whether it is new (or present again)."""
        now = now_us()
        current = self.get(backend, backend_id)
        if current is None:
            sql.insert(self._tx.conn, "orphans", {
                "backend": backend, "backend_id": backend_id, "container_id": container_id,
                "known": int(known), "state": PRESENT, "first_seen_at": now,
                "last_seen_at": now, "started_at": started_at, "ended_at": None,
                "cost_micros": cost_micros, "detail": detail})
            fresh = True
        else:
            fresh = current.state != PRESENT
            self._tx.conn.execute(
                "UPDATE orphans SET last_seen_at = ?, state = ?, ended_at = NULL, "
                "cost_micros = MAX(cost_micros, ?), known = ?, detail = ? WHERE id = ?",
                (now, PRESENT, cost_micros, int(known), detail or current.detail, current.id))
        row = self.get(backend, backend_id)
        assert row is not None
        return row, fresh

    def end(self, orphan_id: int, state: str) -> None:
        if state not in (TERMINATED, GONE):
            raise ValueError(f"unknown orphan end state {state!r}")
        self._tx.conn.execute("UPDATE orphans SET state = ?, ended_at = ? WHERE id = ?",
                              (state, now_us(), orphan_id))


class OrphanRepo:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def list(self, *, states: tuple[str, ...] = (PRESENT,), limit: int = 1000,
                   unknown_only: bool = False, after: tuple[int, int] | None = None
                   ) -> list[OrphanRow]:
        """Orphans in ``states`` (all when empty), most recently seen first (only those
        the database has no container row for, with ``unknown_only``); ``after`` =
        (last_seen_at, id) of the last one of the previous page."""
        clauses: list[str] = []
        params: list[Any] = []
        if states:
            clauses.append(f"state IN ({', '.join('?' for _ in states)})")
            params.extend(states)
        if unknown_only:
            clauses.append("known = 0")
        if after is not None:
            clause, values = sql.after_newest("last_seen_at", after)
            clauses.append(clause)
            params.extend(values)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return await sql.amany(self._store.reader, OrphanRow,
                               f"{_SELECT}{where} ORDER BY last_seen_at DESC, id LIMIT ?",
                               [*params, max(1, limit)])

    async def count(self, state: str = PRESENT) -> int:
        return int(await sql.ascalar(self._store.reader,
                                     "SELECT COUNT(*) FROM orphans WHERE state = ?",
                                     (state,)) or 0)
