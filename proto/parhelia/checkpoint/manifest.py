"""The checkpoint manifest: data model, canonical JSON, id, strict parsing.

A manifest is untrusted input when read back: ``Manifest.from_dict`` checks
shapes and types and refuses duplicate paths; ``checks.check_manifest`` then
applies the path and symlink rules before anything is restored.

Format 2 (ADR 0003, "Per-turn cost") adds two things, each used only when it helps: a
conversation file may be a list of chunks (an append-only transcript grows by one blob
per checkpoint), and a manifest may be a *delta* (``base``, ``changed``, ``removed``)
against a full manifest of the same session, so a turn checkpoint writes the entries
that changed rather than the whole tree. A manifest with neither is written as format 1.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from parhelia import records
from parhelia.errors import ParheliaError
from parhelia.volume import Volume, checkpoints_prefix, manifest_key

if TYPE_CHECKING:
    from parhelia.checkpoint.cas import BlobStore

FORMAT = 1
FORMAT_DELTA = 2
"""Chunked conversation files and/or a tree stored as a delta against a base."""
FORMATS = frozenset({FORMAT, FORMAT_DELTA})
ID_PREFIX = "cp-"
MAX_CHUNKS = 64
"""A conversation file of more chunks is stored again as one blob (bounds the list)."""
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
class Chunk:
    blob: str
    size: int


@dataclass(frozen=True)
class BlobRef:
    """A conversation file: content only (restored with mode 0600), the concatenation
    of its chunks in order (one for most files; an append-only transcript gains one per
    checkpoint that saw it grow)."""

    chunks: tuple[Chunk, ...]

    @classmethod
    def one(cls, blob: str, size: int) -> BlobRef:
        return cls((Chunk(blob, size),))

    @property
    def size(self) -> int:
        return sum(c.size for c in self.chunks)

    @property
    def last(self) -> str:
        """The last chunk's blob (what the stat cache records for the file)."""
        return self.chunks[-1].blob

    def read(self, store: BlobStore) -> bytes:
        """The whole file, each chunk checked against its hash (for small files)."""
        return b"".join(store.read(c.blob, c.size) for c in self.chunks)

    def to_dict(self, path: str) -> dict[str, Any]:
        if len(self.chunks) == 1:
            return {"path": path, "blob": self.chunks[0].blob, "size": self.chunks[0].size}
        return {"path": path, "size": self.size,
                "chunks": [{"blob": c.blob, "size": c.size} for c in self.chunks]}


