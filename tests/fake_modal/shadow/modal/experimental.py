"""``modal.experimental`` of the fake: ``OutboundPolicy`` as modal 1.6.4 has it (an immutable
list of header replacements, each scoped to a domain, whose ``$KEY`` templates a named
secret fills outside the sandbox), with the same validation. ``Sandbox.create`` records a
policy it is given (``_describe``) and never puts its secret's values in the sandbox."""

from __future__ import annotations

import re as _re
from collections.abc import Mapping as _Mapping
from dataclasses import dataclass as _dataclass
from typing import Any as _Any

from .exception import InvalidError as _InvalidError

_DOMAIN_RE = _re.compile(
    r"^(\*\.)?([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+"
    r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\Z")
_HEADER_NAME_RE = _re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+\Z")
_MAX_HEADER_REPLACEMENTS = 25


@_dataclass(frozen=True)
class _HeaderReplacement:
    domain: str
    headers: dict[str, str]
    secret: _Any


def _references_key(template: str) -> bool:
    i = template.find("$")
    while i != -1 and i + 1 < len(template):
        c = template[i + 1]
        if c == "$":
            i = template.find("$", i + 2)
            continue
        if c.isascii() and (c.isalpha() or c == "_"):
            return True
        i = template.find("$", i + 1)
    return False


class OutboundPolicy:
    def __init__(self, _replacements: tuple[_HeaderReplacement, ...] = ()) -> None:
        self._replacements = _replacements

    def with_header_replacement(self, *, domain: str, headers: _Mapping[str, str],
                                secret: _Any = None) -> OutboundPolicy:
        return OutboundPolicy(self._replacements
                              + (_HeaderReplacement(domain, dict(headers), secret),))

    def _validate(self) -> None:
        total = 0
        for r in self._replacements:
            if r.domain != "*" and not _DOMAIN_RE.match(r.domain):
                raise _InvalidError(f"Invalid domain: {r.domain!r}")
            if not r.headers:
                raise _InvalidError("`headers` must contain at least one header")
            for name, value in r.headers.items():
                if not _HEADER_NAME_RE.match(name):
                    raise _InvalidError(f"Invalid header name: {name!r}")
                if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in value):
                    raise _InvalidError(f"Header value for {name!r} must not contain control "
                                       "characters (except tab)")
                if r.secret is None and _references_key(value):
                    raise _InvalidError(f"Header value for {name!r} references a secret key, "
                                       "but no `secret` was passed")
            if r.secret is not None and r.secret._values is not None:
                raise _InvalidError("Outbound policies only support named secrets (e.g. "
                                   "`Secret.from_name`); ephemeral secrets (e.g. "
                                   "`Secret.from_dict`) are not yet supported")
            if r.secret is not None:
                r.secret._resolve()  # resolved by the service, outside the sandbox
            total += len(r.headers)
        if total > _MAX_HEADER_REPLACEMENTS:
            raise _InvalidError(f"Outbound policy cannot have more than "
                               f"{_MAX_HEADER_REPLACEMENTS} header replacements")

    def _describe(self) -> list[dict[str, _Any]]:
        """What the fake's service records of the policy (never a secret's value)."""
        return [{"domain": r.domain, "headers": dict(r.headers),
                 "secret": r.secret._name if r.secret is not None else None}
                for r in self._replacements]


__all__ = ["OutboundPolicy"]
