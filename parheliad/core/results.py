"""Results back: what a task changed (against checkpoint zero) as a diff, a branch or a patch.

The comparison is between the session's checkpoint zero (the uploaded workspace,
or an empty tree) and its newest checkpoint. ``.git`` is never part of a result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modal_worker.checkpoint import BlobStore, Manifest, diff, load_manifest, unified_diff
from modal_worker.checkpoint.diff import TreeDiff
from modal_worker.volume import Volume
from parhelia.errors import ParheliaError
from parhelia.outpath import open_output
from parheliad.core import gitpull
from parheliad.store.rows import TaskRow

IGNORE = (".git",)


@dataclass(frozen=True)
class TaskChanges:
    base: Manifest | None
    final: Manifest
    tree: TreeDiff


def task_changes(volume: Volume, task: TaskRow, zero_id: str | None,
                 latest_id: str | None) -> TaskChanges:
    if task.session_id is None or latest_id is None:
        raise ParheliaError("E202", f"task {task.id} has no checkpoint yet; it has not run")
    final = load_manifest(volume, task.session_id, latest_id)
    base = load_manifest(volume, task.session_id, zero_id) if zero_id else None
    return TaskChanges(base, final, diff(base, final, ignore=IGNORE))


def patch_text(volume: Volume, changes: TaskChanges) -> str:
    return unified_diff(changes.base, changes.final, volume=volume, ignore=IGNORE)


@dataclass(frozen=True)
class Pulled:
    repo: Path
    branch: str
    commit: str
    patch_path: str
    base_commit: str


def pull(volume: Volume, task: TaskRow, changes: TaskChanges, *, repo_path: str,
         branch: str, patch_path: str, force: bool = False) -> Pulled:
    """Commit the task's changes on top of its base commit; make a branch or a patch."""
    workspace = Path(repo_path or task.workspace_path)
    if not str(workspace) or not workspace.is_absolute():
        raise ParheliaError("E101", f"task {task.id} has no workspace path; pass repo_path")
    if not workspace.is_dir():
        raise ParheliaError("E101", f"repository {workspace} does not exist")
    repo = gitpull.repo_root(workspace)
    recorded = (changes.base.git or {}).get("head") if changes.base is not None else None
    base = task.base_commit or str(recorded or "")
    if not base:
        raise ParheliaError("E101", f"task {task.id} has no base commit (its workspace was "
                                    "not a git repository); use `parhelia task diff` instead")
    prefix = workspace.resolve().relative_to(repo.resolve()).as_posix()
    prefix = "" if prefix == "." else prefix + "/"
    store = BlobStore(volume)
    new_tree = changes.final.tree
    to_commit: list[gitpull.Change] = []
    for change in changes.tree.changes:
        entry = new_tree.get(change.path)
        target = prefix + change.path
        if entry is None:
            to_commit.append(gitpull.Change(target, None))
        elif entry.type == "symlink":
            to_commit.append(gitpull.Change(target, (entry.target or "").encode(), 0o120000))
        elif entry.blob is not None:
            to_commit.append(gitpull.Change(target, store.read(entry.blob, entry.size),
                                            0o100755 if entry.mode & 0o100 else 0o100644))
    first_line = task.prompt.strip().splitlines()[0] if task.prompt.strip() else task.id
    message = (f"{first_line[:72]}\n\n{task.prompt.strip()}\n\n"
               f"Parhelia-Task: {task.id}\nParhelia-Session: {task.session_id}\n")
    commit = gitpull.commit_changes(repo, base, to_commit, message)
    if patch_path:
        out = Path(patch_path)
        if not out.is_absolute():
            raise ParheliaError("E101", f"patch_path: must be absolute, got {patch_path!r}")
        with open_output(out, force=force, wait_for_reader=False, encoding="utf-8") as fh:
            fh.write(gitpull.diff_patch(repo, base, commit))
        return Pulled(repo, "", commit, str(out), base)
    name = branch or f"parhelia/{task.id}"
    gitpull.create_branch(repo, name, commit)
    return Pulled(repo, name, commit, "", base)
