"""The patch and the line counts between two checkpoints' trees, made by git (ADR 0042).

``task diff`` and ``checkpoint diff`` compare two manifests. The two versions of each
changed text file are written as git objects (loose and uncompressed: the bytes ``git
hash-object -w`` would write, without a process per file) into a private, temporary
git directory, with one tree per side; one ``git diff`` between the two trees gives the
patch, whose hunks give the counts (``--stat`` asks git for ``--numstat`` alone: no
patch is built). Git's diff is linear where difflib is quadratic on repeated lines (a
lockfile took 4.4 s with difflib, a file of repeated lines 53 s; ``bench/diff.py``).
Where git is missing, difflib does the same job (:func:`unified_diff`).

Nothing in the trees configures that git: its directory and config are ours (no
attributes, no diff drivers or textconv, no fsmonitor; a ``.gitattributes`` in a tree
is only a file of the tree, and the scratch HEAD is unborn, so no tree is an attribute
source) and it runs through :mod:`parhelia.gitsafe` (no system or global config, a
minimal environment). Binary stays binary by our rule, not git's: a file with a NUL,
not UTF-8, or larger than ``MAX_TEXT_BYTES`` is named ("Binary files ... differ")
without being given to git, so the patch is always text.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from parhelia import gitsafe
from parhelia.checkpoint import BlobStore, Manifest, diff
from parhelia.checkpoint.diff import (
    Change,
    binary_line,
    file_header,
    header_path,
    too_large,
    unified_diff,
    unquote_path,
)
from parhelia.checkpoint.manifest import Entry
from parhelia.errors import ParheliaError
from parhelia.volume import Volume

log = structlog.get_logger(__name__)

GIT_TIMEOUT = 120.0


@dataclass
class Lines:
    """One file's counts: lines added and removed, or binary."""

    added: int = 0
    removed: int = 0
    binary: bool = False


@dataclass(frozen=True)
class Patch:
    text: str
    """The git-style patch ("" when only the counts were asked for)."""
    lines: dict[str, Lines]
    """Counts by path, for every changed path (zeros for a mode-only change)."""


def build(a: Manifest | None, b: Manifest, *, volume: Volume, ignore: Iterable[str] = (),
          with_text: bool = True, context: int = 3) -> Patch:
    """The patch from ``a`` to ``b`` (None: an empty tree), ``ignore`` naming path
    prefixes left out; ``with_text=False`` for the counts alone."""
    skip = tuple(ignore)
    if shutil.which("git") is None:
        return _by_difflib(a, b, volume, skip, with_text, context)
    try:
        return _by_git(a, b, volume, skip, with_text, context)
    except _GitFailed as exc:
        log.warning("diff_by_git_failed", error=str(exc))
        return _by_difflib(a, b, volume, skip, with_text, context)


class _GitFailed(Exception):
    pass


def _by_difflib(a: Manifest | None, b: Manifest, volume: Volume, skip: tuple[str, ...],
                with_text: bool, context: int) -> Patch:
    text = unified_diff(a, b, volume=volume, ignore=skip, context=context)
    lines = {c.path: Lines() for c in diff(a, b, ignore=skip).changes}
    for path, counted in count(text).items():
        lines[path] = counted
    return Patch(text if with_text else "", lines)


def _content(store: BlobStore, entry: Entry | None) -> bytes | None:
    """What git compares for ``entry`` (b"" for a missing side), or None when our rule
    says binary (a NUL, not UTF-8) or the file is too large to read."""
    if entry is None:
        return b""
    if entry.type == "symlink":
        return os.fsencode(entry.target or "")
    if too_large(entry) or entry.blob is None:
        return None
    data = store.read(entry.blob, entry.size)
    if b"\0" in data:
        return None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return data


def _git_mode(entry: Entry) -> bytes:
    if entry.type == "symlink":
        return b"120000"
    return b"100755" if entry.mode & 0o100 else b"100644"


