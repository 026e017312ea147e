"""``Store``: the one owner of the database — a single writer plus a read connection."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import aiosqlite

from parhelia.errors import ParheliaError
from parheliad.store.connection import connect_reader
from parheliad.store.rows import EventRow
from parheliad.store.tables.checkpoints import CheckpointRepo
from parheliad.store.tables.containers import ContainerRepo
from parheliad.store.tables.environments import EnvironmentRepo
from parheliad.store.tables.events import EventRepo
from parheliad.store.tables.heartbeats import HeartbeatRepo
from parheliad.store.tables.kv import KvRepo
from parheliad.store.tables.ledger import LedgerRepo
from parheliad.store.tables.orphans import OrphanRepo
from parheliad.store.tables.reservations import ReservationRepo
from parheliad.store.tables.sessions import SessionRepo
from parheliad.store.tables.tasks import TaskRepo
from parheliad.store.writer import Unit, Writer

T = TypeVar("T")


class Store:
    """Typed access to every table.

    Reads (``store.tasks.get`` ...) run on a separate read connection: WAL lets them
    proceed while the writer commits, and they see every write whose call returned.
    Writes go through :meth:`write`; the ``store.<table>`` write helpers are one-unit
    shortcuts. Use ``await store.write(unit)`` with ``async def unit(tx)`` to make
    several changes atomically (e.g. a transition plus its event).
    """

    def __init__(self, path: Path, reader: aiosqlite.Connection, writer: Writer) -> None:
        self.path = path
        self.reader = reader
        self._writer = writer
        self.tasks = TaskRepo(self)
        self.sessions = SessionRepo(self)
        self.containers = ContainerRepo(self)
        self.heartbeats = HeartbeatRepo(self)
        self.checkpoints = CheckpointRepo(self)
        self.events = EventRepo(self)
        self.ledger = LedgerRepo(self)
        self.kv = KvRepo(self)
        self.orphans = OrphanRepo(self)
        self.reservations = ReservationRepo(self)
        self.environments = EnvironmentRepo(self)

    @property
    def writer(self) -> Writer:
        return self._writer

    async def write(self, unit: Unit[T]) -> T:
        """Run ``unit(tx)`` atomically in the next group commit; its result or exception."""
        return await self._writer.submit(unit)

    async def close(self) -> None:
        """Commit what is queued, stop the writer, checkpoint the WAL, close connections."""
        try:
            await self._writer.stop()
        finally:
            await self.reader.close()


class DatabaseRefused(ParheliaError):
    """An existing database that is empty or unreadable: never recreated (it holds the
    task history and the budget ledger), the daemon refuses to start instead."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(
            "E500", f"the database {path} exists but {why}. Parhelia will not recreate it: "
            "that would lose the task history and reset the budget ledger. Recover: restore "
            f"it from a backup; or, to really start over, move it away (`mv {path} "
            f"{path}.damaged`) and start the daemon again.", path=str(path))


def _refuse_damaged(path: Path) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise DatabaseRefused(path, f"cannot be inspected ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise DatabaseRefused(path, "is not a regular file")
    if st.st_size == 0:  # SQLite writes its header when it creates a database
        raise DatabaseRefused(path, "is empty (0 bytes)")
    try:
        with open(path, "rb") as fh:
            header = fh.read(16)
    except OSError as exc:
        raise DatabaseRefused(path, f"cannot be read ({exc.strerror})") from None
    if header != b"SQLite format 3\x00":
        raise DatabaseRefused(path, "is not an SQLite database (wrong header)")


async def open_store(path: Path,
                     on_commit: Callable[[list[EventRow]], None] | None = None) -> Store:
    """Open (creating and migrating) the database at ``path`` and start the writer.

    ``on_commit`` receives the events of each committed transaction, in id order.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _refuse_damaged(path)
    # Created 0600 up front: SQLite gives the -wal/-shm files the database's mode.
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    writer = Writer(path, on_commit=on_commit)
    try:
        await writer.open()
    except sqlite3.DatabaseError as exc:
        raise DatabaseRefused(path, f"cannot be read as SQLite ({exc})") from None
    try:
        reader = await connect_reader(path)
    except BaseException:
        await writer.stop()
        raise
    return Store(path, reader, writer)
