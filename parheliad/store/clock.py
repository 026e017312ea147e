"""Time in the store: integer microseconds since the Unix epoch, UTC.

Every timestamp column holds such an integer (``NULL`` when absent). It sorts,
compares and subtracts without parsing, and converts exactly to
``google.protobuf.Timestamp`` and RFC 3339.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

US_PER_SECOND = 1_000_000


def now_us() -> int:
    """The current time in microseconds since the epoch (UTC)."""
    return time.time_ns() // 1_000


def to_datetime(us: int) -> datetime:
    return datetime.fromtimestamp(us / US_PER_SECOND, tz=UTC)


def from_datetime(value: datetime) -> int:
    if value.tzinfo is None:
        raise ValueError("naive datetime: give a timezone")
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * US_PER_SECOND + delta.microseconds


def to_rfc3339(us: int) -> str:
    """``2026-11-28T19:00:00.123456Z``."""
    return to_datetime(us).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
