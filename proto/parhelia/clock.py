"""Timestamps in the one format every record uses."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> str:
    """RFC 3339 UTC with microseconds, e.g. ``2026-11-28T19:00:00.123456Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
