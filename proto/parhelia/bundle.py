"""The config bundle's format (defined here, once); a worker materialises it with
``modal_worker.claude_config``.

A bundle is the user's Claude Code configuration with the secrets taken out (the
daemon builds it: ``parheliad.core.configsync``). Its files are blobs of the same
CAS as checkpoints (``cas/blobs/``); its manifest is ``config/<bundle id>.json``
on the volume, and the id is the hash of the canonical manifest, so the same
configuration always has the same id and re-syncing it writes nothing.

Manifest (``format`` 1)::

    {"format": 1, "kind": "claude-config",
     "files": [{"path": "skills/x/SKILL.md", "size": 12, "blob": "<sha256>", "mode": 420,
                "template": false}, ...],
     "mcp_servers": {"name": {...server config...}},
     "env_names": ["NAME", ...]}

- ``path`` is relative to the worker's ``CLAUDE_CONFIG_DIR``; ``template`` files
  (settings.json, plugin registries) are JSON whose strings may hold
  :data:`CONFIG_DIR_TOKEN`, replaced by the worker's config dir when written.
- ``mcp_servers`` go into ``$CLAUDE_CONFIG_DIR/.claude.json`` (user scope).
- ``env_names``: variables the daemon passes in the worker's process environment
  (``sync.pass_env``): names only, never values.

The manifest is hostile input here: paths follow the checkpoint restore rules
(relative, normalised, no ``..``), a few names are reserved (credentials, the
transcript directory, ``.claude.json``), nothing is written through a symlink, and
every blob's size and hash are verified before any file is replaced.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from parhelia.checkpoint.checks import check_path
from parhelia.errors import ParheliaError
from parhelia.volume import Volume, bundle_key, is_digest

FORMAT = 1
KIND = "claude-config"
ID_PREFIX = "cfg-"
CONFIG_DIR_TOKEN = "${CLAUDE_CONFIG_DIR}"  # noqa: S105 - a placeholder, not a password
"""Stands for the worker's config dir in bundled JSON (also valid shell and MCP syntax)."""

SETTINGS = "settings.json"
GLOBAL_JSON = ".claude.json"
STATE_FILE = ".parhelia-bundle.json"
"""What the last materialisation wrote (to remove files a newer bundle dropped)."""
HOOKS_FILE = ".parhelia-hooks.json"
"""Hooks added by Parhelia itself, re-applied over every materialised settings.json."""

RESERVED_TOP = frozenset({
    GLOBAL_JSON, ".credentials.json", ".device-keys.json", "settings.local.json", "projects",
    "todos", "sessions", "telemetry", "history.jsonl", "backups", STATE_FILE, HOOKS_FILE,
})
MAX_FILES = 100_000
MAX_FILE_BYTES = 256 << 20
_ENV_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


def refuse(message: str) -> ParheliaError:
    return ParheliaError("E600", f"config bundle: {message}")


def check_id(bundle_id: str) -> str:
    """``bundle_id`` if it has the form of a bundle id (E600 when not)."""
    if not bundle_id.startswith(ID_PREFIX) or not all(c.isalnum() or c == "-"
                                                      for c in bundle_id):
        raise refuse(f"not a bundle id: {bundle_id!r}")
    return bundle_id


@dataclass(frozen=True)
class BundleFile:
    path: str
    size: int
    blob: str
    mode: int = 0o644
    template: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "blob": self.blob, "mode": self.mode,
                "template": self.template}


@dataclass
class Bundle:
    files: dict[str, BundleFile] = field(default_factory=dict)
    mcp_servers: dict[str, Any] = field(default_factory=dict)
    env_names: list[str] = field(default_factory=list)
    format: int = FORMAT

    def body(self) -> dict[str, Any]:
        return {"format": self.format, "kind": KIND,
                "files": [self.files[p].to_dict() for p in sorted(self.files)],
                "mcp_servers": self.mcp_servers, "env_names": sorted(set(self.env_names))}

    def canonical(self) -> bytes:
        return json.dumps(self.body(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode()

    @property
    def id(self) -> str:
        return ID_PREFIX + hashlib.sha256(self.canonical()).hexdigest()[:32]

    def to_json(self) -> bytes:
        return json.dumps({"id": self.id, **self.body()}, sort_keys=True, indent=1,
                          ensure_ascii=False).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> Bundle:
        try:
            raw = json.loads(data)
        except ValueError:
            raise refuse("manifest is not valid JSON") from None
        return parse(raw)


def parse(raw: object) -> Bundle:
    """Strictly parse a manifest (untrusted)."""
    if not isinstance(raw, dict) or raw.get("kind") != KIND or raw.get("format") != FORMAT:
        raise refuse("not a format-1 claude-config manifest")
    files_raw, servers, names = raw.get("files"), raw.get("mcp_servers"), raw.get("env_names")
    if not isinstance(files_raw, list) or len(files_raw) > MAX_FILES:
        raise refuse("files must be a list")
    if not isinstance(servers, dict) or not all(isinstance(v, dict) for v in servers.values()):
        raise refuse("mcp_servers must be an object of objects")
    if not isinstance(names, list) or not all(
            isinstance(n, str) and n and set(n) <= _ENV_NAME_CHARS for n in names):
        raise refuse("env_names must be a list of variable names")
    bundle = Bundle(mcp_servers=servers, env_names=list(names))
    for item in files_raw:
        if not isinstance(item, dict):
            raise refuse("a file entry is not an object")
        path = check_path(item.get("path"), "config bundle")
        size, blob, mode = item.get("size"), item.get("blob"), item.get("mode", 0o644)
        if path.split("/")[0] in RESERVED_TOP:
            raise refuse(f"{path!r} is reserved and never comes from a bundle")
        if path in bundle.files:
            raise refuse(f"duplicate path {path!r}")
        if not is_digest(blob):
            raise refuse(f"{path!r}: blob is not a sha256 digest")
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_FILE_BYTES:
            raise refuse(f"{path!r}: size out of range")
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777:
            raise refuse(f"{path!r}: bad mode")
        assert isinstance(blob, str)
        bundle.files[path] = BundleFile(path, size, blob, mode, bool(item.get("template")))
    for path in bundle.files:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in bundle.files:
                raise refuse(f"{path!r} lies under the file {'/'.join(parts[:i])!r}")
    return bundle


def load_bundle(volume: Volume, bundle_id: str) -> Bundle:
    try:
        data = volume.get(bundle_key(check_id(bundle_id)))
    except FileNotFoundError:
        raise refuse(f"{bundle_id} is not on the volume") from None
    bundle = Bundle.from_json(data)
    if bundle.id != bundle_id:
        raise refuse(f"{bundle_id}: the manifest does not hash to its id")
    return bundle


def save_bundle(volume: Volume, bundle: Bundle) -> bool:
    """Write the manifest unless it is already there; True if it was written."""
    key = bundle_key(check_id(bundle.id))
    if volume.exists(key):
        return False
    volume.put(key, bundle.to_json())
    return True
