"""``Tx``: what a writer unit sees — the open transaction and per-table write operations."""

from __future__ import annotations

import sqlite3
from functools import cached_property

from parheliad.store.rows import EventRow
from parheliad.store.tables.checkpoints import CheckpointWrites
from parheliad.store.tables.containers import ContainerWrites
from parheliad.store.tables.environments import EnvironmentWrites
from parheliad.store.tables.events import EventWrites
from parheliad.store.tables.heartbeats import HeartbeatWrites
from parheliad.store.tables.kv import KvWrites
from parheliad.store.tables.ledger import LedgerWrites
from parheliad.store.tables.orphans import OrphanWrites
from parheliad.store.tables.reservations import ReservationWrites
from parheliad.store.tables.sessions import SessionWrites
from parheliad.store.tables.tasks import TaskWrites


class Tx:
    """One unit's handle on the write transaction.

    Reads through ``tx.<table>.get`` see the transaction's own uncommitted writes,
    so check-then-write inside one unit is race-free. ``tx.conn`` is there for SQL the
    table modules don't cover; never ``COMMIT``/``ROLLBACK`` on it.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.emitted: list[EventRow] = []
        """Events inserted by this unit; published after commit, dropped on rollback."""

    @cached_property
    def tasks(self) -> TaskWrites:
        return TaskWrites(self)

    @cached_property
    def sessions(self) -> SessionWrites:
        return SessionWrites(self)

    @cached_property
    def containers(self) -> ContainerWrites:
        return ContainerWrites(self)

    @cached_property
    def heartbeats(self) -> HeartbeatWrites:
        return HeartbeatWrites(self)

    @cached_property
    def checkpoints(self) -> CheckpointWrites:
        return CheckpointWrites(self)

    @cached_property
    def events(self) -> EventWrites:
        return EventWrites(self)

    @cached_property
    def ledger(self) -> LedgerWrites:
        return LedgerWrites(self)

    @cached_property
    def kv(self) -> KvWrites:
        return KvWrites(self)

    @cached_property
    def orphans(self) -> OrphanWrites:
        return OrphanWrites(self)

    @cached_property
    def reservations(self) -> ReservationWrites:
        return ReservationWrites(self)

    @cached_property
    def environments(self) -> EnvironmentWrites:
        return EnvironmentWrites(self)
