"""Small SQL helpers shared by the table modules (no business rules here).

Plain functions work on the writer's ``sqlite3`` connection (inside a unit); the
``a``-prefixed coroutines work on the ``aiosqlite`` read connection, one thread hop
each (``execute_fetchall``). Identifiers in SQL text come from fixed names or
whitelisted columns (``# noqa: S608``); values are always bound parameters.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

import aiosqlite

from parheliad.store import ids
from parheliad.store.rows import columns, from_row

R = TypeVar("R")


def insert(conn: sqlite3.Connection, table: str, values: Mapping[str, Any]) -> int:
    """INSERT one row; returns ``lastrowid``."""
    names = list(values)
    cur = conn.execute(f"INSERT INTO {table} ({', '.join(names)}) "  # noqa: S608
                       f"VALUES ({', '.join('?' for _ in names)})",
                       [values[n] for n in names])
    return int(cur.lastrowid or 0)


def update(conn: sqlite3.Connection, table: str, key: str, values: Mapping[str, Any]) -> int:
    """UPDATE the row with ``id = key``; returns the number of rows changed."""
    if not values:
        return 0
    sets = ", ".join(f"{name} = ?" for name in values)
    cur = conn.execute(f"UPDATE {table} SET {sets} WHERE id = ?", [*values.values(), key])  # noqa: S608
    return int(cur.rowcount)


def one(conn: sqlite3.Connection, cls: type[R], sql: str, params: Sequence[Any] = ()) -> R | None:
    row = conn.execute(sql, params).fetchone()
    return None if row is None else from_row(cls, row)


def many(conn: sqlite3.Connection, cls: type[R], sql: str,
         params: Sequence[Any] = ()) -> list[R]:
    return [from_row(cls, r) for r in conn.execute(sql, params).fetchall()]


def scalar(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


def resolve_prefix(conn: sqlite3.Connection, table: str, ref: str, *, prefix: str, code: str,
                   noun: str) -> str:
    """The full id for ``ref`` (full id or unique prefix); raises ``code`` otherwise."""
    pattern = ids.prefix_pattern(ref, prefix)
    if pattern is None:
        raise ids.not_found(code, noun, ref)
    found = [r[0] for r in conn.execute(
        f"SELECT id FROM {table} WHERE id LIKE ? ORDER BY id LIMIT ?",  # noqa: S608
        (pattern, ids.CANDIDATES + 1)).fetchall()]
    if len(found) != 1:
        raise ids.not_found(code, noun, ref, candidates=[str(f) for f in found])
    return str(found[0])


async def aone(conn: aiosqlite.Connection, cls: type[R], sql: str,
               params: Sequence[Any] = ()) -> R | None:
    rows = list(await conn.execute_fetchall(sql, params))
    return from_row(cls, rows[0]) if rows else None


async def amany(conn: aiosqlite.Connection, cls: type[R], sql: str,
                params: Sequence[Any] = ()) -> list[R]:
    return [from_row(cls, r) for r in await conn.execute_fetchall(sql, params)]


async def ascalar(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    rows = list(await conn.execute_fetchall(sql, params))
    return rows[0][0] if rows else None


def one_of(column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
    """``column IN (?, ...)`` and its parameters (``values`` must not be empty)."""
    return f"{column} IN ({', '.join('?' for _ in values)})", list(values)


def after_newest(column: str, after: tuple[Any, Any]) -> tuple[str, list[Any]]:
    """The clause (and its parameters) of the rows after ``after`` = (``column``, id) in
    an ``ORDER BY column DESC, id`` list: the next page's rows."""
    return f"({column} < ? OR ({column} = ? AND id > ?))", [after[0], after[0], after[1]]


async def acount_by(conn: aiosqlite.Connection, table: str, column: str,
                    values: Sequence[str]) -> dict[str, int]:
    """Rows of ``table`` per value of ``column``, for ``values`` (absent: none)."""
    if not values:
        return {}
    marks = ", ".join("?" for _ in values)
    rows = await conn.execute_fetchall(
        f"SELECT {column}, COUNT(*) FROM {table} WHERE {column} IN ({marks}) "  # noqa: S608
        f"GROUP BY {column}", list(values))
    return {str(value): int(count) for value, count in rows}


async def aresolve_prefix(conn: aiosqlite.Connection, table: str, ref: str, *, prefix: str,
                          code: str, noun: str) -> str:
    pattern = ids.prefix_pattern(ref, prefix)
    if pattern is None:
        raise ids.not_found(code, noun, ref)
    found = [r[0] for r in await conn.execute_fetchall(
        f"SELECT id FROM {table} WHERE id LIKE ? ORDER BY id LIMIT ?",  # noqa: S608
        (pattern, ids.CANDIDATES + 1))]
    if len(found) != 1:
        raise ids.not_found(code, noun, ref, candidates=[str(f) for f in found])
    return str(found[0])


async def aget_by_ref(conn: aiosqlite.Connection, cls: type[R], table: str, ref: str, *,
                      prefix: str, code: str, noun: str) -> R:
    """The row for a full id or unique prefix; raises ``code`` (E2xx) otherwise."""
    query = f"{select(cls)} FROM {table} WHERE id = ?"
    row = await aone(conn, cls, query, (ref,))
    if row is None:
        full = await aresolve_prefix(conn, table, ref, prefix=prefix, code=code, noun=noun)
        row = await aone(conn, cls, query, (full,))
        if row is None:
            raise ids.not_found(code, noun, ref)
    return row


def select(cls: type) -> str:
    return "SELECT " + ", ".join(columns(cls))


def check_fields(fields: Iterable[str], allowed: frozenset[str], noun: str) -> None:
    bad = sorted(set(fields) - allowed)
    if bad:
        raise ValueError(f"cannot set {noun} field(s) {', '.join(bad)}")
