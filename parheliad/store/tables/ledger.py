"""The ledger: one row per cost record, integer micro-dollars."""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from parheliad.store import sql
from parheliad.store.clock import now_us
from parheliad.store.rows import LedgerRow

if TYPE_CHECKING:
    from parheliad.store.store import Store
    from parheliad.store.tx import Tx

LEDGER_KINDS = frozenset({"compute", "api", "adjustment"})
_SELECT = f"{sql.select(LedgerRow)} FROM ledger"
GROUP_BY = ("day", "task")
_GROUP_SQL = {
    "day": ("SELECT strftime('%Y-%m-%d', at / 1000000, 'unixepoch') AS k, {sums} FROM ledger "
            "WHERE at >= ? GROUP BY k ORDER BY k"),
    "task": ("SELECT COALESCE(task_id, '') AS k, {sums} FROM ledger WHERE at >= ? "
             "GROUP BY k ORDER BY SUM(amount_micros) DESC, k"),
}
_SUMS = ("COALESCE(SUM(CASE WHEN kind = 'compute' THEN amount_micros END), 0), "
         "COALESCE(SUM(CASE WHEN kind <> 'compute' THEN amount_micros END), 0), "
         "COALESCE(SUM(amount_micros), 0), COALESCE(SUM(input_tokens), 0), "
         "COALESCE(SUM(output_tokens), 0), "
         "COALESCE(SUM(CASE WHEN substr(note, 1, ?) = ? OR (kind = 'compute' AND NOT "
         "{corrected}) THEN amount_micros END), 0), "
         "COALESCE(SUM(CASE WHEN kind = 'compute' AND NOT {corrected} THEN amount_micros END), "
         "0)")
_CORRECTED = ("EXISTS (SELECT 1 FROM ledger u WHERE u.container_id = ledger.container_id "
              "AND substr(u.note, 1, ?) = ?)")


@dataclass(frozen=True)
class LedgerTotals:
    compute_micros: int
    other_micros: int
    """API spend and adjustments."""
    tasks: int
    input_tokens: int
    output_tokens: int
    cache_tokens: int


@dataclass(frozen=True)
class LedgerGroup:
    """The ledger's entries of one UTC day or one task."""

    key: str
    compute_micros: int
    api_micros: int
    total_micros: int
    input_tokens: int
    output_tokens: int
    estimated_micros: int = 0
    """Of the total: API spend priced from tokens (entries whose note starts with the
    ``estimate_note``), and compute not (yet) replaced by its backend's own figure (no
    entry of its container has a note starting with the ``usage_note``)."""
    estimated_compute_micros: int = 0
    """Of ``estimated_micros``: the compute part."""


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


    def period_totals(self, since_us: int) -> LedgerTotals:
        """What the ledger holds since ``since_us``."""
        row = self._tx.conn.execute(
            "SELECT COALESCE(SUM(CASE WHEN kind = 'compute' THEN amount_micros END), 0), "
            "COALESCE(SUM(CASE WHEN kind <> 'compute' THEN amount_micros END), 0), "
            "COUNT(DISTINCT task_id), COALESCE(SUM(input_tokens), 0), "
            "COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cache_tokens), 0) "
            "FROM ledger WHERE at >= ?", (since_us,)).fetchone()
        return LedgerTotals(*(int(v or 0) for v in row))

    def tasks_among(self, since_us: int, among: Iterable[str]) -> set[str]:
        """Which of the tasks ``among`` have entries since ``since_us``."""
        wanted = sorted(among)
        if not wanted:
            return set()
        rows = self._tx.conn.execute(
            f"SELECT DISTINCT task_id FROM ledger WHERE at >= ? AND task_id IN "  # noqa: S608
            f"({', '.join('?' * len(wanted))})", (since_us, *wanted)).fetchall()
        return {str(r[0]) for r in rows}


    def api_tokens(self, container_id: str) -> tuple[int, int, int]:
        """(input, output, cache) tokens the api entries of ``container_id`` carry."""
        row = self._tx.conn.execute(
            "SELECT COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), "
            "COALESCE(SUM(cache_tokens), 0) FROM ledger WHERE container_id = ? AND "
            "kind = 'api'", (container_id,)).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def has_note(self, container_id: str, prefix: str) -> bool:
        """Whether an entry of ``container_id`` has a note starting with ``prefix``."""
        return sql.scalar(self._tx.conn, "SELECT EXISTS (SELECT 1 FROM ledger WHERE "
                          "container_id = ? AND substr(note, 1, ?) = ?)",
                          (container_id, len(prefix), prefix)) == 1


class LedgerRepo:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def record(self, kind: str, amount_micros: int, **kwargs: Any) -> int:
        return await self._store.write(
            lambda tx: tx.ledger.insert(kind, amount_micros, **kwargs))

    async def list(self, *, since_us: int | None = None, until_us: int | None = None,
                   task_id: str | None = None, kind: str | None = None,
                   limit: int = 100, after: tuple[int, int] | None = None) -> list[LedgerRow]:
        """Entries newest first; ``after`` = (at, id) of the last one of the previous
        page."""
        where, params = _where(since_us=since_us, until_us=until_us, task_id=task_id, kind=kind)
        if after is not None:
            where += " AND (at, id) < (?, ?)"
            params = [*params, *after]
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

    async def grouped(self, by: str, since_us: int, *, estimate_note: str, usage_note: str
                      ) -> builtins.list[LedgerGroup]:
        """Entries since ``since_us`` summed per UTC day (``by="day"``, oldest first) or
        per task (``"task"``, largest first)."""
        if by not in GROUP_BY:
            raise ValueError(f"unknown ledger grouping {by!r}")
        sums = _SUMS.format(corrected=_CORRECTED)
        usage = (len(usage_note), usage_note)
        rows = await self._store.reader.execute_fetchall(
            _GROUP_SQL[by].format(sums=sums),
            (len(estimate_note), estimate_note, *usage, *usage, since_us))
        return [LedgerGroup(str(r[0]), *(int(v) for v in r[1:])) for r in rows]
