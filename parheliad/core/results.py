"""Results back: what a task changed (against checkpoint zero) as a diff, a branch or a patch.

The comparison is between the session's checkpoint zero (the uploaded workspace,
or an empty tree) and its newest checkpoint. ``.git`` is never part of a result, nor is
the metadata of any other directory git would take for a git directory (a bare layout:
:mod:`parheliad.core.gitdirs`), whose config or hooks would run once checked out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from parhelia import gitsafe
from parhelia.checkpoint import BlobStore, Manifest, diff, load_manifest
from parhelia.checkpoint.diff import TreeDiff
from parhelia.checkpoint.restore import preflight
from parhelia.errors import ParheliaError
from parhelia.outpath import open_output
from parhelia.progress import Report, ignore
from parhelia.volume import Volume
from parheliad.core import gitdirs, gitpull, patches
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
    store = BlobStore(volume)
    for manifest in (base, final):
        if manifest is not None:
            preflight(manifest, store)  # what a pull writes is all there, before it writes
    return TaskChanges(base, final, diff(base, final, ignore=IGNORE))


def patch_text(volume: Volume, changes: TaskChanges, *, with_text: bool = True
               ) -> patches.Patch:
    """The task's patch against its upload (unless ``with_text`` is False) and counts."""
    return patches.build(changes.base, changes.final, volume=volume, ignore=IGNORE,
                         with_text=with_text)


@dataclass(frozen=True)
class Pulled:
    repo: Path
    branch: str
    commit: str
    patch_path: str
    base_commit: str
    upload_commit: str  # base + the user's uncommitted changes as uploaded ("" = none)
    skipped: list[str]


def _blob_change(store: BlobStore, manifest: Manifest, path: str,
                 target: str) -> gitpull.Change:
    entry = manifest.tree.get(path)
    if entry is None or entry.type == "dir":
        return gitpull.Change(target, None)
    if entry.type == "symlink":
        return gitpull.Change(target, (entry.target or "").encode(), 0o120000)
    assert entry.blob is not None
    return gitpull.Change(target, store.read(entry.blob, entry.size),
                          0o100755 if entry.mode & 0o100 else 0o100644)


def _base_commit(task: TaskRow, changes: TaskChanges) -> str:
    recorded = (changes.base.git or {}).get("head") if changes.base is not None else None
    base = task.base_commit or str(recorded or "")
    if not base:
        raise ParheliaError("E101", f"task {task.id} has no base commit (its workspace was "
                                    "not a git repository); use `parhelia task diff` instead")
    return base


def _repo(task: TaskRow, repo_path: str) -> tuple[Path, Path]:
    """(the workspace directory, the repository's top level)."""
    workspace = Path(repo_path or task.workspace_path)
    if not str(workspace) or not workspace.is_absolute():
        raise ParheliaError("E101", f"task {task.id} has no workspace path; pass repo_path")
    if not workspace.is_dir():
        raise ParheliaError("E101", f"repository {workspace} does not exist")
    return workspace, gitpull.repo_root(workspace)


@dataclass(frozen=True)
class Commits:
    base: str
    upload: str  # == base when the upload had no uncommitted changes
    final: str
    skipped: list[str]


def _commits(target: gitpull.Target, volume: Volume, task: TaskRow, changes: TaskChanges,
             prefix: str, base: str, progress: Report = ignore) -> Commits:
    """U = base + the user's uncommitted changes as uploaded (the upload's dirty paths);
    F = U + what the task changed (checkpoint zero -> final)."""
    store = BlobStore(volume)
    upload = base
    skipped: list[str] = []
    zero = changes.base
    dirty = [d.get("path") for d in ((zero.git or {}).get("dirty") or [])
             if isinstance(d, dict)] if zero is not None else []
    if zero is not None and dirty:
        user = [_blob_change(store, zero, str(p), prefix + str(p)) for p in dirty
                if isinstance(p, str)]
        done = gitpull.commit_changes(target, base, user,
                                      "Uncommitted changes at upload\n\n"
                                      f"Parhelia-Task: {task.id}\n",
                                      date=gitpull.git_date(zero.created_at))
        skipped += done.skipped
        if gitpull.tree_of(target, done.commit) != gitpull.tree_of(target, base):
            upload = done.commit
    dirs = gitdirs.git_dirs(changes.final.tree)
    task_changes_ = []
    for c in changes.tree.changes:
        problem = None if gitpull.path_problem(c.path) else \
            gitdirs.metadata_problem(c.path, dirs)  # (commit_changes says why for those)
        if problem is not None:  # it would act when the user runs git in the checkout
            skipped.append(f"{c.path}: {problem}")
            continue
        task_changes_.append(_blob_change(store, changes.final, c.path, prefix + c.path))
    first_line = task.prompt.strip().splitlines()[0] if task.prompt.strip() else task.id
    message = (f"{first_line[:72]}\n\n{task.prompt.strip()}\n\n"
               f"Parhelia-Task: {task.id}\nParhelia-Session: {task.session_id}\n")
    done = gitpull.commit_changes(target, upload, task_changes_, message, progress,
                                  date=gitpull.git_date(changes.final.created_at))
    return Commits(base, upload, done.commit, skipped + done.skipped)


