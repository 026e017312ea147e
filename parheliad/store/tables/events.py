"""The append-only event log, its filter, and exactly-once worker records."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from parhelia import events as catalogue
from parheliad.store import sql
from parheliad.store.clock import now_us
from parheliad.store.rows import EventRow, dumps

if TYPE_CHECKING:
    from parheliad.store.store import Store
    from parheliad.store.tx import Tx

DEFAULT_LIST_LIMIT = 50
_SELECT = f"{sql.select(EventRow)} FROM events"


@dataclass(frozen=True)
class EventFilter:
    """Which events to return; every empty field means "any".

    Used both as SQL (``list``/``iter_export``) and in memory (the event bus), so a
    watch and a list with the same filter select the same events. ``until_us`` is
    exclusive, ``since_us`` inclusive.
    """

    types: tuple[str, ...] = ()
    min_level: str = ""
    since_us: int | None = None
    until_us: int | None = None
    task_id: str = ""
    session_id: str = ""
    container_id: str = ""
    after_id: int = 0

    def __post_init__(self) -> None:
        if self.min_level and self.min_level not in catalogue.LEVELS:
            raise ValueError(f"unknown level {self.min_level!r}")

    def _levels(self) -> tuple[str, ...]:
        if not self.min_level:
            return ()
        floor = catalogue.level_rank(self.min_level)
        return tuple(lv for lv in catalogue.LEVELS if catalogue.level_rank(lv) >= floor)

    def matches(self, ev: EventRow) -> bool:
        if ev.id <= self.after_id:
            return False
        if self.types and ev.type not in self.types:
            return False
        if self.min_level and ev.level not in self._levels():
            return False
        if self.since_us is not None and ev.at < self.since_us:
            return False
        if self.until_us is not None and ev.at >= self.until_us:
            return False
        return ((not self.task_id or ev.task_id == self.task_id)
                and (not self.session_id or ev.session_id == self.session_id)
                and (not self.container_id or ev.container_id == self.container_id))

    def where(self) -> tuple[str, list[Any]]:
        """A SQL ``WHERE`` clause (never empty) and its parameters."""
        clauses = ["id > ?"]
        params: list[Any] = [self.after_id]
        if self.types:
            clauses.append(f"type IN ({', '.join('?' for _ in self.types)})")
            params.extend(self.types)
        if levels := self._levels():
            clauses.append(f"level IN ({', '.join('?' for _ in levels)})")
            params.extend(levels)
        if self.since_us is not None:
            clauses.append("at >= ?")
            params.append(self.since_us)
        if self.until_us is not None:
            clauses.append("at < ?")
            params.append(self.until_us)
        for column in ("task_id", "session_id", "container_id"):
            if value := getattr(self, column):
                clauses.append(f"{column} = ?")
                params.append(value)
        return " AND ".join(clauses), params


class EventWrites:
    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    def append(self, type: str, message: str = "", *, level: str | None = None,
               task_id: str | None = None, session_id: str | None = None,
               container_id: str | None = None, data: Mapping[str, Any] | None = None,
               at: int | None = None, container_seq: int = 0) -> EventRow | None:
        """Insert one event; returns it, or None if ``(container_id, container_seq)`` exists.

        ``level`` defaults to the catalogue's level for ``type`` (required for types
        outside the catalogue). ``container_seq > 0`` marks a worker record: applied once,
        so a listener does ``if tx.events.append(...) is None: return`` to skip replays.
        The event reaches watchers after the transaction commits, and only then.
        """
        if level is None:
            level = catalogue.kind(type).level.value
        elif level not in catalogue.LEVELS:
            raise ValueError(f"unknown level {level!r}")
        if container_seq and not container_id:
            raise ValueError("container_seq needs a container_id")
        values: dict[str, Any] = {
            "type": type, "level": level, "at": now_us() if at is None else at,
            "task_id": task_id, "session_id": session_id, "container_id": container_id,
            "message": message, "data_json": dumps(data), "container_seq": container_seq,
        }
        cur = self._tx.conn.execute(
            f"INSERT INTO events ({', '.join(values)}) "  # noqa: S608
            f"VALUES ({', '.join('?' for _ in values)}) "
            "ON CONFLICT (container_id, container_seq) WHERE container_seq > 0 DO NOTHING",
            list(values.values()))
        if cur.rowcount == 0:
            return None
        row = EventRow(id=int(cur.lastrowid or 0), **values)
        self._tx.emitted.append(row)
        return row

    def seen(self, container_id: str, container_seq: int) -> bool:
        """Whether the worker record ``(container_id, container_seq)`` was applied."""
        return sql.scalar(self._tx.conn,
                          "SELECT 1 FROM events WHERE container_id = ? AND container_seq = ?",
                          (container_id, container_seq)) is not None


class EventRepo:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def append(self, type: str, message: str = "", **fields: Any) -> EventRow | None:
        """``EventWrites.append`` in a unit of its own."""
        return await self._store.write(lambda tx: tx.events.append(type, message, **fields))

    async def get(self, event_id: int) -> EventRow | None:
        return await sql.aone(self._store.reader, EventRow, f"{_SELECT} WHERE id = ?",
                              (event_id,))

    async def list(self, flt: EventFilter | None = None,
                   limit: int = DEFAULT_LIST_LIMIT, before_id: int | None = None
                   ) -> list[EventRow]:
        """The newest ``limit`` matching events (older than ``before_id``, when given),
        returned oldest first."""
        where, params = (flt or EventFilter()).where()
        if before_id is not None:
            where += " AND id < ?"
            params = [*params, before_id]
        rows = await sql.amany(self._store.reader, EventRow,
                               f"{_SELECT} WHERE {where} ORDER BY id DESC LIMIT ?",
                               [*params, max(1, limit)])
        rows.reverse()
        return rows

    async def iter_export(self, flt: EventFilter | None = None,
                          page: int = 500) -> AsyncIterator[EventRow]:
        """Every matching event, oldest first, read in pages (bounded memory)."""
        flt = flt or EventFilter()
        after = flt.after_id
        while True:
            where, params = replace(flt, after_id=after).where()
            rows = await sql.amany(self._store.reader, EventRow,
                                   f"{_SELECT} WHERE {where} ORDER BY id LIMIT ?",
                                   [*params, page])
            for row in rows:
                yield row
            if len(rows) < page:
                return
            after = rows[-1].id

    async def last_id(self) -> int:
        return int(await sql.ascalar(self._store.reader, "SELECT MAX(id) FROM events") or 0)

    async def count(self, flt: EventFilter | None = None) -> int:
        where, params = (flt or EventFilter()).where()
        return int(await sql.ascalar(self._store.reader,
                                     f"SELECT COUNT(*) FROM events WHERE {where}", params) or 0)  # noqa: S608
