"""A pulled tree runs nothing (issue 22, finding 2). A workspace can hold directories git
takes for a repository's git directory without any ``.git`` in their name -- a bare
layout (``HEAD`` beside ``objects``/``refs``) -- whose ``config`` names an fsmonitor
command and whose hooks run on ``git status``. Whatever comes home (``session pull``'s
directory, ``task pull``'s branch once checked out, its patch once applied), git run in
every directory of it must not run a command the sandbox planted."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from parhelia.checkpoint import Conversation, diff, snapshot
from parhelia.checkpoint.projects import encode_project_dir
from parhelia.volume import LocalVolume
from parheliad.core import gitdirs, results, takehome
from parheliad.store import Store
from tests.helpers.gitrepo import git, init_repo

UUID = "0b5c6d2e-1f2a-4b3c-8d4e-5f6a7b8c9d0e"
HOOKS = ("post-index-change", "post-checkout", "pre-commit", "reference-transaction")
METADATA = ("config", "config.worktree", "commondir", ".git")
"""Files that make git act, listed as left out wherever they lie in a git directory (a
common dir is no git directory of its own: without the ``commondir`` naming it, git never
reads its config)."""


def hostile(marker: Path) -> dict[str, dict[str, str]]:
    """Layouts a sandbox can plant: path -> content (``hooks/`` files are made executable)."""
    run = f"touch {marker}"
    config = (f"[core]\n\trepositoryformatversion = 0\n\tbare = false\n\tworktree = .\n"
              f"\tfsmonitor = {run}\n")

    def bare(at: str) -> dict[str, str]:
        pre = f"{at}/" if at else ""
        return {f"{pre}HEAD": "ref: refs/heads/main\n", f"{pre}objects/info/packs": "\n",
                f"{pre}refs/heads/.keep": "", f"{pre}config": config,
                **{f"{pre}hooks/{h}": f"#!/bin/sh\n{run}\n" for h in HOOKS}}

    return {
        "bare in a subdirectory": {"src/a.py": "print(1)\n", **bare("vendor/lib")},
        "bare at the top": {"src/a.py": "print(1)\n", **bare("")},
        "bare inside the refs of a .git": {
            "a.txt": "a\n", ".git/HEAD": "ref: refs/heads/main\n", ".git/objects/info/x": "",
            ".git/refs/heads/main": "0" * 40 + "\n", **bare(".git/refs/x")},
        # git takes ``wt`` for a git directory (HEAD, and objects/refs through commondir)
        # and reads the common dir's config and its own config.worktree.
        "a git directory whose objects and refs are in a common dir": {
            "src/a.py": "print(1)\n", "wt/HEAD": "ref: refs/heads/main\n",
            "wt/commondir": "../common\n",
            "wt/config.worktree": f"[core]\n\tworktree = .\n\tfsmonitor = {run}\n",
            "common/objects/info/packs": "\n", "common/refs/heads/.keep": "",
            "common/config": "[core]\n\trepositoryformatversion = 1\n\tbare = false\n"
                             "[extensions]\n\tworktreeConfig = true\n"},
        "a .git file naming a directory of the tree": {
            "a.txt": "a\n", "sub/.git": "gitdir: ../planted\n", "sub/b.txt": "b\n",
            **{k: v for k, v in bare("planted").items() if not k.endswith("config")},
            "planted/config": config.replace("\tworktree = .\n", "")},
    }


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if "hooks/" in rel:
            path.chmod(0o755)


def _directories(root: Path) -> Iterator[Path]:
    for dirpath, _dirnames, _files in os.walk(root):
        yield Path(dirpath)


def _git_everywhere(root: Path, home: Path) -> None:
    """A user's git in every directory: status (refreshes and writes the index), log,
    diff; the user's own configuration is empty."""
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1"}
    for where in _directories(root):
        for args in (["status"], ["log", "-1"], ["diff"], ["add", "-A", "--dry-run"]):
            subprocess.run(["git", *args], cwd=where, env=env, capture_output=True,
                           timeout=60, check=False)


def _session(tmp_path: Path, files: dict[str, str]) -> tuple[LocalVolume, object]:
    ws, cfg = tmp_path / "ws", tmp_path / "worker-cfg"
    ws.mkdir()
    _write(ws, files)
    project = cfg / "projects" / encode_project_dir(str(ws))
    project.mkdir(parents=True)
    (project / f"{UUID}.jsonl").write_text('{"type":"user"}\n')
    volume = LocalVolume(tmp_path / "vol")
    manifest = snapshot(ws, volume=volume, session_id="s-1", parent_id=None, trigger="turn",
                        conversation=Conversation(project, UUID, cfg))
    return volume, manifest


