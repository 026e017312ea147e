"""A repository's files as the environment resolver reads them: from a directory on this
machine (``parhelia env show DIR``) or from an uploaded workspace (checkpoint zero).

Both are hostile input (a repository cloned from anywhere): only regular files are read,
never through a symlink (of the file or of a directory above it), each bounded in size;
paths are relative and normalised. Nothing here executes anything.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from parhelia.checkpoint import BlobStore, Manifest
from parhelia.checkpoint.checks import check_path
from parhelia.errors import ParheliaError
from parhelia.redact import looks_like_secret_file
from parhelia.safeio import read_regular

MAX_FILE_BYTES = 1 << 20
"""The largest environment file, devcontainer.json or manifest read (1 MiB)."""
MAX_CONTEXT_FILES = 100_000
MAX_CONTEXT_BYTES = 2 << 30
"""The most a Dockerfile's build context may hold (files, bytes)."""


class TooLarge(ParheliaError):
    def __init__(self, rel: str, limit: int) -> None:
        super().__init__("E101", f"{rel}: larger than {limit >> 10} KiB; not read", file=rel)


@dataclass(frozen=True)
class ContextFile:
    rel: str
    mode: int
    size: int


class SourceTree(Protocol):
    """The files of one repository (relative POSIX paths)."""

    label: str
    """What the tree is, for messages (a directory, or "the uploaded workspace")."""

    def read(self, rel: str, limit: int = MAX_FILE_BYTES) -> bytes | None:
        """A regular file's bytes; None when absent, a symlink or not a regular file;
        :class:`TooLarge` past ``limit``."""
        ...

    def names(self, rel: str = "") -> list[str]:
        """The entry names directly under directory ``rel`` (sorted; [] when absent)."""
        ...

    def files(self, prefix: str) -> Iterator[ContextFile]:
        """Every regular file at or under ``prefix`` ("" = all), sorted; credential-looking
        files and ``.git/`` left out (a build context never carries them)."""
        ...

    def content(self, rel: str) -> bytes:
        """A file :meth:`files` listed, whole."""
        ...


def normal(rel: str) -> str:
    """``rel`` checked as a relative, normalised path inside the tree (E101 otherwise)."""
    if rel in ("", "."):
        return ""
    try:
        return check_path(rel, "path")
    except ParheliaError as exc:
        raise ParheliaError("E101", exc.message, file=rel) from None


def _kept(rel: str) -> bool:
    return not (rel == ".git" or rel.startswith(".git/")) and not looks_like_secret_file(rel)


class DirTree:
    """A directory on this machine."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.label = str(self.root)

    def _path(self, rel: str) -> Path | None:
        """``root/rel`` when no component of it is a symlink (None otherwise)."""
        rel = normal(rel)
        path = self.root
        for part in rel.split("/") if rel else []:
            path = path / part
            try:
                if stat.S_ISLNK(os.lstat(path).st_mode):
                    return None
            except OSError:
                return None
        return path

    def read(self, rel: str, limit: int = MAX_FILE_BYTES) -> bytes | None:
        path = self._path(rel)
        if path is None:
            return None
        got = read_regular(path, limit, truncate=True)
        if got is None:
            return None
        data, st = got
        if st.st_size > limit:
            raise TooLarge(rel, limit)
        return data

    def names(self, rel: str = "") -> list[str]:
        path = self._path(rel)
        if path is None:
            return []
        try:
            return sorted(os.listdir(path))
        except OSError:
            return []

    def files(self, prefix: str) -> Iterator[ContextFile]:
        start = self._path(prefix)
        if start is None:
            return
        base = normal(prefix)
        try:
            st = os.lstat(start)
        except OSError:
            return
        if stat.S_ISREG(st.st_mode):
            if _kept(base):
                yield ContextFile(base, stat.S_IMODE(st.st_mode), st.st_size)
            return
        found: list[ContextFile] = []
        for dirpath, dirnames, filenames in os.walk(start):
            here = Path(dirpath).relative_to(self.root).as_posix()
            here = "" if here == "." else here
            dirnames[:] = sorted(d for d in dirnames
                                 if not os.path.islink(os.path.join(dirpath, d))
                                 and _kept(posixpath.join(here, d)))
            for name in filenames:
                rel = posixpath.join(here, name)
                try:
                    st = os.lstat(os.path.join(dirpath, name))
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode) and _kept(rel):
                    found.append(ContextFile(rel, stat.S_IMODE(st.st_mode), st.st_size))
        yield from sorted(found, key=lambda f: f.rel)

    def content(self, rel: str) -> bytes:
        data = self.read(rel, MAX_CONTEXT_BYTES)
        if data is None:
            raise ParheliaError("E101", f"{rel}: no longer a regular file of {self.label}",
                                file=rel)
        return data


class ManifestTree:
    """An uploaded workspace: checkpoint zero's manifest over the blob store."""

    def __init__(self, manifest: Manifest, store: BlobStore,
                 label: str = "the uploaded workspace") -> None:
        self.manifest = manifest
        self.store = store
        self.label = label

    def read(self, rel: str, limit: int = MAX_FILE_BYTES) -> bytes | None:
        rel = normal(rel)
        entry = self.manifest.tree.get(rel)
        if entry is None or entry.type != "file" or entry.blob is None:
            return None
        if entry.size > limit:
            raise TooLarge(rel, limit)
        try:
            return self.store.read(entry.blob, entry.size)
        except Exception:  # a missing or corrupt blob: the file is not there to read
            return None

    def names(self, rel: str = "") -> list[str]:
        rel = normal(rel)
        prefix = f"{rel}/" if rel else ""
        out = {p[len(prefix):].split("/", 1)[0] for p in self.manifest.tree
               if p.startswith(prefix) and p != rel}
        return sorted(out)

    def files(self, prefix: str) -> Iterator[ContextFile]:
        base = normal(prefix)
        for rel in sorted(self.manifest.tree):
            entry = self.manifest.tree[rel]
            if entry.type != "file" or not _kept(rel):
                continue
            if base and rel != base and not rel.startswith(base + "/"):
                continue
            yield ContextFile(rel, entry.mode, entry.size)

    def content(self, rel: str) -> bytes:
        entry = self.manifest.tree.get(normal(rel))
        if entry is None or entry.type != "file" or entry.blob is None:
            raise ParheliaError("E101", f"{rel}: not a file of {self.label}", file=rel)
        return self.store.read(entry.blob, entry.size)


def materialise(tree: SourceTree, prefix: str, dest: Path) -> tuple[int, int]:
    """Write the regular files of ``tree`` under ``prefix`` into ``dest`` (a fresh private
    directory), paths relative to ``prefix``: what a Dockerfile build may read, and only
    that -- no symlink, no ``.git``, no credential-looking file. (files, bytes); E101
    past :data:`MAX_CONTEXT_FILES` / :data:`MAX_CONTEXT_BYTES`."""
    count = total = 0
    base = normal(prefix)
    for f in tree.files(base):
        count += 1
        total += f.size
        if count > MAX_CONTEXT_FILES or total > MAX_CONTEXT_BYTES:
            raise ParheliaError("E101", f"build context {base or '.'}: more than "
                                f"{MAX_CONTEXT_FILES:,} files or {MAX_CONTEXT_BYTES >> 30} GiB",
                                file=base or ".")
        rel = f.rel[len(base) + 1:] if base else f.rel
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                     0o755 if f.mode & 0o100 else 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(tree.content(f.rel))
    return count, total
