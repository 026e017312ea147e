"""The SQLite store: schema and migrations, one writer with group commit, typed tables.

Public surface: :func:`open_store`, :class:`Store`, :class:`Tx`, the row dataclasses
and :class:`EventFilter`. See docs/adr/0001-store-single-writer.md.
"""

from parheliad.store.rows import (
    CheckpointRow,
    ContainerRow,
    EventRow,
    HeartbeatRow,
    LedgerRow,
    SessionRow,
    TaskRow,
)
from parheliad.store.store import Store, open_store
from parheliad.store.tables.events import EventFilter
from parheliad.store.tx import Tx
from parheliad.store.writer import StoreClosed, Unit

__all__ = [
    "CheckpointRow",
    "ContainerRow",
    "EventFilter",
    "EventRow",
    "HeartbeatRow",
    "LedgerRow",
    "SessionRow",
    "Store",
    "StoreClosed",
    "TaskRow",
    "Tx",
    "Unit",
    "open_store",
]