def _by_git(a: Manifest | None, b: Manifest, volume: Volume, skip: tuple[str, ...],
            with_text: bool, context: int) -> Patch:
    store = BlobStore(volume)
    old_tree = {} if a is None else a.tree
    changes = diff(a, b, ignore=skip).changes
    lines: dict[str, Lines] = {c.path: Lines() for c in changes}
    ours: dict[str, str] = {}  # path -> the section we write (mode-only, binary)
    scratch = _scratch_dir(changes, old_tree, b)
    with tempfile.TemporaryDirectory(prefix="parhelia-diff-", dir=scratch) as tmp:
        objects = _Objects(Path(tmp))
        sides: tuple[dict[str, tuple[bytes, bytes]], ...] = ({}, {})  # path -> (mode, id)
        for change in changes:
            ea, eb = old_tree.get(change.path), b.tree.get(change.path)
            if change.mode_only:
                ours[change.path] = file_header(change.path, ea, eb)
                continue
            old, new = _content(store, ea), _content(store, eb)
            if old is None or new is None:
                lines[change.path].binary = True
                ours[change.path] = (file_header(change.path, ea, eb)
                                     + binary_line(change.path, ea, eb))
                continue
            for side, entry, data in ((0, ea, old), (1, eb, new)):
                if entry is not None:
                    sides[side][change.path] = (_git_mode(entry), objects.write(b"blob", data))
        sections: dict[str, list[str]] = {}
        if sides[0] or sides[1]:
            old_id, new_id = (objects.tree(side).hex() for side in sides)
            # With the patch, its hunks give the counts (git's numstat counts the same
            # hunks; asking for both would make git diff every file twice).
            out = _git(objects.git_dir, [
                "diff", "--no-renames", "--no-ext-diff", "--no-textconv", "--no-color",
                "--src-prefix=a/", "--dst-prefix=b/", f"-U{context}",
                "-p" if with_text else "--numstat", old_id, new_id, "--"])
            text = out.decode("utf-8", errors="replace")
            lines.update(count(text) if with_text else numstat_lines(text))
            if with_text:
                sections = _sections(text)
    if not with_text:
        return Patch("", lines)
    parts: list[str] = []
    for change in changes:
        parts.append(ours.get(change.path, ""))
        parts.extend(sections.get(change.path, ()))
    return Patch("".join(parts), lines)


MEMORY_DIR = Path("/dev/shm")
MAX_MEMORY_BYTES = 64 << 20


def _scratch_dir(changes: list[Change], old: dict[str, Entry], new: Manifest) -> str | None:
    """Where the scratch repository goes: a memory file system when there is one and the
    files are small enough (creating and deleting files costs milliseconds each on a
    disk that discards freed blocks), else the temp directory."""
    total = 0
    for change in changes:
        for entry in (old.get(change.path), new.tree.get(change.path)):
            if entry is not None and not too_large(entry):
                total += entry.size
    if total <= MAX_MEMORY_BYTES and os.access(MEMORY_DIR, os.W_OK | os.X_OK):
        return str(MEMORY_DIR)
    return None


class _Objects:
    """A bare git directory written by us (our config only, HEAD unborn) and the loose
    objects written into it (SHA-1, zlib level 0: written once, read once)."""

    def __init__(self, tmp: Path) -> None:
        self.git_dir = tmp / "git"
        for sub in ("objects", "refs/heads", "refs/tags"):
            (self.git_dir / sub).mkdir(parents=True)
        (self.git_dir / "HEAD").write_text("ref: refs/heads/unborn\n")
        (self.git_dir / "config").write_text(
            "[core]\n\trepositoryformatversion = 0\n\tbare = true\n")
        self._written: set[bytes] = set()

    def write(self, kind: bytes, body: bytes) -> bytes:
        """Store one object; its raw 20-byte id."""
        head = b"%s %d\0" % (kind, len(body))
        digest = hashlib.sha1(head)  # noqa: S324 - git's object id, not a security hash
        digest.update(body)
        raw = digest.digest()
        if raw not in self._written:
            self._written.add(raw)
            hexed = raw.hex()
            folder = self.git_dir / "objects" / hexed[:2]
            folder.mkdir(exist_ok=True)
            packer = zlib.compressobj(0)
            with open(folder / hexed[2:], "wb") as fh:
                fh.write(packer.compress(head))
                fh.write(packer.compress(body))
                fh.write(packer.flush())
        return raw

    def tree(self, files: dict[str, tuple[bytes, bytes]]) -> bytes:
        """The id of the tree holding ``files`` (path -> (mode, blob id)), subtrees
        written on the way."""
        nested: dict[bytes, Any] = {}
        for path, leaf in files.items():
            *dirs, name = os.fsencode(path).split(b"/")
            node = nested
            for part in dirs:
                node = node.setdefault(part, {})
            node[name] = leaf
        return self._tree(nested)

    def _tree(self, node: dict[bytes, Any]) -> bytes:
        entries = []
        for name, value in node.items():
            if isinstance(value, dict):
                # git orders a subtree as if its name ended with "/"
                entries.append((name + b"/", b"40000", name, self._tree(value)))
            else:
                entries.append((name, value[0], name, value[1]))
        entries.sort()
        body = b"".join(b"%s %s\0%s" % (mode, name, raw) for _, mode, name, raw in entries)
        return self.write(b"tree", body)


