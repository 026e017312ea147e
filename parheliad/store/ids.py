"""Short random ids with a type prefix, and lookup by unique prefix."""

from __future__ import annotations

import re
import secrets

from parhelia.errors import ParheliaError

TASK = "t-"
SESSION = "s-"
CONTAINER = "c-"
CHECKPOINT = "cp-"

_HEX_CHARS = 12
_REF_RE = re.compile(r"^[a-z]{1,2}-?[0-9a-f]*$")


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


def not_found(code: str, noun: str, ref: str, matches: int = 0) -> ParheliaError:
    if matches > 1:
        return ParheliaError(code, f"{noun} id prefix {ref!r} matches several {noun}s; "
                                   "give more characters", ref=ref)
    return ParheliaError(code, f"no {noun} with id {ref!r}", ref=ref)