def _prefix(workspace: Path, repo: Path) -> str:
    prefix = workspace.resolve().relative_to(repo.resolve()).as_posix()
    return "" if prefix == "." else prefix + "/"


def pull(volume: Volume, task: TaskRow, changes: TaskChanges, *, repo_path: str,
         branch: str, patch_path: str, force: bool = False,
         progress: Report = ignore) -> Pulled:
    """Commit the task's changes on top of its base commit; make a branch or a patch.

    The branch is base -> U (the user's uncommitted changes as uploaded, when there
    were any) -> F (the task's work). The patch is U..F: it applies with `git apply`
    to the working tree as it was uploaded. ``progress`` hears the task's files
    committed."""
    workspace, repo = _repo(task, repo_path)
    base = _base_commit(task, changes)
    if patch_path:
        out = Path(patch_path)
        if not out.is_absolute():
            raise ParheliaError("E101", f"patch_path: must be absolute, got {patch_path!r}")
    c = _commits(repo, volume, task, changes, _prefix(workspace, repo), base, progress)
    upload = c.upload if c.upload != base else ""
    if patch_path:
        with open_output(out, force=force, wait_for_reader=False, encoding="utf-8") as fh:
            fh.write(gitpull.diff_patch(repo, c.upload, c.final))
        return Pulled(repo, "", c.final, str(out), base, upload, c.skipped)
    name = branch or f"parhelia/{task.id}"
    gitpull.create_branch(repo, name, c.final)
    return Pulled(repo, name, c.final, "", base, upload, c.skipped)


@dataclass(frozen=True)
class BasePatch:
    text: str  # "" when only the counts were asked for
    base: str
    files: list[patches.FileStat]


def base_patch(volume: Volume, task: TaskRow, changes: TaskChanges, *,
               with_text: bool = True) -> BasePatch:
    """The patch from the base commit to the task's result (unless ``with_text`` is
    False), with the files' counts from git's numstat, computed in a shadow over the
    user's repository: nothing is written to it."""
    workspace, repo = _repo(task, "")
    base = _base_commit(task, changes)
    with gitsafe.shadow(repo) as sh:
        if sh is None:
            raise ParheliaError("E101", f"{repo} is not a git repository")
        c = _commits(sh, volume, task, changes, _prefix(workspace, repo), base)
        out = gitpull.diff(sh, base, c.final, "--no-renames", "--raw", "--numstat",
                           *(("-p",) if with_text else ()))
    files, text = patches.summary(out)
    return BasePatch(text, base, files)


def branch_commits(target: gitpull.Target, volume: Volume, task: TaskRow,
                   changes: TaskChanges, prefix: str = "",
                   progress: Report = ignore) -> Commits:
    """The commits of the branch ``task pull`` makes (base -> U -> F), made in
    ``target``: the same changes, message, identity and dates, so the same commits
    (``task pr`` pushes these)."""
    return _commits(target, volume, task, changes, prefix, _base_commit(task, changes),
                    progress)


def user_repository(task: TaskRow) -> tuple[Path, Path, str]:
    """(the directory the task was uploaded from, its repository's top level, the
    directory's path inside it as a prefix) — E101 when it is gone."""
    workspace, repo = _repo(task, "")
    return workspace, repo, _prefix(workspace, repo)
