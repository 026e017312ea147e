"""The containers table: one worker incarnation on one backend.

``state`` changes are checked against the container state machine and ``health``
values against :class:`parheliad.core.states.Health`, in the writer.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from parhelia.errors import ParheliaError
from parheliad.core.states import (
    CONTAINER_FINAL,
    CONTAINER_LIVE,
    ContainerState,
    Health,
    check_container_transition,
)
from parheliad.store import ids, sql
from parheliad.store.clock import now_us
from parheliad.store.rows import ContainerRow, columns

if TYPE_CHECKING:
    from parheliad.store.store import Store
    from parheliad.store.tx import Tx

_COLUMNS = frozenset(columns(ContainerRow))
INSERTABLE = _COLUMNS - {"id", "task_id", "backend", "created_at", "updated_at"}
UPDATABLE = _COLUMNS - {"id", "task_id", "created_at"}
_SELECT = f"{sql.select(ContainerRow)} FROM containers"


class LiveUsage(NamedTuple):
    """A live container's token counts, for the budget's in-flight figure."""

    task_id: str
    model: str
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    api_priced_at_report_micros: int


class ContainerWrites:
    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    def insert(self, *, task_id: str, backend: str, **values: Any) -> ContainerRow:
        """A new container row (state ``created``, health ``unknown`` unless given)."""
        sql.check_fields(values, INSERTABLE, "container")
        now = now_us()
        row = {"id": ids.new_id(ids.CONTAINER), "task_id": task_id, "backend": backend,
               "state": ContainerState.CREATED.value, "health": Health.UNKNOWN.value,
               "created_at": now, "updated_at": now, **values}
        ContainerState(row["state"])
        Health(row["health"])
        sql.insert(self._tx.conn, "containers", row)
        created = self.get(row["id"])
        assert created is not None
        return created

    def get(self, container_id: str) -> ContainerRow | None:
        return sql.one(self._tx.conn, ContainerRow, f"{_SELECT} WHERE id = ?", (container_id,))

    def update(self, container_id: str, **fields: Any) -> ContainerRow:
        """Set columns (E203 if missing); ``state`` changes must be legal (E603)."""
        sql.check_fields(fields, UPDATABLE, "container")
        current = self.get(container_id)
        if current is None:
            raise ids.not_found("E203", "container", container_id)
        if "state" in fields and fields["state"] != current.state:
            check_container_transition(current.state, fields["state"],
                                       container_id=container_id)
        if "health" in fields:
            Health(fields["health"])
        fields.setdefault("updated_at", now_us())
        sql.update(self._tx.conn, "containers", container_id, fields)
        row = self.get(container_id)
        assert row is not None
        return row


    def usage_of_others(self, task_id: str, container_id: str) -> tuple[int, int, int]:
        """(turns, input tokens, output tokens) of the task's containers but this one."""
        row = self._tx.conn.execute(
            "SELECT COALESCE(SUM(turns), 0), COALESCE(SUM(input_tokens), 0), "
            "COALESCE(SUM(output_tokens), 0) FROM containers WHERE task_id = ? AND id <> ?",
            (task_id, container_id)).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    # -- what the budget reads (parheliad.core.budget) ----------------------------------

    def _with_model(self, where: str, params: Iterable[Any]) -> builtins.list[
            tuple[ContainerRow, str]]:
        rows = self._tx.conn.execute(
            f"SELECT {_JOINED}, t.model FROM containers c JOIN tasks t ON t.id = c.task_id "  # noqa: S608
            f"WHERE {where} ORDER BY c.created_at, c.id", tuple(params)).fetchall()
        return [(sql.from_row(ContainerRow, tuple(r[:-1])), str(r[-1] or "")) for r in rows]

    def live_usage(self) -> builtins.list[LiveUsage]:
        """The usage of every live container with its task's model: the few columns the
        budget prices on every booking (no whole rows: this runs for each unit that
        books spend)."""
        rows = self._tx.conn.execute(
            "SELECT c.task_id, t.model, c.input_tokens, c.output_tokens, "  # noqa: S608
            "c.cache_creation_input_tokens, c.cache_read_input_tokens, "
            "c.api_priced_at_report_micros FROM containers c JOIN tasks t ON t.id = c.task_id "
            f"WHERE c.state IN ({_marks(CONTAINER_LIVE)})",
            [s.value for s in CONTAINER_LIVE]).fetchall()
        return [LiveUsage(str(r[0]), str(r[1] or ""), *(int(v) for v in r[2:])) for r in rows]

    def live_of(self, task_id: str) -> builtins.list[ContainerRow]:
        """The task's live containers, oldest first."""
        return sql.many(self._tx.conn, ContainerRow,
                        f"{_SELECT} WHERE task_id = ? AND state IN ({_marks(CONTAINER_LIVE)}) "
                        "ORDER BY created_at, id",
                        [task_id, *(s.value for s in CONTAINER_LIVE)])

    def ended_unreported(self, since_us: int) -> builtins.list[tuple[ContainerRow, str]]:
        """Containers that ended since ``since_us`` having used tokens, whose agent
        reported no cost (no ``agent_result`` record), each with its task's model."""
        return self._with_model(
            f"c.state IN ({_marks(CONTAINER_FINAL)}) AND c.api_cost_micros = 0 AND "  # noqa: S608
            "c.input_tokens + c.output_tokens + c.cache_creation_input_tokens + "
            "c.cache_read_input_tokens > 0 AND c.stopped_at >= ? AND NOT EXISTS (SELECT 1 "
            "FROM events e WHERE e.container_id = c.id AND e.type = 'agent_result')",
            [*(s.value for s in CONTAINER_FINAL), since_us])

    def running_since(self, since_us: int, *, uncorrected: str
                      ) -> builtins.list[ContainerRow]:
        """Containers that started and are live, or ended since ``since_us``, without a
        ledger entry whose note starts with ``uncorrected`` (their backend's own figure)."""
        return sql.many(self._tx.conn, ContainerRow,
                        f"{_SELECT} c WHERE started_at IS NOT NULL AND (state IN "
                        f"({_marks(CONTAINER_LIVE)}) OR stopped_at >= ?) AND NOT {_NOTED} "
                        "ORDER BY created_at, id",
                        [*(s.value for s in CONTAINER_LIVE), since_us, len(uncorrected),
                         uncorrected])

    def ended_between(self, after_us: int, until_us: int, *, excluding_backend: str,
                      uncorrected: str) -> builtins.list[ContainerRow]:
        """Containers that started and ended in (``after_us``, ``until_us``], on another
        backend than ``excluding_backend``, without a ledger entry whose note starts with
        ``uncorrected``; in the order they ended."""
        return sql.many(self._tx.conn, ContainerRow,
                        f"{_SELECT} c WHERE backend <> ? AND started_at IS NOT NULL AND "
                        f"state IN ({_marks(CONTAINER_FINAL)}) AND stopped_at <= ? AND "
                        f"stopped_at > ? AND NOT {_NOTED} ORDER BY stopped_at",
                        [excluding_backend, *(s.value for s in CONTAINER_FINAL), until_us,
                         after_us, len(uncorrected), uncorrected])


