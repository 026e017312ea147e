"""Static safety rules for manifests (hostile input), applied before any write.

Rules: paths are relative, normalised, NUL-free and unique; no entry lives under
a symlink or a file of the manifest (no write-through); symlink targets are
relative and, following the manifest's own symlinks, stay inside the tree;
modes fit in 0o777; sizes are non-negative and capped; blob names are sha256 hex.
"""

from __future__ import annotations

import os
import posixpath

from parhelia.checkpoint.manifest import Entry, Manifest, refuse
from parhelia.volume import is_digest

MAX_FILE_SIZE = 1 << 40
MAX_ENTRIES = 10_000_000
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255
MAX_SYMLINK_HOPS = 40
FILE_MODE_MASK = 0o755
FILE_MODE_FORCE = 0o600
DIR_MODE_FORCE = 0o700


def restored_mode(entry: Entry) -> int:
    """The mode a restore applies: no group/other write, no special bits, owner can use it."""
    force = DIR_MODE_FORCE if entry.type == "dir" else FILE_MODE_FORCE
    return (entry.mode & FILE_MODE_MASK) | force


def check_path(path: object, where: str = "manifest") -> str:
    if not isinstance(path, str) or not path:
        raise refuse(f"{where}: empty or non-text path")
    if "\0" in path:
        raise refuse(f"{where}: path contains NUL: {path!r}")
    if path.startswith("/"):
        raise refuse(f"{where}: absolute path {path!r}")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts) or posixpath.normpath(path) != path:
        raise refuse(f"{where}: path is not normalised or climbs out: {path!r}")
    try:
        raw = os.fsencode(path)
    except UnicodeError:
        raise refuse(f"{where}: path is not encodable: {path!r}") from None
    if len(raw) > MAX_PATH_BYTES or any(len(os.fsencode(p)) > MAX_NAME_BYTES for p in parts):
        raise refuse(f"{where}: path too long: {path[:80]!r}...")
    return path


def _check_entry(path: str, entry: Entry) -> None:
    if entry.type in ("file", "dir"):
        if isinstance(entry.mode, bool) or not isinstance(entry.mode, int):
            raise refuse(f"manifest entry {path!r}: mode must be an integer")
        if not 0 <= entry.mode <= 0o777:
            raise refuse(f"manifest entry {path!r}: mode {entry.mode:#o} is not allowed")
    if entry.type == "file":
        _check_blob(path, entry.blob, entry.size)
    elif entry.type == "symlink":
        target = entry.target
        if not isinstance(target, str) or not target or "\0" in target:
            raise refuse(f"symlink {path!r}: empty or invalid target")
        if target.startswith("/"):
            raise refuse(f"symlink {path!r}: absolute target {target!r}")
        if len(target.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
            raise refuse(f"symlink {path!r}: target too long")
    elif entry.type != "dir":
        raise refuse(f"manifest entry {path!r}: unknown type {entry.type!r}")


def _check_blob(path: str, blob: object, size: object) -> None:
    if not is_digest(blob):
        raise refuse(f"entry {path!r}: blob is not a sha256 digest")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_FILE_SIZE:
        raise refuse(f"entry {path!r}: size {size!r} is out of range")


def resolve_inside(tree: dict[str, Entry], link: str) -> bool:
    """True if the symlink ``link`` resolves inside the tree (following tree symlinks)."""
    hops = [0]

    def walk(stack: list[str], target: str) -> list[str] | None:
        if target.startswith("/"):
            return None
        for comp in target.split("/"):
            if comp in ("", "."):
                continue
            if comp == "..":
                if not stack:
                    return None
                stack.pop()
                continue
            stack.append(comp)
            entry = tree.get("/".join(stack))
            if entry is not None and entry.type == "symlink":
                hops[0] += 1
                if hops[0] > MAX_SYMLINK_HOPS or entry.target is None:
                    return None
                stack.pop()
                resolved = walk(stack, entry.target)
                if resolved is None:
                    return None
                stack = resolved
        return stack

    entry = tree[link]
    parent = link.split("/")[:-1]
    return entry.target is not None and walk(parent, entry.target) is not None


def check_tree(tree: dict[str, Entry]) -> None:
    if len(tree) > MAX_ENTRIES:
        raise refuse(f"manifest has {len(tree)} entries (limit {MAX_ENTRIES})")
    for path, entry in tree.items():
        check_path(path)
        _check_entry(path, entry)
    for path in tree:
        parts = path.split("/")
        for i in range(1, len(parts)):
            ancestor = tree.get("/".join(parts[:i]))
            if ancestor is not None and ancestor.type != "dir":
                raise refuse(f"entry {path!r} would be written through the {ancestor.type} "
                             f"{'/'.join(parts[:i])!r}")
    for path, entry in tree.items():
        if entry.type == "symlink" and not resolve_inside(tree, path):
            raise refuse(f"symlink {path!r} points outside the workspace: {entry.target!r}")


def check_manifest(manifest: Manifest) -> None:
    """Raise ``ParheliaError('E600')`` on the first rule the manifest breaks."""
    check_tree(manifest.tree)
    names = set(manifest.conversation)
    for path, ref in manifest.conversation.items():
        check_path(path, "conversation")
        for chunk in ref.chunks:
            _check_blob(path, chunk.blob, chunk.size)
        _check_blob(path, ref.last, ref.size)  # the whole file's size is bounded too
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in names:
                raise refuse(f"conversation entry {path!r} lies under a file of the manifest")
