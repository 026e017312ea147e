"""Workspace upload: a user's directory becomes checkpoint zero of a future session.

The upload is git-aware (tracked plus untracked-not-ignored files, base commit
recorded) and content-addressed: a second upload of an unchanged repository writes
no blob, and a per-directory stat cache means unchanged files are not even re-read.
The session id is reserved here, because a manifest names its session; the
dispatcher later creates the session under that id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modal_worker.checkpoint import git_file_list, git_state, list_checkpoints, load_manifest
from modal_worker.checkpoint import snapshot as take_snapshot
from modal_worker.checkpoint.manifest import Manifest
from modal_worker.gitsafe import user_excludes_file
from modal_worker.volume import Volume
from parhelia.errors import ParheliaError
from parheliad.store import ids

WORKSPACE_TRIGGER = "workspace_upload"


@dataclass(frozen=True)
class Upload:
    workspace_id: str  # the reserved session id
    checkpoint_id: str
    root: Path
    base_commit: str
    files: int
    bytes: int
    new_bytes: int


Progress = Callable[[int, int], None]


def upload(volume: Volume, path: Path, cache_dir: Path) -> Upload:
    root = path.expanduser()
    if not root.is_absolute():
        raise ParheliaError("E101", f"workspace: must be an absolute path, got {str(path)!r}")
    if not root.is_dir():
        raise ParheliaError("E101", f"workspace: {root} is not a directory")
    root = root.resolve()
    excludes = user_excludes_file()
    git = git_state(root, excludes_file=excludes)
    files = git_file_list(root, excludes_file=excludes) if git is not None else None
    session_id = ids.new_id(ids.SESSION)
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache = cache_dir / (hashlib.sha256(str(root).encode()).hexdigest()[:24] + ".json")
    manifest = take_snapshot(root, volume=volume, session_id=session_id, parent_id=None,
                             trigger=WORKSPACE_TRIGGER, message=f"upload of {root}",
                             files=files, stat_cache=cache, git=git)
    return Upload(workspace_id=session_id, checkpoint_id=manifest.id, root=root,
                  base_commit=str((git or {}).get("head") or ""),
                  files=manifest.stats.files, bytes=manifest.stats.bytes,
                  new_bytes=manifest.stats.new_bytes)


def checkpoint_zero(volume: Volume, workspace_id: str, checkpoint_id: str | None = None
                    ) -> Manifest:
    """The uploaded manifest of a reserved session; E101 when there is none.

    Once a task has run, its first session (which took the reserved id) holds more
    checkpoints than the upload: the upload is the one with the upload trigger and no
    parent. ``checkpoint_id`` (from the database's index) saves reading the others.
    """
    try:
        found = list_checkpoints(volume, workspace_id)
    except ValueError:
        found = []
    if checkpoint_id in found:
        found = [checkpoint_id, *(cp for cp in found if cp != checkpoint_id)]
    for cp in found:
        try:
            manifest = load_manifest(volume, workspace_id, cp)
        except ParheliaError:
            continue
        if manifest.trigger == WORKSPACE_TRIGGER and manifest.parent_id is None:
            return manifest
    raise ParheliaError("E101", f"workspace_id: no uploaded workspace {workspace_id!r}; "
                                "upload it with TaskService.UploadWorkspace first")