def _marks(values: Iterable[object]) -> str:
    return ", ".join("?" for _ in values)


_JOINED = ", ".join(f"c.{name}" for name in columns(ContainerRow))
_NOTED = ("EXISTS (SELECT 1 FROM ledger u WHERE u.container_id = c.id AND "
          "substr(u.note, 1, ?) = ?)")


class ContainerRepo:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, ref: str) -> ContainerRow:
        """The container for a full id or unique prefix, or for a task id (its current or
        latest container); E203 otherwise."""
        if ids.is_task_ref(ref):
            task = await self._store.tasks.get(ref)
            if task.container_id is None:
                raise ParheliaError("E203", f"task {task.id} has no container yet (it has not "
                                            "started)", ref=task.id)
            ref = task.container_id
        return await sql.aget_by_ref(self._store.reader, ContainerRow, "containers", ref,
                                     prefix=ids.CONTAINER, code="E203", noun="container")

    async def find(self, container_id: str) -> ContainerRow | None:
        return await sql.aone(self._store.reader, ContainerRow, f"{_SELECT} WHERE id = ?",
                              (container_id,))

    async def list(self, *, states: Iterable[str] = (), task_id: str | None = None,
                   session_id: str | None = None, backend: str | None = None,
                   health: Iterable[str] = (), limit: int = 1000,
                   after: tuple[int, str] | None = None) -> list[ContainerRow]:
        """Containers newest first, filtered by any of the given fields; ``after`` =
        (created_at, id) of the last one of the previous page."""
        clauses: list[str] = []
        params: list[Any] = []
        for column, wanted in (("state", [ContainerState(s).value for s in states]),
                               ("health", list(health))):
            if wanted:
                clause, values = sql.one_of(column, wanted)
                clauses.append(clause)
                params.extend(values)
        if after is not None:
            clause, values = sql.after_newest("created_at", after)
            clauses.append(clause)
            params.extend(values)
        for column, value in (("task_id", task_id), ("session_id", session_id),
                              ("backend", backend)):
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return await sql.amany(self._store.reader, ContainerRow,
                               f"{_SELECT}{where} ORDER BY created_at DESC, id LIMIT ?",
                               [*params, max(1, limit)])

    async def count_by_session(self, session_ids: builtins.list[str]) -> dict[str, int]:
        return await sql.acount_by(self._store.reader, "containers", "session_id", session_ids)

    async def live(self) -> builtins.list[ContainerRow]:
        """Containers in created, starting or running state."""
        return await self.list(states=[s.value for s in CONTAINER_LIVE])

    async def live_cursors(self) -> builtins.list[tuple[str, str, int]]:
        """``(id, backend, spool_offset)`` of every live container: what a channel pass
        needs, without building a thousand full rows ten times a second."""
        states = [s.value for s in CONTAINER_LIVE]
        rows = await self._store.reader.execute_fetchall(
            f"SELECT id, backend, spool_offset FROM containers WHERE state IN "  # noqa: S608
            f"({', '.join('?' for _ in states)})", states)
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    async def create(self, *, task_id: str, backend: str, **values: Any) -> ContainerRow:
        return await self._store.write(
            lambda tx: tx.containers.insert(task_id=task_id, backend=backend, **values))

    async def update(self, container_id: str, **fields: Any) -> ContainerRow:
        return await self._store.write(lambda tx: tx.containers.update(container_id, **fields))
