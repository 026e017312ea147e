"""Restore a checkpoint: validate everything, build it in staging, then swap.

The manifest is hostile input. All static rules (``checks``) and the presence
and size of every blob are checked before the first write; blobs are hashed
while they are copied into a staging directory; only a complete, verified
staging tree replaces the destination. Any failure raises E600 and leaves the
destination untouched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from parhelia.checkpoint.cas import KERNEL_COPY_MIN, SMALL, BlobError, BlobStore
from parhelia.checkpoint.checks import check_manifest, restored_mode
from parhelia.checkpoint.fastcopy import hash_fd, kernel_copy
from parhelia.checkpoint.manifest import BlobRef, Entry, Manifest, refuse
from parhelia.checkpoint.projects import Conversation
from parhelia.checkpoint.snapshot import CONVERSATION_NS, TREE_NS, default_workers
from parhelia.checkpoint.statcache import StatCache
from parhelia.progress import Report
from parhelia.volume import Volume

CONVERSATION_FILE_MODE = 0o600
CONVERSATION_DIR_MODE = 0o700


@dataclass
class RestoreStats:
    files: int
    bytes: int
    duration_ms: int
    conversation_files: int = 0


def restore(
    manifest: Manifest,
    dest: Path,
    *,
    volume: Volume,
    conversation_dir: Path | None = None,
    conversation: Conversation | None = None,
    stat_cache: StatCache | Path | None = None,
    workers: int | None = None,
    in_place: bool | None = None,
    progress: Report | None = None,
) -> RestoreStats:
    """Make ``dest`` exactly the manifest's tree (and the session's conversation files —
    ``conversation``, or only its project dir ``conversation_dir`` — what it recorded).

    ``in_place`` forces the swap strategy (default: a sibling staging directory
    and two renames, or staging inside ``dest`` when ``dest`` is a mount point
    or its parent is not writable). ``progress`` hears the bytes of the tree's files
    written so far.
    """
    started = time.monotonic()
    dest = Path(os.path.realpath(Path(dest).parent)) / Path(dest).name
    store = BlobStore(volume)
    check_manifest(manifest)
    _check_blobs(store, [(p, e.blob, e.size) for p, e in manifest.tree.items()
                         if e.type == "file" and e.blob is not None])
    _check_blobs(store, [(p, c.blob, c.size) for p, r in manifest.conversation.items()
                         for c in r.chunks])
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise refuse(f"restore destination {dest} is not a directory")
    total = sum(e.size for e in manifest.tree.values() if e.type == "file")
    total += sum(r.size for r in manifest.conversation.values())
    _check_space(dest, total)
    if in_place is None:
        in_place = _needs_in_place(dest)
    workers = workers or default_workers()

    conv = conversation
    if conv is None and conversation_dir is not None:
        conv = Conversation(conversation_dir, "")
    staging = _staging_dir(dest, in_place)
    conv_staging: dict[str, tuple[Path, Path]] = {}
    try:
        _build_tree(store, manifest.tree, staging, workers, progress)
        if conv is not None and manifest.conversation:
            conv_staging = _build_conversation(store, manifest.conversation, conv, workers)
    except BaseException:
        _force_rmtree(staging)
        for built, _target in conv_staging.values():
            _force_rmtree(built)
        raise
    # Everything is verified: from here on we only move things into place.
    if in_place:
        _swap_contents(staging, dest)
    else:
        replace_dir(staging, dest)
    for prefix, (built, target) in conv_staging.items():
        if prefix:
            replace_dir(built, target)
        else:
            _swap_entries(built, target)
    _fill_cache(stat_cache, manifest, dest, conv)
    files = [e for e in manifest.tree.values() if e.type == "file"]
    return RestoreStats(
        files=len(files),
        bytes=sum(e.size for e in files),
        duration_ms=int((time.monotonic() - started) * 1000),
        conversation_files=len(manifest.conversation) if conv is not None else 0,
    )


# -- checks -----------------------------------------------------------------------------


def _check_blobs(store: BlobStore, blobs: list[tuple[str, str | None, int]]) -> None:
    sizes: dict[str, int] = {}
    for path, digest, size in blobs:
        assert digest is not None
        if digest not in sizes:
            try:
                sizes[digest] = store.size(digest)
            except FileNotFoundError:
                raise refuse(f"blob {digest[:12]}… of {path!r} is missing") from None
        if sizes[digest] != size:
            raise refuse(f"{path!r}: recorded size {size} differs from its blob "
                         f"({sizes[digest]} bytes)")


def _check_space(dest: Path, total: int) -> None:
    probe = dest if dest.exists() else dest.parent
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(probe).free
        if total > free:
            raise refuse(f"the checkpoint needs {total} bytes but only {free} are free")


def _needs_in_place(dest: Path) -> bool:
    parent = dest.parent
    if not os.access(parent, os.W_OK):
        return True
    if dest.exists():
        return os.stat(dest).st_dev != os.stat(parent).st_dev or os.path.ismount(dest)
    return False


# -- building the staging tree ----------------------------------------------------------


def _staging_dir(dest: Path, in_place: bool) -> Path:
    token = secrets.token_hex(6)
    if in_place:
        dest.mkdir(parents=True, exist_ok=True)
        path = dest / f".parhelia-staging-{token}"
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        path = dest.parent / f".{dest.name}.parhelia-staging-{token}"
    path.mkdir(mode=0o700)
    return path


def _write_blob(store: BlobStore, digest: str, size: int, target: Path, mode: int) -> None:
    """Write one file into staging and verify what was written (size and sha256)."""
    fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        source = store.local_path(digest)
        if source is not None and size >= KERNEL_COPY_MIN:
            try:
                src = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise BlobError(f"blob {digest} is missing") from None
            try:
                kernel_copy(src, fd)
            finally:
                os.close(src)
            if hash_fd(fd) != (digest, size):  # hash the copy: what we verify is what we wrote
                raise BlobError(f"blob {digest} is corrupt")
        elif size <= SMALL:
            data = store.read(digest, size)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        else:
            store.copy_to_fd(digest, size, fd)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _run_all(jobs: list[Callable[[], None]], workers: int, sizes: list[int] | None = None,
             progress: Report | None = None) -> None:
    if not jobs:
        return
    total = sum(sizes or ())
    done = 0
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for i, future in enumerate([pool.submit(job) for job in jobs]):
                future.result()
                if progress is not None and sizes is not None:
                    done += sizes[i]
                    progress(done, total)
    except BlobError as exc:
        raise refuse(str(exc)) from None
    except OSError as exc:
        raise refuse(f"restore failed while writing: {exc.strerror or exc}") from None


def _build_tree(store: BlobStore, tree: dict[str, Entry], staging: Path, workers: int,
                progress: Report | None = None) -> None:
    dirs = sorted(p for p, e in tree.items() if e.type == "dir")
    for path in dirs:
        (staging / path).mkdir(mode=0o700, parents=True, exist_ok=True)
    jobs: list[Callable[[], None]] = []
    sizes: list[int] = []
    for path, entry in tree.items():
        if entry.type == "file" and entry.blob is not None:
            parent = (staging / path).parent
            parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            jobs.append(_job(store, entry.blob, entry.size, staging / path,
                             restored_mode(entry)))
            sizes.append(entry.size)
    _run_all(jobs, workers, sizes, progress)
    for path, entry in tree.items():
        if entry.type == "symlink" and entry.target is not None:
            (staging / path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.symlink(entry.target, staging / path)
    for path in sorted(dirs, key=lambda p: p.count("/"), reverse=True):
        os.chmod(staging / path, restored_mode(tree[path]))


def _job(store: BlobStore, digest: str, size: int, target: Path,
         mode: int) -> Callable[[], None]:
    return lambda: _write_blob(store, digest, size, target, mode)


def _chunks_job(store: BlobStore, ref: BlobRef, target: Path) -> Callable[[], None]:
    if len(ref.chunks) == 1:
        return _job(store, ref.last, ref.size, target, CONVERSATION_FILE_MODE)
    return lambda: _write_chunks(store, ref, target)


def _write_chunks(store: BlobStore, ref: BlobRef, target: Path) -> None:
    """A conversation file of several chunks: each streamed in order, each verified."""
    fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        for chunk in ref.chunks:
            store.copy_to_fd(chunk.blob, chunk.size, fd)
        os.fchmod(fd, CONVERSATION_FILE_MODE)
    finally:
        os.close(fd)


def _build_conversation(store: BlobStore, entries: dict[str, BlobRef], conv: Conversation,
                        workers: int) -> dict[str, tuple[Path, Path]]:
    """Stage the conversation files: prefix -> (staging dir, where it goes). The project
    dir's entries ("" prefix) are swapped in one by one; a side store's directory (e.g.
    ``@file-history``) belongs to the session and is replaced whole — emptied when the
    checkpoint holds none of its files. Stores unknown here are left out."""
    targets: dict[str, Path] = {"": conv.project_dir, **conv.side_dirs()}
    staged: dict[str, tuple[Path, Path]] = {}
    jobs: list[Callable[[], None]] = []
    try:
        for prefix, target in targets.items():
            mine = {p: r for p, r in entries.items() if _prefix(p) == prefix}
            if prefix and not mine and not os.path.lexists(target):
                continue
            staging = _staging_dir(target, in_place=False)
            os.chmod(staging, CONVERSATION_DIR_MODE)
            staged[prefix] = (staging, target)
            for path, ref in mine.items():
                rel = path.partition("/")[2] if prefix else path
                (staging / rel).parent.mkdir(mode=CONVERSATION_DIR_MODE, parents=True,
                                             exist_ok=True)
                jobs.append(_chunks_job(store, ref, staging / rel))
        _run_all(jobs, workers)
    except BaseException:
        for built, _target in staged.values():
            _force_rmtree(built)
        raise
    return staged


def _prefix(path: str) -> str:
    head = path.partition("/")[0]
    return head if head.startswith("@") else ""


# -- swapping into place ----------------------------------------------------------------


def replace_dir(staging: Path, dest: Path) -> None:
    """Put the directory ``staging`` at ``dest`` (same filesystem), removing the old one."""
    mode = 0o755
    if os.path.lexists(dest):
        mode = stat.S_IMODE(os.stat(dest).st_mode)
        old = dest.parent / f".{dest.name}.parhelia-old-{secrets.token_hex(6)}"
        os.rename(dest, old)
        try:
            os.rename(staging, dest)
        except OSError:
            os.rename(old, dest)
            _force_rmtree(staging)
            raise refuse(f"could not move the restored tree into {dest}") from None
        _force_rmtree(old)
    else:
        os.rename(staging, dest)
    os.chmod(dest, mode)


def _swap_contents(staging: Path, dest: Path) -> None:
    """Swap for a destination that cannot be renamed (a mount point): move its children."""
    old = dest / f".parhelia-old-{secrets.token_hex(6)}"
    old.mkdir(mode=0o700)
    for name in os.listdir(dest):
        if dest / name not in (staging, old):
            os.rename(dest / name, old / name)
    for name in os.listdir(staging):
        os.rename(staging / name, dest / name)
    os.rmdir(staging)
    _force_rmtree(old)


def _swap_entries(staging: Path, target: Path) -> None:
    """Replace the top-level entries of ``target`` that ``staging`` holds."""
    target.mkdir(mode=CONVERSATION_DIR_MODE, parents=True, exist_ok=True)
    old = target.parent / f".{target.name}.parhelia-old-{secrets.token_hex(6)}"
    old.mkdir(mode=0o700)
    for name in os.listdir(staging):
        if os.path.lexists(target / name):
            os.rename(target / name, old / name)
        os.rename(staging / name, target / name)
    os.rmdir(staging)
    _force_rmtree(old)


def _force_rmtree(path: Path) -> None:
    """Remove a tree even when it holds read-only directories."""

    def onerror(func: Callable[..., object], failed: str, exc_info: object) -> None:
        parent = os.path.dirname(failed)
        with contextlib.suppress(OSError):
            os.chmod(parent, stat.S_IMODE(os.lstat(parent).st_mode) | 0o700)
        try:
            func(failed)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno not in (errno.ENOENT,):
                raise

    if os.path.islink(path):  # e.g. a store directory the agent replaced by a symlink
        os.unlink(path)
    elif os.path.lexists(path):
        shutil.rmtree(path, onerror=onerror)


def _fill_cache(stat_cache: StatCache | Path | None, manifest: Manifest, dest: Path,
                conversation: Conversation | None) -> None:
    """Seed the stat cache with the files just written, so the next snapshot skips them."""
    if stat_cache is None:
        return
    cache = stat_cache if isinstance(stat_cache, StatCache) else StatCache(stat_cache)
    cache.clear()
    for path, entry in manifest.tree.items():
        if entry.type == "file" and entry.blob is not None:
            with contextlib.suppress(OSError):
                cache.record(TREE_NS + path, os.lstat(dest / path), entry.blob, start_ns=None)
    if conversation is not None:
        for path, ref in manifest.conversation.items():
            where = conversation.path_of(path)
            with contextlib.suppress(OSError):
                if where is not None:
                    cache.record(CONVERSATION_NS + path, os.lstat(where), ref.last,
                                 start_ns=None)
    cache.save()
