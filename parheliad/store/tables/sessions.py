"""The sessions table: one long-lived execution of a task (its Claude conversation)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from parhelia.errors import ParheliaError
from parheliad.core.states import SESSION_INITIAL, SessionStatus, check_session_transition
from parheliad.store import ids, sql
from parheliad.store.clock import now_us
from parheliad.store.rows import SessionRow, columns

if TYPE_CHECKING:
    from parheliad.store.store import Store
    from parheliad.store.tx import Tx

UPDATABLE = frozenset(columns(SessionRow)) - {"id", "task_id", "created_at"}
_SELECT = f"{sql.select(SessionRow)} FROM sessions"


class SessionWrites:
    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    def insert(self, task_id: str, *, agent_session_id: str | None = None,
               status: str = SessionStatus.HEADLESS, session_id: str | None = None
               ) -> SessionRow:
        """A new session of ``task_id`` with a fresh conversation UUID unless given.

        ``session_id`` takes an id reserved earlier (a workspace upload is stored under
        the session it will become checkpoint zero of, before the task exists).
        """
        if SessionStatus(status) not in SESSION_INITIAL:
            raise ValueError(f"a session cannot start {status!r}")
        now = now_us()
        session_id = session_id or ids.new_id(ids.SESSION)
        sql.insert(self._tx.conn, "sessions", {
            "id": session_id, "task_id": task_id,
            "agent_session_id": agent_session_id or str(uuid.uuid4()), "status": status,
            "created_at": now, "updated_at": now})
        row = self.get(session_id)
        assert row is not None
        return row

    def get(self, session_id: str) -> SessionRow | None:
        return sql.one(self._tx.conn, SessionRow, f"{_SELECT} WHERE id = ?", (session_id,))

    def update(self, session_id: str, **fields: Any) -> SessionRow:
        """Set columns (E200 if missing); a ``status`` change must be legal (E603,
        :data:`parheliad.core.states.SESSION_TRANSITIONS`); ``updated_at`` is set
        automatically."""
        sql.check_fields(fields, UPDATABLE, "session")
        if "status" in fields:
            current = self.get(session_id)
            if current is None:
                raise ids.not_found("E200", "session", session_id)
            new = SessionStatus(fields["status"]).value
            fields["status"] = new
            if new != current.status:
                check_session_transition(current.status, new, session_id=session_id)
        fields.setdefault("updated_at", now_us())
        if not sql.update(self._tx.conn, "sessions", session_id, fields):
            raise ids.not_found("E200", "session", session_id)
        row = self.get(session_id)
        assert row is not None
        return row


    def ended(self, session_id: str, *, completed: bool) -> SessionRow:
        """Its worker is gone: no container, no TUI, no client; ``completed`` when its task
        completed, else ``stopped`` (a completed session stays completed)."""
        current = self.get(session_id)
        if current is None:
            raise ids.not_found("E200", "session", session_id)
        status = SessionStatus.COMPLETED if completed else SessionStatus.STOPPED
        if current.status == SessionStatus.COMPLETED:
            status = SessionStatus.COMPLETED
        return self.update(session_id, status=status, current_container_id=None,
                           attached_clients=0, tmux_socket="")


class SessionRepo:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, ref: str) -> SessionRow:
        """The session for a full id or unique prefix, or for a task id (its current
        session); E200 otherwise."""
        if ids.is_task_ref(ref):
            task = await self._store.tasks.get(ref)
            if task.session_id is None:
                raise ParheliaError("E200", f"task {task.id} has no session yet (it has not "
                                            "started)", ref=task.id)
            ref = task.session_id
        return await sql.aget_by_ref(self._store.reader, SessionRow, "sessions", ref,
                                     prefix=ids.SESSION, code="E200", noun="session")

    async def find(self, session_id: str) -> SessionRow | None:
        return await sql.aone(self._store.reader, SessionRow, f"{_SELECT} WHERE id = ?",
                              (session_id,))

    async def count(self, *, statuses: tuple[str, ...] = ()) -> int:
        """How many sessions there are (in ``statuses``)."""
        where = f" WHERE status IN ({', '.join('?' for _ in statuses)})" if statuses else ""
        return int(await sql.ascalar(self._store.reader,
                                     f"SELECT COUNT(*) FROM sessions{where}",  # noqa: S608
                                     list(statuses)) or 0)

    async def list(self, *, task_id: str | None = None, statuses: tuple[str, ...] = (),
                   limit: int = 100, after: tuple[int, str] | None = None
                   ) -> list[SessionRow]:
        """Sessions newest first; ``after`` = (created_at, id) of the last one of the
        previous page."""
        clauses: list[str] = []
        params: list[Any] = []
        if task_id:
            clauses.append("task_id = ?")
            params.append(task_id)
        if statuses:
            clauses.append(f"status IN ({', '.join('?' for _ in statuses)})")
            params.extend(statuses)
        if after is not None:
            clause, values = sql.after_newest("created_at", after)
            clauses.append(clause)
            params.extend(values)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return await sql.amany(self._store.reader, SessionRow,
                               f"{_SELECT}{where} ORDER BY created_at DESC, id LIMIT ?",
                               [*params, max(1, limit)])

    async def create(self, task_id: str, **kwargs: Any) -> SessionRow:
        return await self._store.write(lambda tx: tx.sessions.insert(task_id, **kwargs))

    async def update(self, session_id: str, **fields: Any) -> SessionRow:
        return await self._store.write(lambda tx: tx.sessions.update(session_id, **fields))
