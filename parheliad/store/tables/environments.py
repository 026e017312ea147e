"""Environments' images, prepared filesystems (warm starts) and dependency caches, per
backend (docs/adr/0050-environments.md). What is here is a cache of what a backend holds:
losing a row costs a rebuild, never work."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING

from parheliad.store import sql
from parheliad.store.clock import now_us
from parheliad.store.rows import EnvironmentCacheRow, EnvironmentImageRow, EnvironmentSnapshotRow

if TYPE_CHECKING:
    from parheliad.store.store import Store
    from parheliad.store.tx import Tx

IMAGE_BUILDING = "building"
IMAGE_BUILT = "built"
IMAGE_FAILED = "failed"

_IMAGES = f"{sql.select(EnvironmentImageRow)} FROM environment_images"
_SNAPSHOTS = f"{sql.select(EnvironmentSnapshotRow)} FROM environment_snapshots"
_CACHES = f"{sql.select(EnvironmentCacheRow)} FROM environment_caches"


class EnvironmentWrites:
    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    def image(self, image_hash: str, backend: str) -> EnvironmentImageRow | None:
        return sql.one(self._tx.conn, EnvironmentImageRow,
                       f"{_IMAGES} WHERE image_hash = ? AND backend = ?", (image_hash, backend))

    def image_building(self, image_hash: str, backend: str, description: str) -> None:
        self._tx.conn.execute(
            "INSERT INTO environment_images (image_hash, backend, status, description, "
            "started_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (image_hash, backend) DO UPDATE "
            "SET status = excluded.status, started_at = excluded.started_at, error = '', "
            "description = excluded.description",
            (image_hash, backend, IMAGE_BUILDING, description, now_us()))

    def image_done(self, image_hash: str, backend: str, *, image_id: str = "",
                   error: str = "", build_ms: int = 0) -> None:
        now = now_us()
        self._tx.conn.execute(
            "UPDATE environment_images SET status = ?, image_id = ?, error = ?, "
            "built_at = ?, build_ms = ?, last_used_at = ? WHERE image_hash = ? AND backend = ?",
            (IMAGE_FAILED if error else IMAGE_BUILT, image_id, error[:2000],
             None if error else now, build_ms, now, image_hash, backend))

    def image_used(self, image_hash: str, backend: str) -> None:
        self._tx.conn.execute("UPDATE environment_images SET last_used_at = ? WHERE "
                              "image_hash = ? AND backend = ?", (now_us(), image_hash, backend))

    def delete_image(self, image_hash: str, backend: str) -> None:
        self._tx.conn.execute("DELETE FROM environment_images WHERE image_hash = ? AND "
                              "backend = ?", (image_hash, backend))

    def snapshot(self, environment_hash: str, base: str, backend: str
                 ) -> EnvironmentSnapshotRow | None:
        return sql.one(self._tx.conn, EnvironmentSnapshotRow,
                       f"{_SNAPSHOTS} WHERE environment_hash = ? AND base = ? AND backend = ?",
                       (environment_hash, base, backend))

    def put_snapshot(self, environment_hash: str, base: str, backend: str, image_id: str,
                     *, container_id: str, ttl_us: int) -> None:
        now = now_us()
        self._tx.conn.execute(
            "INSERT OR REPLACE INTO environment_snapshots (environment_hash, base, backend, "
            "image_id, container_id, created_at, expires_at, last_used_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (environment_hash, base, backend, image_id, container_id, now, now + ttl_us, now))

    def snapshot_used(self, environment_hash: str, base: str, backend: str) -> None:
        self._tx.conn.execute(
            "UPDATE environment_snapshots SET last_used_at = ? WHERE environment_hash = ? "
            "AND base = ? AND backend = ?", (now_us(), environment_hash, base, backend))

    def delete_snapshot(self, environment_hash: str, base: str, backend: str) -> None:
        self._tx.conn.execute("DELETE FROM environment_snapshots WHERE environment_hash = ? "
                              "AND base = ? AND backend = ?", (environment_hash, base, backend))

    def cache_used(self, name: str, backend: str, repository: str) -> None:
        now = now_us()
        self._tx.conn.execute(
            "INSERT INTO environment_caches (name, backend, repository, created_at, "
            "last_used_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (name, backend) DO UPDATE "
            "SET last_used_at = excluded.last_used_at", (name, backend, repository, now, now))

    def delete_cache(self, name: str, backend: str) -> None:
        self._tx.conn.execute("DELETE FROM environment_caches WHERE name = ? AND backend = ?",
                              (name, backend))


class EnvironmentRepo:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def image(self, image_hash: str, backend: str) -> EnvironmentImageRow | None:
        return await sql.aone(self._store.reader, EnvironmentImageRow,
                              f"{_IMAGES} WHERE image_hash = ? AND backend = ?",
                              (image_hash, backend))

    async def images(self) -> builtins.list[EnvironmentImageRow]:
        return await sql.amany(self._store.reader, EnvironmentImageRow,
                               f"{_IMAGES} ORDER BY started_at DESC")

    async def snapshot(self, environment_hash: str, base: str, backend: str
                       ) -> EnvironmentSnapshotRow | None:
        return await sql.aone(self._store.reader, EnvironmentSnapshotRow,
                              f"{_SNAPSHOTS} WHERE environment_hash = ? AND base = ? AND "
                              "backend = ?", (environment_hash, base, backend))

    async def snapshots(self) -> builtins.list[EnvironmentSnapshotRow]:
        return await sql.amany(self._store.reader, EnvironmentSnapshotRow,
                               f"{_SNAPSHOTS} ORDER BY created_at DESC")

    async def caches(self) -> builtins.list[EnvironmentCacheRow]:
        return await sql.amany(self._store.reader, EnvironmentCacheRow,
                               f"{_CACHES} ORDER BY created_at DESC")
