"""Apply :data:`parheliad.store.schema.MIGRATIONS` by ``PRAGMA user_version``."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import structlog

from parheliad.store.schema import MIGRATIONS, Migration

log = structlog.get_logger(__name__)


class SchemaTooNew(RuntimeError):
    """The database was written by a newer parheliad than this one."""


def user_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the database up to ``len(migrations)``; return the number of steps applied.

    Each step and its ``user_version`` bump commit together in one ``BEGIN IMMEDIATE``
    transaction: a failing step leaves the database exactly at the previous version.
    Running it again on an up-to-date database does nothing.
    """
    target = len(migrations)
    applied = 0
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = user_version(conn)
            if current > target:
                raise SchemaTooNew(
                    f"database schema version {current} is newer than this parheliad "
                    f"understands ({target}); upgrade parhelia")
            if current == target:
                conn.execute("COMMIT")
                return applied
            step = migrations[current]
            for statement in step.statements:
                conn.execute(statement)
            if step.run is not None:
                step.run(conn)
            conn.execute(f"PRAGMA user_version = {current + 1}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        applied += 1
        log.info("store.migrated", version=current + 1, step=step.name)
