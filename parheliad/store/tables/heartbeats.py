"""The heartbeats table: raw liveness samples per container."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from parheliad.store import sql
from parheliad.store.clock import now_us
from parheliad.store.rows import HeartbeatRow, dumps

if TYPE_CHECKING:
    from parheliad.store.store import Store
    from parheliad.store.tx import Tx

_SELECT = f"{sql.select(HeartbeatRow)} FROM heartbeats"


class HeartbeatWrites:
    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    def insert(self, container_id: str, *, at: int | None = None,
               cpu_percent: float = 0.0, memory_bytes: int = 0, disk_bytes: int = 0,
               agent_alive: bool = False,
               metrics: Mapping[str, Any] | None = None) -> int:
        """Record one heartbeat (the whole channel ``data`` goes to ``metrics``); its id."""
        return sql.insert(self._tx.conn, "heartbeats", {
            "container_id": container_id, "at": now_us() if at is None else at,
            "cpu_percent": float(cpu_percent), "memory_bytes": int(memory_bytes),
            "disk_bytes": int(disk_bytes), "agent_alive": int(bool(agent_alive)),
            "metrics_json": dumps(metrics)})

    def keep_newest(self, keep: int) -> int:
        """Delete all but the newest ``keep`` heartbeats of every container; the number
        deleted."""
        over = [r[0] for r in self._tx.conn.execute(
            "SELECT container_id FROM heartbeats GROUP BY container_id HAVING COUNT(*) > ?",
            (keep,)).fetchall()]
        deleted = 0
        for cid in over:
            deleted += self._tx.conn.execute(
                "DELETE FROM heartbeats WHERE container_id = ?1 AND id NOT IN ("
                "SELECT id FROM heartbeats WHERE container_id = ?1 "
                "ORDER BY at DESC, id DESC LIMIT ?2)", (cid, keep)).rowcount
        return deleted

    def prune(self, before_us: int) -> int:
        """Delete heartbeats older than ``before_us``; the number deleted."""
        return int(self._tx.conn.execute("DELETE FROM heartbeats WHERE at < ?",
                                         (before_us,)).rowcount)


class HeartbeatRepo:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def latest(self, container_id: str) -> HeartbeatRow | None:
        return await sql.aone(self._store.reader, HeartbeatRow,
                              f"{_SELECT} WHERE container_id = ? ORDER BY at DESC, id DESC "
                              "LIMIT 1", (container_id,))

    async def list(self, container_id: str, *, since_us: int | None = None,
                   limit: int = 100) -> list[HeartbeatRow]:
        """The newest ``limit`` heartbeats of a container, oldest first."""
        rows = await sql.amany(self._store.reader, HeartbeatRow,
                               f"{_SELECT} WHERE container_id = ? AND at >= ? "
                               "ORDER BY at DESC, id DESC LIMIT ?",
                               (container_id, since_us or 0, max(1, limit)))
        rows.reverse()
        return rows

    async def record(self, container_id: str, **kwargs: Any) -> int:
        return await self._store.write(
            lambda tx: tx.heartbeats.insert(container_id, **kwargs))

    async def prune(self, before_us: int) -> int:
        return await self._store.write(lambda tx: tx.heartbeats.prune(before_us))
