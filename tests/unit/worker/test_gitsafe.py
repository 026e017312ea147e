"""Git on a hostile tree: nothing its .git configures runs (fsmonitor, filters, hooks,
includes, signatures), and the state read is still right."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from parhelia import gitsafe
from parhelia.checkpoint import git_file_list, git_state
from tests.helpers.gitrepo import git, init_repo


def plant(repo: Path, marker: Path) -> None:
    """Everything in .git/config (and the tree) that makes git run a command."""
    cmd = f"touch {marker}"
    hooks = repo / "planted-hooks"
    hooks.mkdir()
    for name in ("reference-transaction", "post-index-change", "pre-commit", "post-checkout"):
        (hooks / name).write_text(f"#!/bin/sh\n{cmd}\n")
        (hooks / name).chmod(0o755)
    included = repo / "included.cfg"
    included.write_text(f'[core]\n\tpager = "{cmd}"\n')
    with open(repo / ".git" / "config", "a") as fh:
        fh.write(f'[core]\n\tfsmonitor = "{cmd}"\n\thooksPath = {hooks}\n\tpager = "{cmd}"\n'
                 f'\tuntrackedCache = true\n'
                 f'[filter "evil"]\n\tclean = "{cmd}"\n\tsmudge = "{cmd}"\n'
                 f'\tprocess = "{cmd}"\n\trequired = true\n'
                 f'[diff "evil"]\n\ttextconv = "{cmd}"\n'
                 f'[diff]\n\texternal = "{cmd}"\n'
                 f'[log]\n\tshowSignature = true\n[gpg]\n\tprogram = "{cmd}"\n'
                 f'[include]\n\tpath = {included}\n')
    (repo / ".gitattributes").write_text("* filter=evil diff=evil\n")
    (repo / "a.txt").write_text("changed by the agent\n")


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, Path]:
    repo = tmp_path / "ws"
    init_repo(repo, {"a.txt": "base\n", "b.txt": "b\n"})
    git(repo, "stash", "list")
    marker = tmp_path / "PWNED"
    plant(repo, marker)
    return repo, marker


def test_state_and_file_list_of_a_hostile_repo_run_nothing(hostile: tuple[Path, Path]) -> None:
    repo, marker = hostile
    # The planted config really is armed: plain git runs it.
    subprocess.run(["git", "-C", str(repo), "status"], capture_output=True, check=False)
    assert marker.exists(), "the planted fsmonitor/filter should fire under plain git"
    marker.unlink()

    state = git_state(repo)
    files = git_file_list(repo)
    assert not marker.exists()
    assert state is not None and state["branch"] == "main" and len(state["head"]) == 40
    assert {d["path"] for d in state["dirty"]} >= {"a.txt", ".gitattributes"}
    assert "b.txt" not in {d["path"] for d in state["dirty"]}
    assert {"a.txt", "b.txt", ".gitattributes"} <= set(files)


def test_a_hostile_head_or_index_does_not_hang_or_escape(tmp_path: Path) -> None:
    repo = tmp_path / "ws"
    init_repo(repo, {"a.txt": "a\n"})
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/../../../../etc/passwd\n")
    (repo / ".git" / "index").unlink()
    import os
    os.mkfifo(repo / ".git" / "index")  # a FIFO would block a naive copy forever
    state = git_state(repo)
    assert state is not None and state["branch"] is None and state["head"] is None


def test_git_env_carries_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    monkeypatch.setenv("GIT_DIR", "/elsewhere")
    env = gitsafe.env()
    assert "ANTHROPIC_API_KEY" not in env and "GIT_DIR" not in env
    assert env["GIT_CONFIG_GLOBAL"] == "/dev/null" and env["GIT_CONFIG_NOSYSTEM"] == "1"
    assert "safe.directory=*" not in gitsafe.HARDEN


def test_upload_list_keeps_the_users_global_ignore(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "global-ignore").write_text("*.swp\n")
    (home / ".gitconfig").write_text(f"[core]\n\texcludesFile = {home / 'global-ignore'}\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    repo = tmp_path / "repo"
    init_repo(repo, {"a.txt": "a\n"})
    (repo / "a.txt.swp").write_text("editor state")
    (repo / ".git" / "info").mkdir(exist_ok=True)
    (repo / ".git" / "info" / "exclude").write_text("local-only/\n")
    (repo / "local-only").mkdir()
    (repo / "local-only" / "x").write_text("x")
    (repo / "new.txt").write_text("n")
    excludes = gitsafe.user_excludes_file()
    assert excludes == home / "global-ignore"
    assert git_file_list(repo, excludes_file=excludes) == ["a.txt", "new.txt"]


def test_an_io_error_while_walking_becomes_a_skipped_entry(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    import errno
    import importlib
    import os

    from parhelia.checkpoint import snapshot
    from parhelia.volume import LocalVolume

    snapshot_module = importlib.import_module("parhelia.checkpoint.snapshot")

    root = tmp_path / "ws"
    (root / "bad").mkdir(parents=True)
    (root / "good.txt").write_text("g")
    real = os.scandir

    def scandir(path: Any) -> Any:
        if str(path).endswith("/bad"):
            raise OSError(errno.EIO, "Input/output error")
        return real(path)

    monkeypatch.setattr(snapshot_module.os, "scandir", scandir)
    m = snapshot(root, volume=LocalVolume(tmp_path / "vol"), session_id="s", parent_id=None,
                 trigger="t")
    assert "good.txt" in m.tree and m.skipped == ["bad: unreadable"]


def test_a_fifo_planted_as_git_config_blocks_nothing(tmp_path: Path) -> None:
    """`.git/config` as a FIFO: git config would wait for a writer (30 s, then a
    traceback that failed the checkpoint); the file is read only when it is regular."""
    import os
    import time
    repo = tmp_path / "ws"
    init_repo(repo, {"a.txt": "a\n"})
    (repo / ".git" / "config").unlink()
    os.mkfifo(repo / ".git" / "config")
    started = time.monotonic()
    state = git_state(repo)
    assert time.monotonic() - started < gitsafe.GIT_TIMEOUT
    assert state is not None and state["branch"] == "main" and len(state["head"]) == 40
    assert gitsafe.read_config(repo / ".git" / "config", "core.bare") is None


def test_a_fifo_in_the_object_store_costs_the_git_state_not_the_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A FIFO where git opens a pack index blocks git itself: the state is given up
    (None) instead of the exception failing every checkpoint of the task."""
    import os
    repo = tmp_path / "ws"
    init_repo(repo, {"a.txt": "a\n"})
    pack = repo / ".git" / "objects" / "pack"
    os.mkfifo(pack / f"pack-{'0' * 40}.idx")
    (pack / f"pack-{'0' * 40}.pack").write_bytes(b"")
    monkeypatch.setattr(gitsafe, "GIT_TIMEOUT", 2)
    assert git_state(repo) is None
    assert "a.txt" in git_file_list(repo)
