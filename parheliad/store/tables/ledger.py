"""The ledger: one row per cost record, integer micro-dollars."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from parheliad.store import sql
from parheliad.store.clock import now_us
from parheliad.store.rows import LedgerRow

if TYPE_CHECKING:
    from parheliad.store.store import Store
    from parheliad.store.tx import Tx

LEDGER_KINDS = frozenset({"compute", "api", "adjustment"})
_SELECT = f"{sql.select(LedgerRow)} FROM ledger"


def _where(*, since_us: int | None, until_us: int | None, task_id: str | None,
           kind: str | None) -> tuple[str, list[Any]]:
    clauses = ["1 = 1"]
    params: list[Any] = []
    if since_us is not None:
        clauses.append("at >= ?")
        params.append(since_us)
    if until_us is not None:
        clauses.append("at < ?")
        params.append(until_us)
    if task_id:
        clauses.append("task_id = ?")
        params.append(task_id)
    if kind:
        clauses.append("kind = ?")
        params.append(kind)
    return " AND ".join(clauses), params


class LedgerWrites:
    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    def insert(self, kind: str, amount_micros: int, *, task_id: str | None = None,
               container_id: str | None = None, input_tokens: int = 0,
               output_tokens: int = 0, cache_tokens: int = 0, note: str = "",
               at: int | None = None) -> int:
        """Record one cost; returns its id. ``amount_micros`` must be an int."""
        if kind not in LEDGER_KINDS:
            raise ValueError(f"unknown ledger kind {kind!r}")
        if not isinstance(amount_micros, int) or isinstance(amount_micros, bool):
            raise TypeError("amount_micros must be an int (micro-dollars)")
        return sql.insert(self._tx.conn, "ledger", {
            "at": now_us() if at is None else at, "kind": kind, "amount_micros": amount_micros,
            "task_id": task_id, "container_id": container_id, "input_tokens": input_tokens,
            "output_tokens": output_tokens, "cache_tokens": cache_tokens, "note": note})

    def total(self, *, since_us: int | None = None, until_us: int | None = None,
              task_id: str | None = None, kind: str | None = None) -> int:
        where, params = _where(since_us=since_us, until_us=until_us, task_id=task_id, kind=kind)
        return int(sql.scalar(self._tx.conn,
                              f"SELECT COALESCE(SUM(amount_micros), 0) FROM ledger "  # noqa: S608
                              f"WHERE {where}", params) or 0)


class LedgerRepo:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def record(self, kind: str, amount_micros: int, **kwargs: Any) -> int:
        return await self._store.write(
            lambda tx: tx.ledger.insert(kind, amount_micros, **kwargs))

    async def list(self, *, since_us: int | None = None, until_us: int | None = None,
                   task_id: str | None = None, kind: str | None = None,
                   limit: int = 100) -> list[LedgerRow]:
        """Entries newest first."""
        where, params = _where(since_us=since_us, until_us=until_us, task_id=task_id, kind=kind)
        return await sql.amany(self._store.reader, LedgerRow,
                               f"{_SELECT} WHERE {where} ORDER BY at DESC, id DESC LIMIT ?",
                               [*params, max(1, limit)])

    async def total(self, *, since_us: int | None = None, until_us: int | None = None,
                    task_id: str | None = None, kind: str | None = None) -> int:
        """Sum of ``amount_micros`` over the matching entries."""
        where, params = _where(since_us=since_us, until_us=until_us, task_id=task_id, kind=kind)
        return int(await sql.ascalar(self._store.reader,
                                     f"SELECT COALESCE(SUM(amount_micros), 0) FROM ledger "  # noqa: S608
                                     f"WHERE {where}", params) or 0)

    async def totals_by_kind(self, *, since_us: int | None = None) -> dict[str, int]:
        totals = dict.fromkeys(sorted(LEDGER_KINDS), 0)
        for kind, amount in await self._store.reader.execute_fetchall(
                "SELECT kind, COALESCE(SUM(amount_micros), 0) FROM ledger WHERE at >= ? "
                "GROUP BY kind", (since_us or 0,)):
            totals[str(kind)] = int(amount)
        return totals
