"""Which checkpoints the session's files on this machine descend from.

A worker that dies (SIGKILL, OOM) leaves its workspace and config dir behind on the
local backend, and they are at least as new as its last checkpoint: the agent may have
finished turns the checkpoint does not hold yet. The lineage file lists the checkpoints
those files descend from (the one restored, then every one taken since). The next
worker of the session resumes from the files on disk instead of restoring when the
checkpoint it was given is in that list, so a kill loses nothing the agent wrote down.

The file is cleared before a restore starts and rewritten when it is done, so files left
half-restored by a kill are never taken for a continuation. It lives beside the
workspace (never inside it: the agent could forge it).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from parhelia.volume import atomic_write_bytes

MAX_IDS = 1000


def lineage_path(workspace: Path) -> Path:
    parent = workspace.parent
    if os.access(parent, os.W_OK):
        return parent / f".{workspace.name}.parhelia-lineage.json"
    return Path(tempfile.gettempdir()) / f"parhelia-lineage-{workspace.name}.json"


def read(path: Path) -> list[str]:
    try:
        raw = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return []
    ids = raw.get("checkpoints") if isinstance(raw, dict) else None
    return [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []


def write(path: Path, ids: list[str]) -> None:
    data = json.dumps({"checkpoints": ids[-MAX_IDS:]}, separators=(",", ":")).encode()
    atomic_write_bytes(path, data, 0o600)


def append(path: Path, checkpoint_id: str) -> None:
    write(path, [*read(path), checkpoint_id])


def clear(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
