"""git plumbing: a branch with the task's changes, user's tree untouched."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from parhelia.errors import ParheliaError
from parheliad.core.gitpull import Change, commit_changes, create_branch, diff_patch, repo_root
from tests.helpers.gitrepo import git, init_repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    init_repo(r, {"a.txt": "one\n", "gone.txt": "bye\n"})
    git(r, "config", "user.name", "Tester")
    return r


def snapshot(repo: Path) -> tuple[str, str, str]:
    return (git(repo, "status", "--porcelain"), git(repo, "rev-parse", "HEAD"),
            git(repo, "symbolic-ref", "HEAD"))


def test_branch_carries_changes_and_leaves_user_state_alone(repo: Path) -> None:
    (repo / "a.txt").write_text("one\nuser edit not committed\n")  # dirty tree
    before = snapshot(repo)
    base = git(repo, "rev-parse", "HEAD")
    changes = [Change("a.txt", b"one\ntwo\n"), Change("gone.txt", None),
               Change("new/run.sh", b"#!/bin/sh\n", 0o100755),
               Change("link", b"a.txt", 0o120000)]
    commit = commit_changes(repo, base, changes, "Task prompt\n\nParhelia task t-1").commit
    create_branch(repo, "parhelia/t-1", commit)
    assert snapshot(repo) == before
    assert (repo / "a.txt").read_text() == "one\nuser edit not committed\n"
    assert git(repo, "show", "parhelia/t-1:a.txt") == "one\ntwo"
    assert git(repo, "ls-tree", "parhelia/t-1", "new/run.sh").startswith("100755")
    assert git(repo, "ls-tree", "parhelia/t-1", "link").startswith("120000")
    assert "gone.txt" not in git(repo, "ls-tree", "--name-only", "parhelia/t-1")
    assert git(repo, "log", "-1", "--format=%an %s", "parhelia/t-1") == "Tester Task prompt"


def test_existing_branch_is_never_moved(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD")
    commit = commit_changes(repo, base, [Change("a.txt", b"x\n")], "m").commit
    with pytest.raises(ParheliaError) as ei:
        create_branch(repo, "main", commit)
    assert ei.value.code == "E103"  # ALREADY_EXISTS, not a bad argument
    assert git(repo, "rev-parse", "main") == base


def test_bad_branch_name(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD")
    with pytest.raises(ParheliaError):
        create_branch(repo, "bad..name", base)


def test_patch_applies_to_base(repo: Path, tmp_path: Path) -> None:
    base = git(repo, "rev-parse", "HEAD")
    commit = commit_changes(repo, base, [Change("a.txt", b"one\ntwo\n"),
                                         Change("bin.dat", bytes(range(256)))], "m").commit
    patch = diff_patch(repo, base, commit)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    (tmp_path / "p.patch").write_text(patch)
    git(clone, "apply", str(tmp_path / "p.patch"))
    assert (clone / "a.txt").read_text() == "one\ntwo\n"
    assert (clone / "bin.dat").read_bytes() == bytes(range(256))


def test_repo_root_outside_git(tmp_path: Path) -> None:
    with pytest.raises(ParheliaError) as ei:
        repo_root(tmp_path)
    assert ei.value.code == "E101"


def test_a_path_git_refuses_is_skipped_not_fatal(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD")
    done = commit_changes(repo, base, [Change("sub/.git/config", b"[core]\n"),
                                       Change(".GIT/hooks/x", b"x"),
                                       Change("ok.txt", b"ok\n")], "m")
    assert [s.split(":")[0] for s in done.skipped] == ["sub/.git/config", ".GIT/hooks/x"]
    assert git(repo, "show", f"{done.commit}:ok.txt") == "ok"


def test_pull_plumbing_runs_nothing_a_hostile_repository_configures(tmp_path: Path) -> None:
    """Even pointed (--repo-path) at a repository whose .git/config an agent wrote, the
    pull's git commands run no hook, filter, fsmonitor, external diff, textconv or gpg."""
    from tests.unit.worker.test_gitsafe import plant

    repo = tmp_path / "hostile"
    init_repo(repo, {"a.txt": "one\n"})
    base = git(repo, "rev-parse", "HEAD")
    marker = tmp_path / "PWNED"
    plant(repo, marker)
    with open(repo / ".git" / "config", "a") as fh:
        fh.write(f'[commit]\n\tgpgSign = true\n[gpg]\n\tprogram = "touch {marker}"\n')
    subprocess.run(["git", "-C", str(repo), "status"], capture_output=True, check=False)
    assert marker.exists(), "the planted config should fire under plain git"
    marker.unlink()
    done = commit_changes(repo, base, [Change("a.txt", b"two\n"), Change("b.bin", b"\0\1")],
                          "m")
    create_branch(repo, "from-task", done.commit)
    patch = diff_patch(repo, base, done.commit)
    assert repo_root(repo) == repo.resolve()
    assert "+two" in patch and not marker.exists()
