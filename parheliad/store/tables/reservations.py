"""The budget's reservations: what each running task's dispatch set aside of the
ceiling (docs/adr/0008-budget.md). Written inside the dispatcher's claim unit and the
budget's tick."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import TYPE_CHECKING

from parheliad.store import sql
from parheliad.store.clock import now_us
from parheliad.store.rows import ReservationRow

if TYPE_CHECKING:
    from parheliad.store.store import Store
    from parheliad.store.tx import Tx

_SELECT = f"{sql.select(ReservationRow)} FROM reservations"


class ReservationWrites:
    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    def put(self, task_id: str, micros: int, *, base_micros: int,
            at: int | None = None) -> None:
        """Reserve ``micros`` for ``task_id`` (replacing its earlier reservation)."""
        self._tx.conn.execute(
            "INSERT OR REPLACE INTO reservations (task_id, micros, base_micros, reserved_at) "
            "VALUES (?, ?, ?, ?)", (task_id, micros, base_micros, now_us() if at is None else at))

    def held(self, statuses: Iterable[str], *, exclude: str = "") -> int:
        """The sum of the reservations of tasks in ``statuses`` (but ``exclude``)."""
        wanted = [str(s) for s in statuses]
        return int(self._tx.conn.execute(
            "SELECT COALESCE(SUM(r.micros), 0) FROM reservations r JOIN tasks t ON "  # noqa: S608
            f"t.id = r.task_id WHERE t.status IN ({', '.join('?' * len(wanted))}) AND "
            "r.task_id <> ?", (*wanted, exclude)).fetchone()[0])

    def all(self) -> builtins.list[ReservationRow]:
        return sql.many(self._tx.conn, ReservationRow, f"{_SELECT} ORDER BY task_id")

    def delete(self, task_id: str) -> bool:
        return self._tx.conn.execute("DELETE FROM reservations WHERE task_id = ?",
                                     (task_id,)).rowcount > 0


class ReservationRepo:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def list(self) -> builtins.list[ReservationRow]:
        return await sql.amany(self._store.reader, ReservationRow,
                               f"{_SELECT} ORDER BY task_id")
