"""The checkpoint manifest: data model, canonical JSON, id, strict parsing.

A manifest is untrusted input when read back: ``Manifest.from_dict`` checks
shapes and types and refuses duplicate paths; ``checks.check_manifest`` then
applies the path and symlink rules before anything is restored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from modal_worker.volume import Volume, validate_key
from parhelia import records
from parhelia.errors import ParheliaError

FORMAT = 1
ID_PREFIX = "cp-"
EntryType = Literal["file", "symlink", "dir"]
ENTRY_TYPES: frozenset[str] = frozenset({"file", "symlink", "dir"})


def refuse(message: str, **details: object) -> ParheliaError:
    """The one error for anything wrong with a checkpoint (E600)."""
    return ParheliaError("E600", message, **details)


@dataclass(frozen=True)
class Entry:
    """One tree entry. Files carry mode/size/blob, symlinks a target, dirs a mode."""

    type: EntryType
    mode: int = 0
    size: int = 0
    blob: str | None = None
    target: str | None = None

    def to_dict(self, path: str) -> dict[str, Any]:
        if self.type == "file":
            return {"path": path, "type": "file", "mode": self.mode, "size": self.size,
                    "blob": self.blob}
        if self.type == "symlink":
            return {"path": path, "type": "symlink", "target": self.target}
        return {"path": path, "type": "dir", "mode": self.mode}


@dataclass(frozen=True)
class BlobRef:
    """A conversation file: content only (restored with mode 0600)."""

    blob: str
    size: int


@dataclass
class Stats:
    files: int = 0
    bytes: int = 0
    new_bytes: int = 0
    duration_ms: int = 0
    dirs: int = 0
    symlinks: int = 0
    conversation_files: int = 0
    conversation_bytes: int = 0
    rehashed_files: int = 0
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Manifest:
    session_id: str
    trigger: str
    created_at: str
    tree: dict[str, Entry]
    parent_id: str | None = None
    message: str = ""
    conversation: dict[str, BlobRef] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    git: dict[str, Any] | None = None
    stats: Stats = field(default_factory=Stats)
    id: str = ""
    format: int = FORMAT

    def body(self) -> dict[str, Any]:
        """The manifest as JSON data, without ``id`` (what the id is computed from)."""
        return {
            "format": self.format,
            "session_id": self.session_id,
            "parent_id": self.parent_id,
            "trigger": self.trigger,
            "message": self.message,
            "created_at": self.created_at,
            "tree": [self.tree[p].to_dict(p) for p in sorted(self.tree)],
            "conversation": [
                {"path": p, "blob": ref.blob, "size": ref.size}
                for p, ref in sorted(self.conversation.items())
            ],
            "environment": self.environment,
            "git": self.git,
            "stats": self.stats.to_dict(),
        }

    def compute_id(self) -> str:
        digest = hashlib.sha256(canonical_json(self.body())).hexdigest()
        return ID_PREFIX + digest[:16]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id or self.compute_id(), **self.body()}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, indent=1).encode() + b"\n"

    @classmethod
    def from_dict(cls, raw: object) -> Manifest:
        return _parse(raw)

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        try:
            raw = json.loads(data, object_pairs_hook=_no_duplicate_keys)
        except ValueError as exc:
            raise refuse(f"manifest is not valid JSON: {exc}") from None
        return _parse(raw)

    def summary(self) -> records.CheckpointCreated:
        """The ``checkpoint_created`` record (docs/contracts.md)."""
        stats = self.stats.to_dict()
        stats["skipped"] = len(self.stats.skipped)
        return records.CheckpointCreated(
            checkpoint_id=self.id, parent_id=self.parent_id, trigger=self.trigger,
            message=self.message, created_at=self.created_at,
            stats=records.CheckpointStats(**stats), git=self.git,
            environment=self.environment)


def canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def manifest_key(session_id: str, checkpoint_id: str) -> str:
    return validate_key(f"checkpoints/{session_id}/{checkpoint_id}.json")


def save_manifest(volume: Volume, manifest: Manifest) -> str:
    """Freeze the id and write the manifest; return its key."""
    manifest.id = manifest.compute_id()
    key = manifest_key(manifest.session_id, manifest.id)
    volume.put(key, manifest.to_json())
    return key


def load_manifest(volume: Volume, session_id: str, checkpoint_id: str) -> Manifest:
    """Read a manifest and check that its content hashes to its id (E202 if absent)."""
    try:
        key = manifest_key(session_id, checkpoint_id)
    except ValueError:
        raise ParheliaError("E202", f"invalid checkpoint id {checkpoint_id!r}") from None
    try:
        data = volume.get(key)
    except FileNotFoundError:
        raise ParheliaError(
            "E202", f"checkpoint {checkpoint_id} of session {session_id} not found"
        ) from None
    manifest = Manifest.from_json(data)
    if manifest.id != checkpoint_id or manifest.compute_id() != checkpoint_id:
        raise refuse(f"checkpoint {checkpoint_id}: content does not match its id")
    if manifest.session_id != session_id:
        raise refuse(f"checkpoint {checkpoint_id}: belongs to another session")
    return manifest


def list_checkpoints(volume: Volume, session_id: str) -> list[str]:
    """Checkpoint ids stored for a session (unordered by time; read manifests to sort)."""
    prefix = validate_key(f"checkpoints/{session_id}")
    return [k.rsplit("/", 1)[1][: -len(".json")] for k in volume.list(prefix)
            if k.endswith(".json")]


# -- strict parsing ---------------------------------------------------------------------


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise refuse(f"manifest has a duplicate key {key!r}")
        out[key] = value
    return out


def _int(obj: Mapping[str, Any], key: str, where: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise refuse(f"{where}: {key!r} must be an integer")
    return value


def _str(obj: Mapping[str, Any], key: str, where: str, *, optional: bool = False) -> Any:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise refuse(f"{where}: {key!r} must be a string")
    return value


def _parse_entry(item: object) -> tuple[str, Entry]:
    if not isinstance(item, Mapping):
        raise refuse("manifest tree: every entry must be an object")
    path = _str(item, "path", "manifest tree")
    where = f"manifest entry {path!r}"
    kind = item.get("type")
    if kind == "file":
        entry = Entry("file", mode=_int(item, "mode", where), size=_int(item, "size", where),
                      blob=_str(item, "blob", where))
    elif kind == "symlink":
        entry = Entry("symlink", target=_str(item, "target", where))
    elif kind == "dir":
        entry = Entry("dir", mode=_int(item, "mode", where))
    else:
        raise refuse(f"{where}: unknown type {kind!r}")
    return path, entry


def _parse(raw: object) -> Manifest:
    if not isinstance(raw, Mapping):
        raise refuse("manifest must be a JSON object")
    if raw.get("format") != FORMAT:
        raise refuse(f"unsupported manifest format {raw.get('format')!r}")
    tree_raw = raw.get("tree")
    conv_raw = raw.get("conversation", [])
    if not isinstance(tree_raw, list) or not isinstance(conv_raw, list):
        raise refuse("manifest 'tree' and 'conversation' must be lists")
    tree: dict[str, Entry] = {}
    for item in tree_raw:
        path, entry = _parse_entry(item)
        if path in tree:
            raise refuse(f"manifest lists {path!r} twice")
        tree[path] = entry
    conversation: dict[str, BlobRef] = {}
    for item in conv_raw:
        if not isinstance(item, Mapping):
            raise refuse("manifest conversation: every entry must be an object")
        path = _str(item, "path", "manifest conversation")
        if path in conversation:
            raise refuse(f"manifest conversation lists {path!r} twice")
        where = f"conversation entry {path!r}"
        conversation[path] = BlobRef(_str(item, "blob", where), _int(item, "size", where))
    environment = raw.get("environment") or {}
    git = raw.get("git")
    stats_raw = raw.get("stats") or {}
    if not isinstance(environment, dict) or not (git is None or isinstance(git, dict)):
        raise refuse("manifest 'environment' and 'git' must be objects")
    if not isinstance(stats_raw, Mapping):
        raise refuse("manifest 'stats' must be an object")
    stats = Stats(**{k: v for k, v in stats_raw.items() if k in Stats.__dataclass_fields__})
    return Manifest(
        id=_str(raw, "id", "manifest", optional=True) or "",
        session_id=_str(raw, "session_id", "manifest"),
        parent_id=_str(raw, "parent_id", "manifest", optional=True),
        trigger=_str(raw, "trigger", "manifest"),
        message=_str(raw, "message", "manifest", optional=True) or "",
        created_at=_str(raw, "created_at", "manifest"),
        tree=tree,
        conversation=conversation,
        environment=environment,
        git=git,
        stats=stats,
    )
