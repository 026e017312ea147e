"""Money for people: the one format every process prints amounts in.

Amounts are integer micro-dollars everywhere (database, wire, JSON's ``*_micros``); this
is how they read in tables, messages and errors: ``$12.45``, ``$1,250.00``, and four
decimals below a cent (``$0.0042``) so small spend is not shown as nothing.
"""

from __future__ import annotations

MICROS_PER_USD = 1_000_000
_CENT = 10_000


def usd(micros: int) -> str:
    """``$1.25``; ``$0.0042`` below a cent; ``-$1.25`` for a negative amount."""
    if micros < 0:
        return "-" + usd(-micros)
    if micros == 0:
        return "$0.00"
    if micros < _CENT:
        return f"${micros / MICROS_PER_USD:.4f}"
    return f"${micros / MICROS_PER_USD:,.2f}"