@pytest.mark.parametrize("layout", sorted(hostile(Path("/m"))))
def test_git_in_every_directory_of_a_session_pull_runs_nothing(tmp_path: Path,
                                                               layout: str) -> None:
    marker = tmp_path / "MARKER"
    home = tmp_path / "home"
    home.mkdir()
    files = hostile(marker)[layout]
    verbatim = tmp_path / "verbatim"  # the attack is real: the same files, copied as such
    verbatim.mkdir()
    _write(verbatim, files)
    _git_everywhere(verbatim, home)
    assert marker.exists(), "the planted layout does not run anything: the test proves nothing"
    marker.unlink()

    volume, manifest = _session(tmp_path, files)
    dest = tmp_path / "pulled"
    copy = takehome.pull_home(volume, manifest, directory=dest, config_dir=home / ".claude",
                              session_uuid=UUID, zero=None)
    _git_everywhere(dest, home)
    assert not marker.exists()
    for rel in files:
        if rel.rsplit("/", 1)[-1] in METADATA and not rel.startswith("common/") or \
                "/hooks/" in f"/{rel}":
            assert any(line.startswith(f"{rel}: ") for line in copy.left_out), rel
    # The rest arrives; a workspace that is itself a bare repository keeps only its data.
    assert (dest / "objects/info/packs").exists() if layout == "bare at the top" else \
        (dest / "a.txt").exists() or (dest / "src/a.py").exists()


@pytest.mark.parametrize("layout", sorted(hostile(Path("/m"))))
async def test_git_in_every_directory_of_a_task_pull_runs_nothing(
        tmp_path: Path, store: Store, layout: str) -> None:
    marker = tmp_path / "MARKER"
    home = tmp_path / "home"
    home.mkdir()
    repo = tmp_path / "repo"
    base = init_repo(repo, {"README": "base\n"})
    files = {k: v for k, v in hostile(marker)[layout].items() if not k.startswith(".git/")
             or k.startswith(".git/refs/x/")}
    volume, manifest = _session(tmp_path, {"README": "base\n", **files})
    task = await store.write(lambda tx: tx.tasks.insert(dict(
        prompt="p", cpu=1.0, memory_mb=1024, timeout_seconds=600, max_turns=5,
        permission_mode="acceptEdits", backend="local", max_cost_micros=1_000_000,
        workspace_path=str(repo), base_commit=base)))
    changes = results.TaskChanges(None, manifest,  # type: ignore[arg-type]
                                  diff(None, manifest, ignore=results.IGNORE))  # type: ignore[arg-type]
    pulled = results.pull(volume, task, changes, repo_path="", branch="", patch_path="")
    patch = tmp_path / "p.patch"
    results.pull(volume, task, changes, repo_path="", branch="", patch_path=str(patch))

    env = {"PATH": os.environ["PATH"], "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "checkout", "-q", pulled.branch], cwd=repo, env=env, check=True)
    _git_everywhere(repo, home)
    applied = tmp_path / "applied"
    git(tmp_path, "clone", "-q", str(repo), str(applied))
    subprocess.run(["git", "checkout", "-q", base], cwd=applied, env=env, check=True)
    subprocess.run(["git", "apply", str(patch)], cwd=applied, env=env, check=True)
    _git_everywhere(applied, home)
    assert not marker.exists()
    for rel in files:
        if not rel.startswith((".git/", "common/")) and rel.rsplit("/", 1)[-1] in METADATA:
            assert any(line.startswith(f"{rel}: ") for line in pulled.skipped), rel


def test_git_directories_are_found_by_name_and_by_layout_in_any_case() -> None:
    tree = ["a.txt", ".git/HEAD", "x/.GIT/config", "m/head", "m/Objects/p", "m/config",
            "r/HEAD", "r/refs/heads/main", "plain/HEAD", "plain/notes.txt"]
    assert gitdirs.git_dirs(tree) == {".git", "x/.GIT", "m", "r"}
    assert gitdirs.git_dirs(["HEAD", "refs/x", "src/a.py"]) == {""}
    assert gitdirs.git_dirs(["wt/HEAD", "wt/commondir", "common/objects/x"]) == {"wt"}
    assert gitdirs.metadata_problem("wt/commondir", {"wt"}) is not None
    dirs = gitdirs.git_dirs(tree)
    assert gitdirs.metadata_problem("m/config", dirs) is not None
    assert gitdirs.metadata_problem("m/Objects/p", dirs) is None
    assert gitdirs.metadata_problem("plain/notes.txt", {"plain"}) is not None
    assert gitdirs.metadata_problem("r/refs/heads/main", dirs) is None
