"""Short random ids with a type prefix, and lookup by unique prefix."""

from __future__ import annotations

import re
import secrets

from parhelia.errors import Code, ParheliaError

TASK = "t-"
SESSION = "s-"
CONTAINER = "c-"
CHECKPOINT = "cp-"

_HEX_CHARS = 12
_REF_RE = re.compile(r"^[a-z]{1,2}-?[0-9a-f]*$")
MAX_REF = 64
"""Longer id references are refused (E101) before any lookup: a real id is ~15 characters."""
CANDIDATES = 5
"""How many candidates an ambiguous prefix lists."""


def new_id(prefix: str) -> str:
    """``prefix`` + 12 random hex digits, e.g. ``t-3f9a0c1b2d4e``."""
    return prefix + secrets.token_hex(_HEX_CHARS // 2)


def prefix_pattern(ref: str, prefix: str) -> str | None:
    """A ``LIKE`` pattern for ``ref`` (full id or unique prefix), or None if it can't match.

    The type prefix may be omitted (``3f9a`` finds ``t-3f9a...``). Only lower-case
    hex after the prefix is accepted, so the pattern never contains LIKE wildcards.
    """
    ref = ref.strip().lower()
    if not ref:
        return None
    if not ref.startswith(prefix):
        ref = prefix + ref
    if not _REF_RE.fullmatch(ref):
        return None
    return ref + "%"


def is_task_ref(ref: str) -> bool:
    """Whether ``ref`` names a task explicitly (``t-...``), where a session or container
    is meant: lookups then go through the task."""
    return ref.strip().lower().startswith(TASK)


def shown(ref: str) -> str:
    """``ref`` as a message may quote it: repr (no control characters), at most 40 chars."""
    return repr(ref if len(ref) <= 40 else ref[:37] + "...")


def check_ref(ref: str, field: str) -> None:
    """E101 for a reference no id can match because of its size or bytes."""
    if len(ref) > MAX_REF:
        raise ParheliaError("E101", f"{field}: an id is at most {MAX_REF} characters, got "
                                    f"{len(ref)}", field=field)
    if not ref.isprintable():
        raise ParheliaError("E101", f"{field}: {shown(ref)} contains control characters",
                            field=field)


def not_found(code: Code, noun: str, ref: str, matches: int = 0,
              candidates: list[str] | None = None) -> ParheliaError:
    if matches > 1 or (candidates and len(candidates) > 1):
        listed = candidates or []
        more = ", ..." if len(listed) > CANDIDATES else ""
        return ParheliaError("E104", f"{noun} id prefix {shown(ref)} matches several {noun}s: "
                                     f"{', '.join(listed[:CANDIDATES])}{more}; give more "
                                     "characters", ref=ref[:MAX_REF],
                             candidates=listed[:CANDIDATES])
    return ParheliaError(code, f"no {noun} with id {shown(ref)}", ref=ref[:MAX_REF])