def _git(git_dir: Path, args: list[str]) -> bytes:
    proc = gitsafe.run([f"--git-dir={git_dir}", *args], timeout=GIT_TIMEOUT)
    if proc.returncode != 0:
        raise _GitFailed(f"git {args[0]}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


@dataclass(frozen=True)
class FileStat:
    path: str
    kind: str  # added | removed | modified
    lines: Lines


_KINDS = {"A": "added", "D": "removed"}


def summary(out: str) -> tuple[list[FileStat], str]:
    """``git diff --no-renames --raw --numstat [-p]`` output -> (the files, each with its
    kind and counts; the patch, "" without ``-p``)."""
    head, _, patch = out.partition("\ndiff --git ")
    kinds: dict[str, str] = {}
    for line in head.split("\n"):
        if line.startswith(":") and "\t" in line:
            meta, path = line.split("\t", 1)
            kinds.setdefault(_unquoted(path), _KINDS.get(meta.split(" ")[-1], "modified"))
    counted = numstat_lines(head)
    files = [FileStat(path, kind, counted.get(path) or Lines()) for path, kind in kinds.items()]
    return files, ("diff --git " + patch if patch else "")


def _unquoted(path: str) -> str:
    return unquote_path(path[1:]) if path.startswith('"') else path


def numstat_lines(numstat: str) -> dict[str, Lines]:
    """``git diff --numstat`` output (no ``-z``: quoted paths) -> counts by path. A path
    that changed type (file <-> symlink) has two lines; they add up."""
    out: dict[str, Lines] = {}
    for line in numstat.split("\n"):
        fields = line.split("\t", 2)
        if len(fields) != 3:
            continue
        added, removed, path = fields
        counted = out.setdefault(_unquoted(path), Lines())
        if added == "-":
            counted.binary = True
        else:
            counted.added += int(added)
            counted.removed += int(removed)
    return out


def _sections(patch: str) -> dict[str, list[str]]:
    """A git patch cut at its ``diff --git`` lines, by path (a line of a file's content
    never starts with "diff", as every one carries a +, - or space prefix)."""
    out: dict[str, list[str]] = {}
    starts = [0]
    at = patch.find("\ndiff --git ")
    while at != -1:
        starts.append(at + 1)
        at = patch.find("\ndiff --git ", at + 1)
    for start, end in zip(starts, [*starts[1:], len(patch)], strict=True):
        section = patch[start:end]
        path = header_path(section.split("\n", 1)[0])
        if path is None:
            raise ParheliaError("E900", "git wrote a patch section without its header")
        out.setdefault(path, []).append(section)
    return out


def count(patch: str) -> dict[str, Lines]:
    """Lines added and removed (and binary) by path in a git-style patch, read hunk by
    hunk: a hunk's header says how many old and new lines it holds, so an added line
    whose text starts with "++" (``+++...``) is an added line, not a file header."""
    out: dict[str, Lines] = {}
    current: Lines | None = None
    old_left = new_left = 0
    for line in patch.split("\n"):
        if old_left > 0 or new_left > 0:
            assert current is not None
            if line.startswith("+"):
                current.added += 1
                new_left -= 1
            elif line.startswith("-"):
                current.removed += 1
                old_left -= 1
            elif not line.startswith("\\"):  # context (" "), in both versions
                old_left -= 1
                new_left -= 1
            continue
        if line.startswith("diff --git "):
            path = header_path(line)
            current = None if path is None else out.setdefault(path, Lines())
        elif current is None:
            continue
        elif line.startswith("Binary files "):
            current.binary = True
        elif line.startswith("@@ -"):
            old_left, new_left = _hunk_sizes(line)
    return out


def _hunk_sizes(header: str) -> tuple[int, int]:
    """(old, new) line counts of ``@@ -a,b +c,d @@`` (a missing count is 1)."""
    try:
        old, new = header.split(" ")[1:3]
        return (int(old.split(",")[1]) if "," in old else 1,
                int(new.split(",")[1]) if "," in new else 1)
    except (ValueError, IndexError):
        return 0, 0
