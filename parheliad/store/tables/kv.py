"""Daemon settings that must survive restarts (budget ceiling, instance id...), as JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from parheliad.store import sql
from parheliad.store.clock import now_us

if TYPE_CHECKING:
    from parheliad.store.store import Store
    from parheliad.store.tx import Tx


class KvWrites:
    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    def get(self, key: str, default: Any = None) -> Any:
        text = sql.scalar(self._tx.conn, "SELECT value FROM kv WHERE key = ?", (key,))
        return default if text is None else json.loads(text)

    def set(self, key: str, value: Any) -> None:
        self._tx.conn.execute(
            "INSERT INTO kv (key, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at",
            (key, json.dumps(value), now_us()))

    def delete(self, key: str) -> bool:
        return self._tx.conn.execute("DELETE FROM kv WHERE key = ?", (key,)).rowcount > 0


class KvRepo:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def get(self, key: str, default: Any = None) -> Any:
        text = await sql.ascalar(self._store.reader, "SELECT value FROM kv WHERE key = ?",
                                 (key,))
        return default if text is None else json.loads(text)

    async def set(self, key: str, value: Any) -> None:
        await self._store.write(lambda tx: tx.kv.set(key, value))

    async def delete(self, key: str) -> bool:
        return await self._store.write(lambda tx: tx.kv.delete(key))

    async def get_or_create(self, key: str, factory: Callable[[], Any]) -> Any:
        """The value of ``key``, setting it to ``factory()`` first if absent (atomic)."""
        def unit(tx: Tx) -> Any:
            value = tx.kv.get(key)
            if value is None:
                value = factory()
                tx.kv.set(key, value)
            return value
        return await self._store.write(unit)
