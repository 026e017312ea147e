"""Parsing of the human forms users type: durations, instants, sizes and money.

Pure functions raising ``ValueError`` with a message that names what is accepted;
the Click parameter types in :mod:`parhelia_cli.params` turn that into E101.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from parhelia import money

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_MEMORY = re.compile(r"(\d+(?:\.\d+)?)\s*(mib|mb|m|gib|gb|g|tib|tb|t)?", re.IGNORECASE)
_MEMORY_MIB = {"": 1, "m": 1, "mb": 1, "mib": 1, "g": 1024, "gb": 1024, "gib": 1024,
               "t": 1024 * 1024, "tb": 1024 * 1024, "tib": 1024 * 1024}
MICROS_PER_USD = 1_000_000


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a number, or ``90s``, ``30m``, ``4h``, ``1h30m``, ``2d``, ``1w``."""
    value = text.strip().lower()
    if not value:
        raise ValueError("empty duration")
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return _positive(float(value), text)
    pos, total = 0, 0.0
    for match in _DURATION.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(value) or pos == 0:
        raise ValueError(f"{text!r} is not a duration (use seconds or forms like 90s, 30m, 4h, "
                         "1h30m, 2d, 1w)")
    return _positive(total, text)


def _positive(seconds: float, text: str) -> float:
    from parhelia.limits import MAX_SECONDS

    if not math.isfinite(seconds) or seconds > MAX_SECONDS:
        raise ValueError(f"{text!r} is too long (at most 100 years)")
    if seconds <= 0:
        raise ValueError(f"{text!r} must be greater than zero")
    return seconds


def parse_timeout(text: str) -> int:
    """Whole seconds for ``--timeout`` (``3600``, ``30m``, ``4h``)."""
    seconds = parse_duration(text)
    if seconds != int(seconds):
        raise ValueError(f"{text!r} is not a whole number of seconds")
    if seconds > 2**31 - 1:
        raise ValueError(f"{text!r} is too long")
    return int(seconds)


def parse_instant(text: str, now: datetime | None = None) -> datetime:
    """An aware UTC datetime: ``30m``/``2d``/``1w`` ago, or an RFC 3339 timestamp."""
    now = now or datetime.now(UTC)
    value = text.strip()
    if value and value[0].isdigit() and value[-1].lower() in _UNITS and "-" not in value:
        try:
            return now - timedelta(seconds=parse_duration(value))
        except OverflowError:
            raise ValueError(f"{text!r} is before the year 1") from None
        except ValueError as exc:
            if "too long" in str(exc):
                raise
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (30m, 2d, 1w) nor an RFC 3339 "
                         "timestamp (2026-11-28T19:00:00Z)") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone; add Z or an offset like +01:00")
    return parsed.astimezone(UTC)


def parse_memory_mib(text: str) -> int:
    """MiB in ``text``: ``4096`` (MiB), ``512MiB``, ``16GiB``, ``16G``."""
    from decimal import Decimal

    match = _MEMORY.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a memory size (use MiB like 4096, or 512MiB, 16GiB)")
    amount = Decimal(match.group(1)) * _MEMORY_MIB[(match.group(2) or "").lower()]
    if amount != amount.to_integral_value():
        raise ValueError(f"{text!r} is not a whole number of MiB")
    if amount <= 0:
        raise ValueError(f"{text!r} must be greater than zero")
    if amount > 2**31 - 1:
        raise ValueError(f"{text!r} is too large")
    return int(amount)


def parse_usd_micros(text: str) -> int:
    """Micro-dollars in a USD amount like ``2.50`` or ``$10``; at most 6 decimals, > 0."""
    from decimal import Decimal, InvalidOperation

    from parhelia.limits import MAX_USD_MICROS

    value = text.strip().removeprefix("$").strip()
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not an amount in USD (like 2.50)") from None
    if not amount.is_finite() or amount <= 0:
        raise ValueError(f"{text!r} must be an amount in USD greater than zero")
    micros = amount * MICROS_PER_USD
    if micros > MAX_USD_MICROS:
        raise ValueError(f"{text!r} is too large (at most ${MAX_USD_MICROS // MICROS_PER_USD:,})")
    if micros != micros.to_integral_value():
        raise ValueError(f"{text!r} has more than 6 decimals")
    return int(micros)


def usd(micros: int) -> str:
    """The exact decimal string of ``micros`` micro-dollars, 6 decimals (``"1.250000"``)."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_USD)
    return f"{sign}{whole}.{frac:06d}"


def usd_short(micros: int) -> str:
    """Money for people: ``$1.25``, ``$0.0042`` for small amounts (``parhelia.money``,
    the one format the daemon's messages use too)."""
    return money.usd(micros)


def human_seconds(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h04m``, ``3d04h``."""
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def human_bytes(n: int) -> str:
    """``512 B``, ``1.2 MB``: decimal units, as the upload summary prints them."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1000 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover


def human_count(n: int) -> str:
    """``950``, ``12.3k``, ``1.2M`` (token counts)."""
    if n < 1000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.1f}M"


def rfc3339(dt: datetime) -> str:
    """``2026-11-28T19:00:00.123456Z`` (always UTC, always microseconds)."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
