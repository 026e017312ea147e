"""A clone sandbox's job and its outcome (``clones/<id>/`` on the volume).

When a Modal task's private repository can be read only with the Modal secret
``github-token`` (the daemon has no GitHub token of its own), a short-lived sandbox of
its own — never the agent's — runs ``python -m modal_worker clone REQUEST``: it fetches
the base commit with the secret's token and writes the commit's objects as one pack
(``base.pack``) and a :class:`CloneResult` beside the request. The daemon reads both,
indexes the pack into its mirror of the repository and makes checkpoint zero from it,
as for a clone it made itself. Neither file holds the token.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

REQUEST = "request.json"
RESULT = "result.json"
PACK = "base.pack"
MAX_JSON_BYTES = 64 << 10


@dataclass(frozen=True)
class CloneRequest:
    url: str
    ref: str | None
    sync_argv: list[str] = field(default_factory=list)
    """Run after the files are written, so the daemon's side can read them (``sync /vol``)."""
    token_var: str = "GITHUB_TOKEN"  # noqa: S105 - a variable's name, not a token
    """The variable of the sandbox's environment holding the token (from the secret)."""


@dataclass(frozen=True)
class CloneResult:
    ok: bool
    commit: str = ""
    branch: str = ""
    default_branch: str = ""
    error_kind: str = ""
    """``auth``, ``network``, ``ref`` (no such ref) or ``other`` when not ``ok``."""
    error: str = ""


def dump(obj: CloneRequest | CloneResult) -> bytes:
    return json.dumps(asdict(obj), sort_keys=True).encode()


def _load(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_JSON_BYTES:
        raise ValueError("too large")
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _str(data: dict[str, Any], key: str, default: str = "") -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise ValueError(f"{key}: not a string")
    return value


def load_request(raw: bytes) -> CloneRequest:
    data = _load(raw)
    ref = data.get("ref")
    argv = data.get("sync_argv") or []
    if ref is not None and not isinstance(ref, str):
        raise ValueError("ref: not a string")
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise ValueError("sync_argv: not a list of strings")
    return CloneRequest(url=_str(data, "url"), ref=ref or None, sync_argv=list(argv),
                        token_var=_str(data, "token_var", "GITHUB_TOKEN"))


def load_result(raw: bytes) -> CloneResult:
    """A result as written by the sandbox (ValueError when it is not one): the daemon
    checks the commit again against the pack before it uses it."""
    data = _load(raw)
    return CloneResult(ok=data.get("ok") is True, commit=_str(data, "commit"),
                       branch=_str(data, "branch"), default_branch=_str(data, "default_branch"),
                       error_kind=_str(data, "error_kind"), error=_str(data, "error")[:1000])
