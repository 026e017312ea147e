"""Stat cache: (size, mtime_ns, inode) -> blob, so unchanged files are not re-read.

Persisted as one JSON file per session, kept outside the workspace. A file whose
mtime is within a small margin of the snapshot start is not cached: a later write
in the same timestamp tick could leave size and mtime unchanged (git's "racy
clean" problem), so such files are hashed again next time. The margin covers the
kernel's coarse file clock (``RACY_NS``), or two seconds when the mtime looks
like it comes from a filesystem with whole-second timestamps.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from parhelia.volume import atomic_write_bytes

log = logging.getLogger(__name__)

VERSION = 1
RACY_NS = 50_000_000
RACY_COARSE_NS = 2_000_000_000
Key = tuple[int, int, int]


def stat_cache_path(workspace: Path) -> Path:
    """Where ``workspace``'s stat cache lives: beside the workspace (never inside it),
    or in the temporary directory when its parent is not writable. The worker and the
    daemon (checkpointing a stopped session from disk) share the one cache."""
    parent = workspace.parent
    if os.access(parent, os.W_OK):
        return parent / f".{workspace.name}.parhelia-statcache.json"
    return Path(tempfile.gettempdir()) / f"parhelia-statcache-{workspace.name}.json"


def stat_key(st: os.stat_result) -> Key:
    return (st.st_size, st.st_mtime_ns, st.st_ino)


class StatCache:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.entries: dict[str, tuple[Key, str]] = {}
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            raw = json.loads(path.read_bytes())
            if raw.get("version") != VERSION:
                return
            for name, (size, mtime, ino, blob) in raw["entries"].items():
                self.entries[name] = ((int(size), int(mtime), int(ino)), str(blob))
        except FileNotFoundError:
            return
        except (ValueError, TypeError, KeyError, AttributeError):
            log.warning("ignoring an unreadable stat cache at %s", path)
            self.entries.clear()

    def lookup(self, name: str, st: os.stat_result) -> str | None:
        hit = self.entries.get(name)
        if hit is not None and hit[0] == stat_key(st):
            return hit[1]
        return None

    def record(self, name: str, st: os.stat_result, blob: str, *, start_ns: int | None) -> None:
        """Remember ``blob`` for ``name``; skipped (and forgotten) when racy.

        ``start_ns`` is when the content was read; ``None`` trusts the entry
        unconditionally (files the caller just wrote itself, e.g. a restore).
        """
        coarse = st.st_mtime_ns % 1_000_000_000 == 0
        margin = RACY_COARSE_NS if coarse else RACY_NS
        if start_ns is not None and st.st_mtime_ns >= start_ns - margin:
            self.entries.pop(name, None)
            return
        self.entries[name] = (stat_key(st), blob)

    def retain(self, names: set[str]) -> None:
        for name in [n for n in self.entries if n not in names]:
            del self.entries[name]

    def clear(self) -> None:
        self.entries.clear()

    def save(self) -> None:
        if self.path is None:
            return
        data = {
            "version": VERSION,
            "entries": {n: [*k, b] for n, (k, b) in self.entries.items()},
        }
        atomic_write_bytes(self.path, json.dumps(data, separators=(",", ":")).encode(), 0o600)
