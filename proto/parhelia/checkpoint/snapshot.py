"""Take a checkpoint: walk the workspace, store new blobs, write the manifest.

A turn checkpoint costs what the turn changed: unchanged files are known from the stat
cache, an append-only transcript stores only what was appended since the previous
checkpoint (a new chunk), and the manifest is written as a delta against the session's
last full manifest (ADR 0003, "Per-turn cost")."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from parhelia.checkpoint.cas import BlobError, BlobStore, Stored, open_regular
from parhelia.checkpoint.checks import check_path, resolve_inside
from parhelia.checkpoint.manifest import (
    MAX_CHUNKS,
    BlobRef,
    Chunk,
    Entry,
    Manifest,
    TreeDelta,
    load_manifest,
    refuse,
    save_manifest,
)
from parhelia.checkpoint.projects import Conversation
from parhelia.checkpoint.statcache import StatCache, stat_key
from parhelia.clock import utc_now
from parhelia.errors import ParheliaError
from parhelia.progress import Report
from parhelia.records import CheckpointStats
from parhelia.volume import Volume

MAX_SKIPPED_LISTED = 100
REBASE_MIN_ENTRIES = 256
REBASE_FRACTION = 16
"""A delta of more than max(256, base entries / 16) entries is written as a full manifest
instead (the next deltas are then against it): a delta stays a small fraction of a full
manifest, and a full one is written once per many turns."""
TREE_NS = "t:"
CONVERSATION_NS = "c:"


def default_workers() -> int:
    """One thread per CPU (at least 2): hashing and copying release the GIL, and more
    threads than CPUs only add contention (measured with bench/checkpoint.py)."""
    return min(8, max(2, os.cpu_count() or 2))


def walk(root: Path, rel: str = "") -> Iterator[tuple[str, os.stat_result | None]]:
    """Every entry under ``root/rel`` (never following symlinks); ``None`` stat = unreadable."""
    stack = [rel]
    while stack:
        current = stack.pop()
        try:
            it = os.scandir(root / current if current else root)
        except OSError:  # unreadable, vanished, not a directory, I/O error...
            if current:
                yield current, None
            continue
        with it:
            for de in it:
                path = f"{current}/{de.name}" if current else de.name
                try:
                    st = de.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                except OSError:
                    yield path, None  # listed as skipped (unreadable)
                    continue
                yield path, st
                if stat.S_ISDIR(st.st_mode):
                    stack.append(path)


def _listed(root: Path, files: Iterable[str]) -> Iterator[tuple[str, os.stat_result | None]]:
    """The entries of an explicit file list plus their parent directories."""
    emitted: set[str] = set()
    for rel in sorted(set(files)):
        try:
            check_path(rel, "file list")
        except Exception:
            yield rel, None
            continue
        parts = rel.split("/")
        ancestors_ok = True
        for i in range(1, len(parts)):
            anc = "/".join(parts[:i])
            if anc in emitted:
                continue
            try:
                st = os.lstat(root / anc)
            except OSError:
                ancestors_ok = False
                break
            if not stat.S_ISDIR(st.st_mode):
                ancestors_ok = False
                break
            emitted.add(anc)
            yield anc, st
        if not ancestors_ok or rel in emitted:
            continue
        try:
            st = os.lstat(root / rel)
        except FileNotFoundError:
            continue  # tracked but deleted from the work tree
        except OSError:
            yield rel, None  # e.g. a name too long or a permission denied on the way
            continue
        emitted.add(rel)
        yield rel, st
        if stat.S_ISDIR(st.st_mode):  # a submodule or a listed directory: take all of it
            for sub, sub_st in walk(root, rel):
                if sub not in emitted:
                    emitted.add(sub)
                    yield sub, sub_st


class _Snapshotter:
    def __init__(self, root: Path, store: BlobStore, cache: StatCache, start_ns: int,
                 parent: Mapping[str, Entry]) -> None:
        self.root = root
        self.root_s = str(root)
        self.store = store
        self.cache = cache
        self.start_ns = start_ns
        self.parent = parent
        """The parent's tree: an unchanged file keeps its entry (the very object, so the
        delta against the base is found by identity) and its blob is known to be stored."""
        self.tree: dict[str, Entry] = {}
        self.skipped: list[str] = []
        self.new_bytes = 0
        self.rehashed = 0

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append(f"{path}: {reason}")

    def scan(self, entries: Iterable[tuple[str, os.stat_result | None]]) -> list[
            tuple[str, os.stat_result]]:
        """Fill dirs and symlinks into the tree; return the files that need hashing."""
        todo: list[tuple[str, os.stat_result]] = []
        for path, st in entries:
            if st is None:
                self.skip(path, "unreadable")
                continue
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                self.tree[path] = Entry("dir", mode=stat.S_IMODE(mode) & 0o777)
            elif stat.S_ISLNK(mode):
                try:
                    target = os.readlink(self.root / path)
                except OSError:
                    self.skip(path, "unreadable symlink")
                    continue
                self.tree[path] = Entry("symlink", target=target)
            elif stat.S_ISREG(mode):
                blob = self.cache.lookup(TREE_NS + path, st)
                known = self.parent.get(path) if blob is not None else None
                if known is not None and known.blob == blob and known.size == st.st_size \
                        and known.mode == stat.S_IMODE(mode) & 0o777:
                    self.tree[path] = known  # its blob is named by a stored manifest
                elif blob is not None and self.store.has(blob):
                    self.tree[path] = Entry("file", mode=stat.S_IMODE(mode) & 0o777,
                                            size=st.st_size, blob=blob)
                else:
                    todo.append((path, st))
            else:
                self.skip(path, "not a regular file, directory or symlink")
        return todo

    def hash_one(self, item: tuple[str, os.stat_result]) -> tuple[str, os.stat_result,
                                                                  Stored | str]:
        path, st = item
        try:
            return path, st, self.store.put_file(f"{self.root_s}/{path}")
        except FileNotFoundError:
            return path, st, "vanished while reading"
        except (PermissionError, BlobError, OSError) as exc:
            return path, st, f"unreadable ({type(exc).__name__})"

    def store_files(self, todo: list[tuple[str, os.stat_result]], workers: int,
                    progress: Report | None = None) -> None:
        total = sum(st.st_size for _, st in todo)
        done = 0
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = pool.map(self.hash_one, todo) if workers > 1 else map(self.hash_one, todo)
            for path, st, result in results:
                done += st.st_size
                if progress is not None:
                    progress(done, total)
                if isinstance(result, str):
                    self.skip(path, result)
                    continue
                self.rehashed += 1
                self.new_bytes += result.written
                self.tree[path] = Entry("file", mode=stat.S_IMODE(st.st_mode) & 0o777,
                                        size=result.size, blob=result.digest)
                try:
                    after = os.lstat(f"{self.root_s}/{path}")
                except FileNotFoundError:
                    continue
                if stat_key(after) == stat_key(st) and after.st_size == result.size:
                    self.cache.record(TREE_NS + path, st, result.digest, start_ns=self.start_ns)

    def drop_escaping_symlinks(self) -> None:
        changed = True
        while changed:
            changed = False
            for path, entry in list(self.tree.items()):
                if entry.type == "symlink" and not resolve_inside(self.tree, path):
                    del self.tree[path]
                    self.skip(path, f"symlink leaves the workspace ({entry.target})")
                    changed = True

    def conversation(self, conv: Conversation, before: Mapping[str, BlobRef]
                     ) -> dict[str, BlobRef]:
        """The session's files; ``before`` is the previous checkpoint's (a transcript that
        only grew since gains a chunk instead of being stored again)."""
        out: dict[str, BlobRef] = {}
        for rel in conv.files():
            path = conv.path_of(rel)
            if path is None:
                continue
            previous = before.get(rel)
            try:
                st = os.lstat(path)
                blob = self.cache.lookup(CONVERSATION_NS + rel, st)
                if blob is not None and self.store.has(blob):
                    if previous is not None and previous.last == blob:
                        out[rel] = previous
                        continue
                    if self.store.size(blob) == st.st_size:  # the whole file, one blob
                        out[rel] = BlobRef.one(blob, st.st_size)
                        continue
                ref = self._store_conversation_file(path, rel, previous)
            except (FileNotFoundError, BlobError):
                continue
            if ref is None:
                continue  # not one whole line yet: no conversation to resume
            out[rel] = ref
            self.cache.record(CONVERSATION_NS + rel, st, ref.last, start_ns=self.start_ns)
        return out

    def _store_conversation_file(self, path: Path, rel: str,
                                 previous: BlobRef | None) -> BlobRef | None:
        if not rel.endswith(".jsonl"):
            stored = self.store.put_file(path)
            self.new_bytes += stored.written
            return BlobRef.one(stored.digest, stored.size)
        fd = open_regular(path)
        try:
            with os.fdopen(fd, "rb", closefd=False) as fh:
                data = fh.read()
        finally:
            os.close(fd)
        cut = data.rfind(b"\n")  # never capture a line the agent is still writing
        if cut < 0:
            return None
        view = memoryview(data)[: cut + 1]
        if previous is not None and _extends(view, previous):
            if len(view) == previous.size:
                return previous
            if len(previous.chunks) < MAX_CHUNKS:
                stored = self.store.put_bytes(bytes(view[previous.size:]))
                self.new_bytes += stored.written
                return BlobRef((*previous.chunks, Chunk(stored.digest, stored.size)))
        stored = self.store.put_bytes(bytes(view))
        self.new_bytes += stored.written
        return BlobRef.one(stored.digest, stored.size)


def _extends(data: memoryview, ref: BlobRef) -> bool:
    """Whether ``data`` starts with the content of ``ref`` (each chunk re-hashed: a
    transcript rewritten rather than appended to is stored again whole)."""
    if len(data) < ref.size:
        return False
    offset = 0
    for chunk in ref.chunks:
        if hashlib.sha256(data[offset:offset + chunk.size]).hexdigest() != chunk.blob:
            return False
        offset += chunk.size
    return True


def _parent(volume: Volume, session_id: str, parent_id: str | None,
            previous: Manifest | None) -> Manifest | None:
    """The parent manifest when it belongs to this session (``previous`` when it is the
    parent: the worker keeps it between turns), else None."""
    if parent_id is None:
        return None
    if previous is not None and previous.id == parent_id and \
            previous.session_id == session_id:
        return previous
    try:
        return load_manifest(volume, session_id, parent_id)
    except ParheliaError:  # another session's (checkpoint zero), or unreadable
        return None


def _delta(parent: Manifest | None, tree: Mapping[str, Entry]) -> tuple[TreeDelta | None,
                                                                         Manifest | None]:
    """The tree as a delta against the parent's base, when that stays small."""
    base = parent if parent is None or parent.delta is None else parent.base
    if base is None:
        return None, None
    delta = TreeDelta.between(base, tree)
    if delta.size > max(REBASE_MIN_ENTRIES, len(base.tree) // REBASE_FRACTION):
        return None, None
    return delta, base


def snapshot(
    root: Path,
    *,
    volume: Volume,
    session_id: str,
    parent_id: str | None,
    trigger: str,
    message: str = "",
    files: Iterable[str] | None = None,
    stat_cache: StatCache | Path | None = None,
    conversation: Conversation | None = None,
    environment: Mapping[str, Any] | None = None,
    git: Mapping[str, Any] | None = None,
    workers: int | None = None,
    progress: Report | None = None,
    previous: Manifest | None = None,
) -> Manifest:
    """Checkpoint ``root`` (or only ``files``, relative to it) and store the manifest.
    ``progress`` hears the bytes read of the files that had to be read.

    Never follows symlinks; skips sockets, FIFOs, devices, unreadable files and
    symlinks leaving the tree (listed in the manifest's ``skipped``). With a stat cache,
    files whose (size, mtime_ns, inode) are unchanged are not read again. ``previous``
    is the parent manifest if the caller holds it (else it is read from the volume).
    """
    started = time.monotonic()
    start_ns = time.time_ns()
    root = Path(root)
    if not root.is_dir():
        raise refuse(f"cannot checkpoint {root}: not a directory")
    cache = stat_cache if isinstance(stat_cache, StatCache) else StatCache(stat_cache)
    parent = _parent(volume, session_id, parent_id, previous)
    snap = _Snapshotter(root, BlobStore(volume), cache, start_ns,
                        parent.tree if parent is not None else {})
    # The conversation first, then the workspace: while the agent keeps running, the
    # workspace may then be a little ahead of the conversation (work the resumed agent
    # finds on disk) but never behind it (work the conversation claims and disk lacks).
    conv = snap.conversation(conversation, parent.conversation if parent else {}) \
        if conversation is not None else {}
    entries = walk(root) if files is None else _listed(root, files)
    todo = snap.scan(entries)
    snap.store_files(todo, workers or default_workers(), progress)
    snap.drop_escaping_symlinks()

    file_entries = [e for e in snap.tree.values() if e.type == "file"]
    skipped = snap.skipped[:MAX_SKIPPED_LISTED]
    stats = CheckpointStats(
        files=len(file_entries),
        bytes=sum(e.size for e in file_entries),
        new_bytes=snap.new_bytes,
        dirs=sum(1 for e in snap.tree.values() if e.type == "dir"),
        symlinks=sum(1 for e in snap.tree.values() if e.type == "symlink"),
        conversation_files=len(conv),
        conversation_bytes=sum(r.size for r in conv.values()),
        rehashed_files=snap.rehashed,
        skipped=len(skipped),
    )
    manifest = Manifest(
        session_id=session_id,
        parent_id=parent_id,
        trigger=trigger,
        message=message,
        created_at=utc_now(),
        tree=snap.tree,
        conversation=conv,
        environment=dict(environment or {}),
        git=dict(git) if git is not None else None,
        stats=stats,
        skipped=skipped,
    )
    manifest.delta, manifest.base = _delta(parent, snap.tree) if files is None else (None, None)
    manifest.stats = dataclasses.replace(
        stats, duration_ms=int((time.monotonic() - started) * 1000))
    save_manifest(volume, manifest)
    seen = {TREE_NS + p for p, e in snap.tree.items() if e.type == "file"}
    seen |= {CONVERSATION_NS + p for p in conv}
    cache.retain(seen)
    cache.save()
    return manifest
