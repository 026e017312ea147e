"""Progress of long calls: the one definition shared by the daemon, the CLI and the
code that does the work (checkpoint restore, snapshot, pull, config sync).

A client that wants to draw a bar tags its call with an operation id in the
``METADATA_KEY`` gRPC metadata and follows ``SystemService.WatchOperation`` with the
same id; the daemon reports ``(done, total)`` through a :data:`Report` callback as the
work proceeds. Pure Python, no dependencies (shipped into the worker image).
"""

from __future__ import annotations

import re
from collections.abc import Callable

METADATA_KEY = "parhelia-operation"
"""gRPC metadata key carrying the client's operation id."""

BYTES = "bytes"
FILES = "files"
UNITS: tuple[str, ...] = (BYTES, FILES)

Report = Callable[[int, int], None]
"""``report(done, total)``: called from any thread as work proceeds (total 0: unknown)."""

_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")


def valid_operation_id(value: str) -> bool:
    """16-64 characters of ``[A-Za-z0-9_-]`` (a client draws one at random)."""
    return _ID.fullmatch(value) is not None


def ignore(done: int, total: int) -> None:
    """The :data:`Report` of a call nobody follows."""
