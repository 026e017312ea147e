"""The tasks table. Status changes are checked against the task state machine here,
in the writer, so no code path can write an illegal transition."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from parheliad.core.states import TaskStatus, check_task_transition
from parheliad.store import ids, sql
from parheliad.store.clock import now_us
from parheliad.store.rows import TaskRow, columns

if TYPE_CHECKING:
    from parheliad.store.store import Store
    from parheliad.store.tx import Tx

_COLUMNS = frozenset(columns(TaskRow))
INSERTABLE = _COLUMNS - {"id", "seq", "created_at", "updated_at"}
UPDATABLE = _COLUMNS - {"id", "seq", "created_at"}
USAGE_COUNTERS = frozenset({
    "turns", "input_tokens", "output_tokens", "cache_creation_input_tokens",
    "cache_read_input_tokens", "api_cost_micros", "compute_cost_micros", "restarts"})
_SELECT = f"{sql.select(TaskRow)} FROM tasks"


class CappedTask(NamedTuple):
    id: str
    max_cost_micros: int
    booked_micros: int
    """API and compute booked."""
    result_subtype: str
    result_is_error: bool


class TaskWrites:
    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    def insert(self, values: Mapping[str, Any]) -> TaskRow:
        """Insert a task from column values; id, FIFO ``seq`` and timestamps are assigned.

        ``status`` defaults to ``pending``.
        """
        sql.check_fields(values, INSERTABLE, "task")
        conn = self._tx.conn
        now = now_us()
        seq = int(sql.scalar(conn, "SELECT COALESCE(MAX(seq), 0) + 1 FROM tasks") or 1)
        row = {"id": ids.new_id(ids.TASK), "seq": seq, "created_at": now, "updated_at": now,
               "status": TaskStatus.PENDING.value, **values}
        TaskStatus(row["status"])
        sql.insert(conn, "tasks", row)
        return self.require(row["id"])

    def get(self, task_id: str) -> TaskRow | None:
        """The task with exactly this id (seeing this transaction's writes), or None."""
        return sql.one(self._tx.conn, TaskRow, f"{_SELECT} WHERE id = ?", (task_id,))

    def require(self, ref: str) -> TaskRow:
        """The task for a full id or unique prefix; E201 otherwise."""
        row = self.get(ref)
        if row is None:
            row = self.get(sql.resolve_prefix(self._tx.conn, "tasks", ref, prefix=ids.TASK,
                                              code="E201", noun="task"))
        if row is None:
            raise ids.not_found("E201", "task", ref)
        return row

    def update(self, task_id: str, **fields: Any) -> TaskRow:
        """Set columns of one task (E201 if missing); a ``status`` change must be legal (E603).

        ``updated_at`` is set automatically. Prefer :func:`parheliad.core.tasks.transition`
        for status changes: it also appends the event.
        """
        sql.check_fields(fields, UPDATABLE, "task")
        current = self.get(task_id)
        if current is None:
            raise ids.not_found("E201", "task", task_id)
        if "status" in fields and fields["status"] != current.status:
            check_task_transition(current.status, fields["status"], task_id=task_id)
        fields.setdefault("updated_at", now_us())
        sql.update(self._tx.conn, "tasks", task_id, fields)
        row = self.get(task_id)
        assert row is not None
        return row

    def add_usage(self, task_id: str, **deltas: int) -> None:
        """Add to counters (``turns``, tokens, ``*_cost_micros``, ``restarts``) in place."""
        sql.check_fields(deltas, USAGE_COUNTERS, "task usage")
        if deltas:
            sets = ", ".join(f"{k} = {k} + ?" for k in deltas)
            self._tx.conn.execute(f"UPDATE tasks SET {sets}, updated_at = ? WHERE id = ?",  # noqa: S608
                                  [*deltas.values(), now_us(), task_id])

    def delete(self, task_id: str) -> bool:
        """Delete a task with its sessions, containers, heartbeats and checkpoint index.

        Events and ledger entries are kept (history and spend).
        """
        return self._tx.conn.execute("DELETE FROM tasks WHERE id = ?", (task_id,)).rowcount > 0


    def with_status(self, statuses: Iterable[str]) -> builtins.list[TaskRow]:
        """Tasks in any of ``statuses``, oldest first."""
        wanted = [str(s) for s in statuses]
        return sql.many(self._tx.conn, TaskRow,
                        f"{_SELECT} WHERE status IN ({', '.join('?' * len(wanted))}) "
                        "ORDER BY seq", wanted)

    def capped(self, statuses: Iterable[str]) -> builtins.list[CappedTask]:
        """Tasks in ``statuses`` with a ``max_cost``: what their cap is checked on."""
        wanted = [str(s) for s in statuses]
        rows = self._tx.conn.execute(
            "SELECT id, max_cost_micros, api_cost_micros + compute_cost_micros, "  # noqa: S608
            "result_subtype, result_is_error FROM tasks WHERE max_cost_micros > 0 AND "
            f"status IN ({', '.join('?' * len(wanted))}) ORDER BY seq", wanted).fetchall()
        return [CappedTask(str(r[0]), int(r[1]), int(r[2]), str(r[3] or ""), bool(r[4]))
                for r in rows]

    def recount_cost(self, task_id: str, column: str) -> None:
        """Set ``column`` (``api_cost_micros`` or ``compute_cost_micros``) to the sum over
        the task's containers (their ``api_cost_micros`` or ``cost_micros``)."""
        source = _COST_SOURCES[column]
        self._tx.conn.execute(
            f"UPDATE tasks SET {column} = (SELECT COALESCE(SUM({source}), 0) "  # noqa: S608
            "FROM containers WHERE task_id = ?) WHERE id = ?", (task_id, task_id))


    def recount_usage(self, task_id: str) -> None:
        """Set the task's turns, token counts and ``api_cost_micros`` to the sums over its
        containers (each incarnation keeps its own cumulative usage)."""
        self._tx.conn.execute(_RECOUNT_USAGE_SQL, {"t": task_id, "now": now_us()})


_USAGE_SUMMED = ("turns", "input_tokens", "output_tokens", "cache_creation_input_tokens",
                 "cache_read_input_tokens", "api_cost_micros")
_SUMS = ", ".join(f"{c} = (SELECT COALESCE(SUM({c}), 0) FROM containers WHERE task_id = :t)"  # noqa: S608
                  for c in _USAGE_SUMMED)
_RECOUNT_USAGE_SQL = f"UPDATE tasks SET {_SUMS}, updated_at = :now WHERE id = :t"  # noqa: S608
_COST_SOURCES = {"api_cost_micros": "api_cost_micros", "compute_cost_micros": "cost_micros"}


class TaskRepo:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, ref: str) -> TaskRow:
        """The task for a full id or unique prefix; E201 if unknown or ambiguous."""
        return await sql.aget_by_ref(self._store.reader, TaskRow, "tasks", ref,
                                     prefix=ids.TASK, code="E201", noun="task")

    async def find(self, task_id: str) -> TaskRow | None:
        """The task with exactly this id, or None."""
        return await sql.aone(self._store.reader, TaskRow, f"{_SELECT} WHERE id = ?",
                              (task_id,))

    async def list(self, statuses: Iterable[str] = (), limit: int = 100,
                   before_seq: int | None = None) -> list[TaskRow]:
        """Tasks newest first, optionally only those in ``statuses`` and created before
        the task of ``before_seq`` (the next page)."""
        wanted = [TaskStatus(s).value for s in statuses]
        clauses = [f"status IN ({', '.join('?' for _ in wanted)})"] if wanted else []
        params: list[Any] = list(wanted)
        if before_seq is not None:
            clauses.append("seq < ?")
            params.append(before_seq)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return await sql.amany(self._store.reader, TaskRow,
                               f"{_SELECT}{where} ORDER BY seq DESC LIMIT ?",
                               [*params, max(1, limit)])

    async def count(self, statuses: Iterable[str] = ()) -> int:
        """How many tasks there are (in ``statuses``): what a cut ``list`` leaves out."""
        wanted = [TaskStatus(s).value for s in statuses]
        where = f" WHERE status IN ({', '.join('?' for _ in wanted)})" if wanted else ""
        return int(await sql.ascalar(self._store.reader,
                                     f"SELECT COUNT(*) FROM tasks{where}", wanted) or 0)  # noqa: S608

    async def pending(self, limit: int = 100) -> builtins.list[TaskRow]:
        """Pending tasks in FIFO order (oldest first)."""
        return await sql.amany(self._store.reader, TaskRow,
                               f"{_SELECT} WHERE status = ? ORDER BY seq LIMIT ?",
                               (TaskStatus.PENDING.value, max(1, limit)))

    async def needing_user(self, limit: int = 100) -> builtins.list[TaskRow]:
        """Tasks only the user can move on, oldest first: waiting ones (cannot fit the
        budget, paused, held) and completed ones whose result was not saved."""
        return await sql.amany(self._store.reader, TaskRow,
                               f"{_SELECT} WHERE needs_user = 1 AND status IN (?, ?, ?) "
                               "ORDER BY seq LIMIT ?",
                               (TaskStatus.PENDING.value, TaskStatus.PAUSED.value,
                                TaskStatus.COMPLETED.value, max(1, limit)))

    async def count_by_status(self) -> dict[str, int]:
        """Every status (also those with no task) -> count."""
        counts = {s.value: 0 for s in TaskStatus}
        for status, count in await self._store.reader.execute_fetchall(
                "SELECT status, COUNT(*) FROM tasks GROUP BY status"):
            counts[str(status)] = int(count)
        return counts

    async def create(self, values: Mapping[str, Any]) -> TaskRow:
        return await self._store.write(lambda tx: tx.tasks.insert(values))

    async def update(self, task_id: str, **fields: Any) -> TaskRow:
        return await self._store.write(lambda tx: tx.tasks.update(task_id, **fields))

    async def delete(self, task_id: str) -> bool:
        return await self._store.write(lambda tx: tx.tasks.delete(task_id))