@dataclass(frozen=True)
class TreeDelta:
    """How a manifest's tree differs from its base's (a full manifest of the session)."""

    base_id: str
    changed: dict[str, Entry]
    removed: tuple[str, ...]

    @classmethod
    def between(cls, base: Manifest, tree: Mapping[str, Entry]) -> TreeDelta:
        old = base.tree
        return cls(base.id, {p: e for p, e in tree.items()
                             if (o := old.get(p)) is not e and o != e},
                   tuple(sorted(p for p in old if p not in tree)))

    @property
    def size(self) -> int:
        return len(self.changed) + len(self.removed)


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
    stats: records.CheckpointStats = field(default_factory=records.CheckpointStats)
    """Its counts, as the ``checkpoint_created`` record carries them."""
    skipped: list[str] = field(default_factory=list)
    """What the snapshot left out, and why (stored as ``stats.skipped``; the record
    carries only how many)."""
    id: str = ""
    delta: TreeDelta | None = None
    """Set when the manifest is stored as a delta; ``tree`` is always the whole tree."""
    base: Manifest | None = field(default=None, repr=False, compare=False)
    """The full manifest ``delta`` is against (kept to take the next delta cheaply)."""

    @property
    def format(self) -> int:
        chunked = any(len(r.chunks) > 1 for r in self.conversation.values())
        return FORMAT_DELTA if self.delta is not None or chunked else FORMAT

    def body(self) -> dict[str, Any]:
        """The manifest as stored, without ``id`` (what the id is computed from). A
        delta's id covers its base's id, so it covers the whole tree too."""
        tree: dict[str, Any]
        if self.delta is None:
            tree = {"tree": [self.tree[p].to_dict(p) for p in sorted(self.tree)]}
        else:
            changed = self.delta.changed
            tree = {"base": self.delta.base_id,
                    "changed": [changed[p].to_dict(p) for p in sorted(changed)],
                    "removed": list(self.delta.removed)}
        return {
            "format": self.format,
            "session_id": self.session_id,
            "parent_id": self.parent_id,
            "trigger": self.trigger,
            "message": self.message,
            "created_at": self.created_at,
            **tree,
            "conversation": [ref.to_dict(p) for p, ref in sorted(self.conversation.items())],
            "environment": self.environment,
            "git": self.git,
            "stats": {**self.stats.to_dict(), "skipped": list(self.skipped)},
        }

    def blobs(self) -> set[str]:
        """Every blob the checkpoint needs: its whole tree's, its conversation's chunks,
        and the git base pack."""
        out = {e.blob for e in self.tree.values() if e.blob is not None}
        out.update(c.blob for ref in self.conversation.values() for c in ref.chunks)
        pack = (self.git or {}).get("base_pack")
        if isinstance(pack, dict) and isinstance(pack.get("blob"), str):
            out.add(pack["blob"])
        return out

    def documents(self) -> list[str]:
        """The volume keys of the manifest and of the base it needs, base first."""
        own = manifest_key(self.session_id, self.id or self.compute_id())
        return [manifest_key(self.session_id, self.delta.base_id), own] \
            if self.delta is not None else [own]

    def compute_id(self) -> str:
        digest = hashlib.sha256(canonical_json(self.body())).hexdigest()
        return ID_PREFIX + digest[:16]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id or self.compute_id(), **self.body()}

    def whole_dict(self) -> dict[str, Any]:
        """The manifest with its whole ``tree``, however it is stored (what ``checkpoint
        show`` gives); ``delta_of`` names the base of one stored as a delta."""
        out = dataclasses.replace(self, delta=None, base=None).to_dict()
        if self.delta is not None:
            out["delta_of"] = self.delta.base_id
        return out

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, indent=1).encode() + b"\n"

    @classmethod
    def from_dict(cls, raw: object, base: Manifest | None = None) -> Manifest:
        """A manifest from its JSON data; a delta needs its ``base`` (a full manifest)."""
        return _parse(raw, base)

    @classmethod
    def from_json(cls, data: bytes, base: Manifest | None = None) -> Manifest:
        return _parse(parse_json(data), base)

    def summary(self) -> records.CheckpointCreated:
        """The ``checkpoint_created`` record (docs/contracts.md)."""
        return records.CheckpointCreated(
            checkpoint_id=self.id, parent_id=self.parent_id, trigger=self.trigger,
            message=self.message, created_at=self.created_at,
            stats=dataclasses.replace(self.stats, skipped=len(self.skipped)), git=self.git,
            environment=self.environment)


def canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def save_manifest(volume: Volume, manifest: Manifest) -> str:
    """Freeze the id and write the manifest; return its key."""
    manifest.id = manifest.compute_id()
    key = manifest_key(manifest.session_id, manifest.id)
    volume.put(key, manifest.to_json())
    return key


def parse_json(data: bytes) -> object:
    try:
        return json.loads(data, object_pairs_hook=_no_duplicate_keys)
    except ValueError as exc:
        raise refuse(f"manifest is not valid JSON: {exc}") from None


def base_of(raw: object) -> str | None:
    """The base checkpoint id a raw manifest document names (a delta), else None."""
    base = raw.get("base") if isinstance(raw, Mapping) else None
    return base if isinstance(base, str) else None


def load_manifest(volume: Volume, session_id: str, checkpoint_id: str, *,
                  _delta_ok: bool = True) -> Manifest:
    """Read a manifest (and the base of a delta) and check that its content hashes to
    its id (E202 if absent)."""
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
    raw = parse_json(data)
    base = None
    base_id = base_of(raw)
    if base_id is not None:
        if not _delta_ok or base_id == checkpoint_id:
            raise refuse(f"checkpoint {checkpoint_id}: the base of a delta must be a full "
                         "manifest")
        try:
            base = load_manifest(volume, session_id, base_id, _delta_ok=False)
        except ParheliaError as exc:
            raise refuse(f"checkpoint {checkpoint_id}: its base {base_id} cannot be read "
                         f"({exc.message})") from None
    manifest = _parse(raw, base)
    if manifest.id != checkpoint_id or manifest.compute_id() != checkpoint_id:
        raise refuse(f"checkpoint {checkpoint_id}: content does not match its id")
    if manifest.session_id != session_id:
        raise refuse(f"checkpoint {checkpoint_id}: belongs to another session")
    return manifest


