"""Workspace upload: a user's directory becomes checkpoint zero of a future session.

The upload is git-aware (tracked plus untracked-not-ignored files, base commit
recorded; a directory outside git is uploaded whole) and content-addressed: a second
upload of an unchanged repository writes no blob, and a per-directory stat cache
means unchanged files are not even re-read.
The session id is reserved here, because a manifest names its session; the
dispatcher later creates the session under that id.

Files that look like credentials (:func:`parhelia.redact.looks_like_secret_file`)
are left out unless git tracks them or the user names them; both lists come back
so the CLI can say which were left out and which were sent.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parhelia import gitsafe
from parhelia.checkpoint import git_file_list, git_state, list_checkpoints, load_manifest
from parhelia.checkpoint import snapshot as take_snapshot
from parhelia.checkpoint.baserepo import pack_base
from parhelia.checkpoint.cas import BlobStore
from parhelia.checkpoint.manifest import Manifest
from parhelia.checkpoint.projects import Conversation
from parhelia.checkpoint.snapshot import walk
from parhelia.errors import ParheliaError
from parhelia.gitsafe import user_excludes_file
from parhelia.progress import Report
from parhelia.redact import looks_like_secret_file
from parhelia.volume import Volume
from parheliad.store import ids

WORKSPACE_TRIGGER = "workspace_upload"
SESSION_UUID = "session_uuid"
"""The manifest ``environment`` key naming the conversation a checkpoint holds."""


@dataclass(frozen=True)
class Upload:
    workspace_id: str  # the reserved session id
    checkpoint_id: str
    root: Path
    base_commit: str
    files: int
    bytes: int
    new_bytes: int
    left_out: list[str] = field(default_factory=list)  # look like credentials, not sent
    secret_sent: list[str] = field(default_factory=list)  # look like credentials, sent
    conversation_files: int = 0  # a local conversation sent with it (--from-session)
    agent_session_id: str = ""  # that conversation's id


SECRET_READ_BYTES = 64 << 10


Progress = Callable[[int, int], None]


def _refuse_too_wide(root: Path) -> None:
    home = Path.home().resolve()
    if root == root.parent:
        what = "the filesystem root"
    elif root == home:
        what = "your home directory"
    else:
        return
    raise ParheliaError("E101", f"workspace: {root} is {what}; refusing to upload all of it. "
                                "Run the task from a project directory, pass --workspace DIR, "
                                "or start empty with --no-workspace")


def _head(root: Path, rel: str) -> bytes:
    fd = os.open(root / rel, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        return os.read(fd, SECRET_READ_BYTES)
    finally:
        os.close(fd)


def _split_secrets(root: Path, files: Iterable[str], tracked: set[str],
                   include: set[str]) -> tuple[list[str], list[str], list[str]]:
    """(files to send, credential-looking files left out, credential-looking files sent)."""
    send, left_out, sent = [], [], []
    for rel in files:
        if looks_like_secret_file(rel, functools.partial(_head, root, rel)):
            if rel in tracked or rel in include:
                sent.append(rel)
            else:
                left_out.append(rel)
                continue
        send.append(rel)
    return send, left_out, sent


def _all_files(root: Path) -> list[str]:
    """Every non-directory entry under ``root`` (unreadable directories included, so
    the snapshot lists them as skipped)."""
    return [rel for rel, st in walk(root) if st is None or not stat.S_ISDIR(st.st_mode)]


def _base_pack(root: Path, head: str, store: BlobStore, cache: Path) -> dict[str, Any] | None:
    """The base commit's pack (:mod:`parhelia.checkpoint.baserepo`); the last one made
    for this directory is reused while HEAD has not moved and its blob exists."""
    try:
        known = json.loads(cache.read_text())
        if known.get("commit") == head and store.has(str(known.get("blob"))):
            return {k: known[k] for k in ("blob", "size", "commit")}
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    with gitsafe.shadow(root) as sh:
        pack = pack_base(sh, head, store) if sh is not None else None
    if pack is not None:
        cache.write_text(json.dumps(pack))
    return pack


def upload(volume: Volume, path: Path, cache_dir: Path,
           include_secret: Iterable[str] = (), conversation: Conversation | None = None,
           progress: Report | None = None, *, message: str = "",
           user_excludes: bool = True) -> Upload:
    """``include_secret``: credential-looking files (relative to the root) to send anyway.
    ``conversation``: a local Claude Code conversation checkpoint zero carries, recorded
    as ``environment.session_uuid`` (the session takes that id and its first worker
    resumes it). ``progress`` hears the bytes read of the files that had to be read.
    ``message``: the manifest's (default "upload of ROOT"); without ``user_excludes``
    the user's global ignore file is not applied (a clone is sent as the remote has it)."""
    root = path.expanduser()
    if not root.is_absolute():
        raise ParheliaError("E101", f"workspace: must be an absolute path, got {str(path)!r}")
    if not root.is_dir():
        raise ParheliaError("E101", f"workspace: {root} is not a directory")
    root = root.resolve()
    _refuse_too_wide(root)
    include = set()
    for name in include_secret:
        rel = os.path.normpath(name)
        if os.path.isabs(rel) or rel == ".." or rel.startswith("../"):
            raise ParheliaError("E101", f"include_secret_files: {name!r} is not inside "
                                        f"{root}")
        include.add(Path(rel).as_posix())
    excludes = user_excludes_file() if user_excludes else None
    git = git_state(root, excludes_file=excludes)
    if git is not None:
        listed = git_file_list(root, excludes_file=excludes)
        tracked = set(git_file_list(root, tracked_only=True))
    else:
        listed, tracked = _all_files(root), set()
    unknown = sorted(include - set(listed))
    if unknown:
        raise ParheliaError("E101", f"include_secret_files: {', '.join(unknown)}: not a file "
                                    f"the upload of {root} would hold (missing, or ignored "
                                    "by git)")
    files, left_out, secret_sent = _split_secrets(root, listed, tracked, include)
    session_id = ids.new_id(ids.SESSION)
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache = cache_dir / (hashlib.sha256(str(root).encode()).hexdigest()[:24] + ".json")
    if git is not None and git.get("head"):
        git = {**git, "base_pack": _base_pack(root, str(git["head"]), BlobStore(volume),
                                              cache.with_suffix(".basepack.json"))}
    manifest = take_snapshot(root, volume=volume, session_id=session_id, parent_id=None,
                             trigger=WORKSPACE_TRIGGER, message=message or f"upload of {root}",
                             files=files, stat_cache=cache, git=git, conversation=conversation,
                             environment={SESSION_UUID: conversation.session_uuid}
                             if conversation is not None else None, progress=progress)
    if conversation is not None and f"{conversation.session_uuid}.jsonl" not in \
            manifest.conversation:
        raise ParheliaError("E202", f"conversation {conversation.session_uuid}: its transcript "
                                    "could not be read")
    return Upload(workspace_id=session_id, checkpoint_id=manifest.id, root=root,
                  base_commit=str((git or {}).get("head") or ""),
                  files=manifest.stats.files, bytes=manifest.stats.bytes,
                  new_bytes=manifest.stats.new_bytes, left_out=left_out,
                  secret_sent=secret_sent, conversation_files=len(manifest.conversation),
                  agent_session_id=conversation.session_uuid if conversation else "")


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
