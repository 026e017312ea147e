"""The checkpoint index (the manifests themselves live on the volume)."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from parheliad.store import ids, sql
from parheliad.store.clock import now_us
from parheliad.store.rows import CheckpointRow, dumps

if TYPE_CHECKING:
    from parheliad.store.store import Store
    from parheliad.store.tx import Tx

_SELECT = f"{sql.select(CheckpointRow)} FROM checkpoints"


class CheckpointWrites:
    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    def insert(self, *, session_id: str, trigger: str, checkpoint_id: str | None = None,
               container_id: str = "", parent_id: str = "", message: str = "",
               created_at: int | None = None, files: int = 0, bytes: int = 0,
               new_bytes: int = 0, duration_ms: int = 0,
               environment: Mapping[str, Any] | None = None,
               git: Mapping[str, Any] | None = None, config_bundle_id: str = "",
               manual: bool = False) -> CheckpointRow:
        """Index a checkpoint; the worker's id is kept when given (idempotent on it)."""
        cp_id = checkpoint_id or ids.new_id(ids.CHECKPOINT)
        self._tx.conn.execute(
            "INSERT INTO checkpoints (id, session_id, container_id, parent_id, trigger, "
            "message, created_at, files, bytes, new_bytes, duration_ms, environment_json, "
            "git_json, config_bundle_id, manual) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT (id) DO NOTHING",
            (cp_id, session_id, container_id, parent_id, trigger, message,
             now_us() if created_at is None else created_at, files, bytes, new_bytes,
             duration_ms, dumps(environment), dumps(git), config_bundle_id, int(manual)))
        row = sql.one(self._tx.conn, CheckpointRow, f"{_SELECT} WHERE id = ?", (cp_id,))
        assert row is not None
        return row

    def delete(self, checkpoint_ids: Iterable[str]) -> int:
        wanted = list(checkpoint_ids)
        if not wanted:
            return 0
        return int(self._tx.conn.execute(
            f"DELETE FROM checkpoints WHERE id IN ({', '.join('?' for _ in wanted)})",  # noqa: S608
            wanted).rowcount)


class CheckpointRepo:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, ref: str) -> CheckpointRow:
        """The checkpoint for a full id or unique prefix; E202 otherwise."""
        return await sql.aget_by_ref(self._store.reader, CheckpointRow, "checkpoints", ref,
                                     prefix=ids.CHECKPOINT, code="E202", noun="checkpoint")

    async def find(self, checkpoint_id: str) -> CheckpointRow | None:
        return await sql.aone(self._store.reader, CheckpointRow, f"{_SELECT} WHERE id = ?",
                              (checkpoint_id,))

    async def list(self, session_id: str | None = None, limit: int = 100,
                   after: tuple[int, str] | None = None) -> list[CheckpointRow]:
        """Checkpoints newest first, of one session or of all; ``after`` = (created_at,
        id) of the last one of the previous page."""
        clauses: list[str] = ["session_id = ?"] if session_id else []
        params: list[Any] = [session_id] if session_id else []
        if after is not None:
            clauses.append("(created_at, id) < (?, ?)")
            params.extend(after)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return await sql.amany(self._store.reader, CheckpointRow,
                               f"{_SELECT}{where} ORDER BY created_at DESC, id DESC LIMIT ?",
                               [*params, max(1, limit)])

    async def count(self, session_id: str | None = None) -> int:
        """How many checkpoints there are (of one session, or of all)."""
        where, params = (" WHERE session_id = ?", [session_id]) if session_id else ("", [])
        return int(await sql.ascalar(self._store.reader,
                                     f"SELECT COUNT(*) FROM checkpoints{where}",  # noqa: S608
                                     params) or 0)

    async def count_by_session(self, session_ids: builtins.list[str]) -> dict[str, int]:
        return await sql.acount_by(self._store.reader, "checkpoints", "session_id",
                                   session_ids)

    async def latest(self, session_id: str) -> CheckpointRow | None:
        rows = await self.list(session_id, limit=1)
        return rows[0] if rows else None

    async def add(self, **kwargs: Any) -> CheckpointRow:
        return await self._store.write(lambda tx: tx.checkpoints.insert(**kwargs))

    async def delete(self, checkpoint_ids: Iterable[str]) -> int:
        wanted = list(checkpoint_ids)
        return await self._store.write(lambda tx: tx.checkpoints.delete(wanted))
