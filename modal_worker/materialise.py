"""What a worker materialises before its agent starts.

- **The workspace** (:func:`workspace`): restored from the checkpoint the spec names;
  or, when this machine still holds the files a previous worker of the session left
  after that checkpoint (its lineage says so, and its transcript holds a whole message),
  those files are kept and their conversation continued; or, when the workspace on disk
  is that checkpoint's tree prepared by the task's environment (a warm start), kept; or
  an empty directory. (A ``--repo`` task's repository is cloned on the daemon's side and
  arrives as its checkpoint zero: a worker never clones, ADR 0055.)
- **The agent's config directory** (:func:`config_dir`): created private, with the synced
  config bundle materialised in it (:mod:`modal_worker.claude_config`).
- **The conversation** (:func:`transcript`): kept for a resume (or the reason a resume
  cannot continue it), cleared for a fresh run of the session.

Nothing here talks to the channel: the runner says what was done.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modal_worker import claude_config, resume_summary
from parhelia.checkpoint import (
    BlobStore,
    Conversation,
    Manifest,
    StatCache,
    baserepo,
    lineage,
    load_manifest,
    restore,
    session_conversation,
)
from parhelia.spec import WorkerSpec
from parhelia.volume import LocalVolume


@dataclass(frozen=True)
class Restored:
    """The workspace as materialised: ``record`` is the ``workspace_restored`` record's
    data; ``manifest`` the checkpoint restored or continued from; ``continued`` says the
    files a previous worker left were kept (their conversation goes on, even when the
    checkpoint held none yet); ``kept`` says the files on disk were not replaced."""

    record: dict[str, Any]
    manifest: Manifest | None = None
    continued: bool = False
    kept: bool = False
    """The files on disk were kept, not replaced (continued, prepared, or an existing
    empty-source workspace): an environment's setup that ran on them still stands."""


def workspace(spec: WorkerSpec, volume: LocalVolume, *, workspace_dir: Path,
              config_dir: Path, lineage_file: Path, stat_cache: StatCache,
              prepared: Callable[[Manifest], bool] = lambda manifest: False) -> Restored:
    """Materialise the workspace the spec says (see the module docstring). ``prepared``:
    whether the workspace on disk is a checkpoint's tree already prepared by the task's
    environment (a warm start from a prepared snapshot): kept as it is."""
    started = time.monotonic()
    if spec.restore_checkpoint_id:
        manifest = load_manifest(volume, spec.session_id, spec.restore_checkpoint_id)
        if left_behind_continues(spec.agent.session_uuid, manifest.id, workspace_dir=workspace_dir,
                                 config_dir=config_dir, lineage_file=lineage_file):
            # The previous worker's files descend from this checkpoint and may hold
            # turns it does not: keep them (the start checkpoint records them).
            restored = Restored({"source": "left_behind", "checkpoint_id": manifest.id},
                                manifest, continued=True, kept=True)
        elif prepared(manifest):
            # A sandbox started from a prepared snapshot: its workspace is this tree plus
            # what setup made in it (kept: setup does not run again).
            lineage.write(lineage_file, [manifest.id])
            restored = Restored({"source": "prepared", "checkpoint_id": manifest.id},
                                manifest, kept=True)
        else:
            lineage.clear(lineage_file)
            stats = restore(manifest, workspace_dir, volume=volume,
                            conversation=session_conversation(
                                config_dir, workspace_dir, spec.agent.session_uuid),
                            stat_cache=stat_cache)
            lineage.write(lineage_file, [manifest.id])
            data: dict[str, Any] = {"source": "checkpoint", "checkpoint_id": manifest.id,
                                    "files": stats.files, "bytes": stats.bytes,
                                    "conversation_files": stats.conversation_files}
            if baserepo.wants_repo(manifest.tree, manifest.git):
                assert manifest.git is not None
                why = baserepo.make_repo(workspace_dir, manifest.git, BlobStore(volume))
                data["git"] = "repository at the base commit" if why is None else \
                    f"plain files (no repository: {why})"
            restored = Restored(data, manifest)
    else:
        lineage.clear(lineage_file)
        kept = workspace_dir.is_dir() and not workspace_dir.is_symlink()
        workspace_dir.mkdir(parents=True, exist_ok=True)
        restored = Restored({"source": "empty"}, kept=kept)
    restored.record["workspace"] = str(workspace_dir)
    restored.record["duration_ms"] = int((time.monotonic() - started) * 1000)
    return restored


def left_behind_continues(session_uuid: str, checkpoint_id: str, *, workspace_dir: Path,
                          config_dir: Path, lineage_file: Path) -> bool:
    """True when this machine still holds the session's workspace and transcript as a
    worker of it left them after ``checkpoint_id`` (a rollback clears the lineage)."""
    if checkpoint_id not in lineage.read(lineage_file):
        return False
    conv = session_conversation(config_dir, workspace_dir, session_uuid)
    transcript_file = conv.project_dir / f"{conv.session_uuid}.jsonl"
    # A transcript without one whole message (the agent died writing its first line)
    # is no conversation to continue: restore instead.
    return (workspace_dir.is_dir() and not workspace_dir.is_symlink()
            and transcript_file.is_file() and not transcript_file.is_symlink()
            and resume_summary.read_stored(transcript_file).entries > 0)


def config_dir(volume: LocalVolume, directory: Path,
               bundle_id: str | None) -> claude_config.Materialised | None:
    """Create the agent's ``CLAUDE_CONFIG_DIR`` (private) and materialise the synced
    config bundle in it (E600 if it is broken); what was materialised, None without a
    bundle."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    (directory / "projects").mkdir(mode=0o700, exist_ok=True)
    if not bundle_id:
        return None
    return claude_config.materialise(volume, bundle_id, directory)


def transcript(conversation: Conversation, *, resume: bool) -> str | None:
    """Ready the session's transcript for the agent's start: for a resume, why the
    stored conversation cannot be continued (None: it can); for a fresh run of the
    session (its checkpoint held no conversation, e.g. after a rollback to the start), a
    transcript an earlier incarnation left is removed, or the agent would refuse the
    session id as "already in use"."""
    path = conversation.project_dir / f"{conversation.session_uuid}.jsonl"
    if resume:
        return None if path.is_file() else "no conversation transcript was restored"
    path.unlink(missing_ok=True)
    side = conversation.project_dir / conversation.session_uuid
    if side.is_dir() and not side.is_symlink():
        shutil.rmtree(side)
    return None
