"""Opening SQLite connections with the pragmas every connection needs.

The writer uses a plain ``sqlite3`` connection owned by its own thread (a whole
group transaction runs in one hop to that thread); readers use ``aiosqlite``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite

BUSY_TIMEOUT_MS = 5_000
_PRAGMAS = (
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
)


def connect_writer(path: Path | str) -> sqlite3.Connection:
    """The write connection: WAL, ``synchronous=NORMAL``, ``busy_timeout``, foreign keys.

    ``isolation_level=None``: the writer issues ``BEGIN IMMEDIATE``/``COMMIT`` itself,
    so Python's sqlite3 never opens or commits transactions behind its back.
    """
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode = WAL")
        for pragma in _PRAGMAS:
            conn.execute(pragma)
    except BaseException:
        conn.close()
        raise
    return conn


async def connect_reader(path: Path | str) -> aiosqlite.Connection:
    """A read-only (``query_only``) connection with the same pragmas."""
    conn = await aiosqlite.connect(str(path), isolation_level=None)
    try:
        conn.row_factory = aiosqlite.Row
        for pragma in _PRAGMAS:
            await conn.execute(pragma)
        await conn.execute("PRAGMA query_only = ON")
    except BaseException:
        await conn.close()
        raise
    return conn