def list_checkpoints(volume: Volume, session_id: str) -> list[str]:
    """Checkpoint ids stored for a session (unordered by time; read manifests to sort)."""
    keys = volume.list(checkpoints_prefix(session_id))
    return [k.rsplit("/", 1)[1][: -len(".json")] for k in keys if k.endswith(".json")]


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


def _entries(items: object, what: str) -> dict[str, Entry]:
    if not isinstance(items, list):
        raise refuse(f"manifest {what!r} must be a list")
    tree: dict[str, Entry] = {}
    for item in items:
        path, entry = _parse_entry(item)
        if path in tree:
            raise refuse(f"manifest lists {path!r} twice")
        tree[path] = entry
    return tree


def _parse_tree(raw: Mapping[str, Any], base: Manifest | None
                ) -> tuple[dict[str, Entry], TreeDelta | None]:
    base_id = raw.get("base")
    if base_id is None:
        return _entries(raw.get("tree"), "tree"), None
    if raw.get("format") != FORMAT_DELTA or "tree" in raw:
        raise refuse("only a format 2 manifest without a tree may name a base")
    if base is None or base.id != base_id or base.delta is not None:
        raise refuse(f"manifest is a delta against {base_id!r}, which is not given as a "
                     "full manifest")
    changed = _entries(raw.get("changed"), "changed")
    removed = raw.get("removed")
    if not isinstance(removed, list) or not all(isinstance(p, str) for p in removed):
        raise refuse("manifest 'removed' must be a list of paths")
    tree = dict(base.tree)
    for path in removed:
        if path not in tree or path in changed:
            raise refuse(f"manifest removes {path!r}, which its base does not hold or it "
                         "also changes")
        del tree[path]
    tree.update(changed)
    return tree, TreeDelta(base.id, changed, tuple(removed))


def _parse_ref(item: Mapping[str, Any], where: str, chunked: bool) -> BlobRef:
    if "chunks" not in item:
        return BlobRef.one(_str(item, "blob", where), _int(item, "size", where))
    chunks = item.get("chunks")
    if not chunked or "blob" in item or not isinstance(chunks, list) or \
            not 1 < len(chunks) <= MAX_CHUNKS:
        raise refuse(f"{where}: 'chunks' must be a format 2 list of 2 to {MAX_CHUNKS} chunks")
    out = []
    for chunk in chunks:
        if not isinstance(chunk, Mapping):
            raise refuse(f"{where}: every chunk must be an object")
        out.append(Chunk(_str(chunk, "blob", where), _int(chunk, "size", where)))
    ref = BlobRef(tuple(out))
    if ref.size != _int(item, "size", where):
        raise refuse(f"{where}: its size is not the sum of its chunks")
    return ref


def _parse(raw: object, base: Manifest | None = None) -> Manifest:
    if not isinstance(raw, Mapping):
        raise refuse("manifest must be a JSON object")
    if raw.get("format") not in FORMATS:
        raise refuse(f"unsupported manifest format {raw.get('format')!r}")
    tree, delta = _parse_tree(raw, base)
    conv_raw = raw.get("conversation", [])
    if not isinstance(conv_raw, list):
        raise refuse("manifest 'conversation' must be a list")
    conversation: dict[str, BlobRef] = {}
    for item in conv_raw:
        if not isinstance(item, Mapping):
            raise refuse("manifest conversation: every entry must be an object")
        path = _str(item, "path", "manifest conversation")
        if path in conversation:
            raise refuse(f"manifest conversation lists {path!r} twice")
        conversation[path] = _parse_ref(item, f"conversation entry {path!r}",
                                        raw.get("format") == FORMAT_DELTA)
    environment = raw.get("environment") or {}
    git = raw.get("git")
    stats_raw = raw.get("stats") or {}
    if not isinstance(environment, dict) or not (git is None or isinstance(git, dict)):
        raise refuse("manifest 'environment' and 'git' must be objects")
    if not isinstance(stats_raw, Mapping):
        raise refuse("manifest 'stats' must be an object")
    skipped = stats_raw.get("skipped") or []
    if not isinstance(skipped, list) or not all(isinstance(s, str) for s in skipped):
        raise refuse("manifest 'stats.skipped' must be a list of texts")
    try:
        stats = records.CheckpointStats.from_dict({**stats_raw, "skipped": len(skipped)})
    except records.RecordError as exc:
        raise refuse(f"manifest 'stats': {exc}") from None
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
        skipped=skipped,
        delta=delta,
        base=base if delta is not None else None,
    )
