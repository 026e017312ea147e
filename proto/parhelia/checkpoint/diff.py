"""Compare two manifests: changed paths with sizes, and a git-style patch of text files."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from parhelia.checkpoint.cas import BlobStore
from parhelia.checkpoint.manifest import Entry, Manifest
from parhelia.volume import Volume

MAX_TEXT_BYTES = 1 << 20


@dataclass(frozen=True)
class Change:
    path: str
    kind: str  # added | removed | modified
    type: str  # file | symlink (the new type; the old one for removals)
    old_size: int | None = None
    new_size: int | None = None
    mode_only: bool = False


@dataclass
class TreeDiff:
    added: list[Change] = field(default_factory=list)
    removed: list[Change] = field(default_factory=list)
    modified: list[Change] = field(default_factory=list)

    @property
    def changes(self) -> list[Change]:
        return sorted(self.added + self.removed + self.modified, key=lambda c: c.path)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.modified)

    def to_dict(self) -> dict[str, Any]:
        return {k: [asdict(c) for c in getattr(self, k)] for k in ("added", "removed", "modified")}


def _size(entry: Entry) -> int | None:
    return entry.size if entry.type == "file" else None


def _ignored(path: str, ignore: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in ignore)


def _items(manifest: Manifest | None, ignore: tuple[str, ...]) -> dict[str, Entry]:
    if manifest is None:
        return {}
    return {p: e for p, e in manifest.tree.items() if e.type != "dir" and not _ignored(p, ignore)}


def diff(a: Manifest | None, b: Manifest, *, ignore: Iterable[str] = ()) -> TreeDiff:
    """What changed from ``a`` to ``b`` (files and symlinks; directories are implied).

    ``ignore`` lists path prefixes to leave out (e.g. ``(".git",)``).
    """
    skip = tuple(ignore)
    old, new = _items(a, skip), _items(b, skip)
    out = TreeDiff()
    for path in sorted(old.keys() | new.keys()):
        ea, eb = old.get(path), new.get(path)
        if ea is None and eb is not None:
            out.added.append(Change(path, "added", eb.type, None, _size(eb)))
        elif eb is None and ea is not None:
            out.removed.append(Change(path, "removed", ea.type, _size(ea), None))
        elif ea is not None and eb is not None and ea != eb:
            mode_only = ea.type == eb.type == "file" and ea.blob == eb.blob
            out.modified.append(Change(path, "modified", eb.type, _size(ea), _size(eb),
                                       mode_only))
    return out


def too_large(entry: Entry | None) -> bool:
    """A file whose content a patch names as binary without reading it."""
    return entry is not None and entry.type == "file" and (
        entry.blob is None or entry.size > MAX_TEXT_BYTES)


def _text(store: BlobStore, entry: Entry | None) -> list[str] | None:
    """The lines of a file entry, or None when binary / too large / a symlink."""
    if entry is None:
        return []
    if entry.type == "symlink":
        return [f"{entry.target}"]
    if entry.blob is None or too_large(entry):
        return None
    data = store.read(entry.blob, entry.size)
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return None


def _git_mode(entry: Entry) -> str:
    if entry.type == "symlink":
        return "120000"
    return "100755" if entry.mode & 0o100 else "100644"


_C_ESCAPES = {7: "a", 8: "b", 9: "t", 10: "n", 11: "v", 12: "f", 13: "r", 34: '"', 92: "\\"}
_C_UNESCAPES = {v: k for k, v in _C_ESCAPES.items()}


def quote_path(path: str) -> str:
    """``path`` as git writes it in a patch (``core.quotePath``, git's default): a name
    with a control character, a quote, a backslash or a non-ASCII byte is C-quoted
    (``"a/new\\nline"``). A raw newline would forge the patch's own lines, and
    escapes would reach the terminal of whoever reads it."""
    raw = os.fsencode(path)
    if not any(b < 0x20 or b >= 0x7f or b in (34, 92) for b in raw):
        return path
    out = []
    for b in raw:
        if b in _C_ESCAPES:
            out.append("\\" + _C_ESCAPES[b])
        elif b < 0x20 or b >= 0x7f:
            out.append(f"\\{b:03o}")
        else:
            out.append(chr(b))
    return '"' + "".join(out) + '"'


def _prefixed(prefix: str, path: str) -> str:
    return quote_path(prefix + path)


def header_path(line: str) -> str | None:
    """The (old) path of a ``diff --git`` header line, quoted or not; None otherwise."""
    if not line.startswith("diff --git "):
        return None
    rest = line[len("diff --git "):]
    if rest.startswith("a/"):
        return rest[2:].split(" b/", 1)[0]
    if not rest.startswith('"a/'):
        return None
    return unquote_path(rest[3:])


def unquote_path(rest: str) -> str:
    """A path git C-quoted (:func:`quote_path`), given after its opening quote; the text
    after the closing quote is ignored."""
    raw = bytearray()
    i = 0
    while i < len(rest) and rest[i] != '"':
        ch = rest[i]
        if ch == "\\" and i + 1 < len(rest):
            nxt = rest[i + 1]
            if nxt in _C_UNESCAPES:
                raw.append(_C_UNESCAPES[nxt])
                i += 2
                continue
            if rest[i + 1:i + 4].isdigit():
                raw.append(int(rest[i + 1:i + 4], 8) & 0xFF)
                i += 4
                continue
        raw.extend(ch.encode())
        i += 1
    return os.fsdecode(bytes(raw))


def unified_diff(a: Manifest | None, b: Manifest, *, volume: Volume,
                 paths: Iterable[str] | None = None, ignore: Iterable[str] = (),
                 context: int = 3) -> str:
    """A git-style patch from ``a`` to ``b``; binary or large files are named, not shown."""
    store = BlobStore(volume)
    skip = tuple(ignore)
    old, new = _items(a, skip), _items(b, skip)
    wanted = set(paths) if paths is not None else None
    out: list[str] = []
    for change in diff(a, b, ignore=skip).changes:
        path = change.path
        if wanted is not None and path not in wanted:
            continue
        ea, eb = old.get(path), new.get(path)
        out.append(file_header(path, ea, eb))
        if change.mode_only:
            continue
        la, lb = _text(store, ea), _text(store, eb)
        if la is None or lb is None:
            out.append(binary_line(path, ea, eb))
            continue
        qa, qb = _prefixed("a/", path), _prefixed("b/", path)
        lines = list(difflib.unified_diff(
            la, lb, qa if ea else "/dev/null", qb if eb else "/dev/null", n=context))
        for line in lines:
            out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


def file_header(path: str, ea: Entry | None, eb: Entry | None) -> str:
    """The ``diff --git`` line of ``path`` and its mode lines (``ea``/``eb``: the old and
    new entries, None where the path does not exist)."""
    out = [f"diff --git {_prefixed('a/', path)} {_prefixed('b/', path)}\n"]
    if ea is None and eb is not None:
        out.append(f"new file mode {_git_mode(eb)}\n")
    elif eb is None and ea is not None:
        out.append(f"deleted file mode {_git_mode(ea)}\n")
    elif ea is not None and eb is not None and _git_mode(ea) != _git_mode(eb):
        out.append(f"old mode {_git_mode(ea)}\nnew mode {_git_mode(eb)}\n")
    return "".join(out)


def binary_line(path: str, ea: Entry | None, eb: Entry | None) -> str:
    qa, qb = _prefixed("a/", path), _prefixed("b/", path)
    return f"Binary files {qa if ea else '/dev/null'} and {qb if eb else '/dev/null'} differ\n"
