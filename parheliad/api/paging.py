"""Bounded list answers (ADR 0041).

Every List RPC answers at most ``limit`` items, newest first: a default when the
request says 0, E101 past the list's maximum. When more items match, the answer
carries a ``next_page_token``; the same request with ``page_token`` set to it answers
the items after that page. A token is the sort key of the last item sent (keyset
paging: items created meanwhile never shift a page), base64 of a JSON list naming its
list; it is opaque to clients and read strictly (a token of another list, or altered,
is E101).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from parhelia import limits
from parhelia.errors import invalid

DEFAULT_LIMIT = 100
MAX_LIMIT = limits.MAX_LIST
MAX_TOKEN_CHARS = 512

Key = tuple[int | str, ...]
T = TypeVar("T")


@dataclass(frozen=True)
class Page:
    """What one request asks for: ``limit`` items after ``after`` (None: the newest)."""

    list_name: str
    limit: int
    after: Key | None

    def answer(self, rows: Sequence[T], key: Callable[[T], Key]) -> tuple[list[T], str]:
        """(the rows to send, the next page's token) from ``rows`` read with a limit of
        ``self.limit + 1``: the extra row only says that there is more. ``key`` gives a
        row's sort key (the token holds the last sent row's)."""
        if len(rows) <= self.limit:
            return list(rows), ""
        sent = list(rows[:self.limit])
        return sent, token(self.list_name, key(sent[-1]))

    def is_part(self, next_token: str) -> bool:
        """Whether the answer is only part of the list (a page after the first, or one
        with more after it): then its ``total`` must be counted, not taken from it."""
        return bool(next_token) or self.after is not None


def page(list_name: str, limit: int, page_token: str, *, shape: tuple[type, ...],
         default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> Page:
    """The :class:`Page` a request asks for; E101 for a limit out of range or a token
    that is not one of ``list_name`` with a key of ``shape`` (its parts' types)."""
    if not 0 <= limit <= maximum:
        raise invalid(f"limit: must be 0 (the default, {default}) to {maximum}; ask for the "
                      "next page with page_token for more", field="limit")
    after = _read(list_name, page_token, shape) if page_token else None
    return Page(list_name, limit or default, after)


def token(list_name: str, key: Key) -> str:
    raw = json.dumps([list_name, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _read(list_name: str, value: str, shape: tuple[type, ...]) -> Key:
    bad = invalid("page_token: not a token this list gave (ask again without it for the "
                  "newest items)", field="page_token")
    if len(value) > MAX_TOKEN_CHARS:
        raise bad
    try:
        parts = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(parts, list) or len(parts) != len(shape) + 1 or parts[0] != list_name:
        raise bad
    key = tuple(parts[1:])
    # bool is an int to isinstance: refuse it explicitly.
    if any(type(part) is not kind for part, kind in zip(key, shape, strict=True)):
        raise bad
    return key
