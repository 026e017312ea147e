"""`session pull` and `--from-session` on hostile input: manifests whose ``.git`` would run
commands in the user's shell, conversation files that already exist, destinations that
are not new, conversations that cannot be told apart."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from parhelia.checkpoint import Manifest, restore, snapshot
from parhelia.checkpoint.projects import Conversation, encode_project_dir
from parhelia.errors import ParheliaError
from parhelia.volume import LocalVolume
from parheliad.core import takehome
from tests.helpers.gitrepo import git, init_repo

UUID = "0b5c6d2e-1f2a-4b3c-8d4e-5f6a7b8c9d0e"


def _session(tmp_path: Path, files: dict[str, str], transcript: str = '{"type":"user"}\n',
             extra: dict[str, str] | None = None) -> tuple[LocalVolume, Manifest]:
    """A checkpoint of a workspace holding ``files`` and conversation UUID."""
    ws, cfg = tmp_path / "ws", tmp_path / "worker-cfg"
    ws.mkdir()
    for rel, text in files.items():
        (ws / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws / rel).write_text(text)
    project = cfg / "projects" / encode_project_dir(str(ws))
    project.mkdir(parents=True)
    (project / f"{UUID}.jsonl").write_text(transcript)
    for rel, text in (extra or {}).items():
        (cfg / rel).parent.mkdir(parents=True, exist_ok=True)
        (cfg / rel).write_text(text)
    volume = LocalVolume(tmp_path / "vol")
    manifest = snapshot(ws, volume=volume, session_id="s-1", parent_id=None, trigger="turn",
                        conversation=Conversation(project, UUID, cfg))
    return volume, manifest


def test_a_git_config_and_hooks_from_a_checkpoint_never_reach_the_users_disk(
        tmp_path: Path) -> None:
    volume, manifest = _session(tmp_path, {
        "src/a.py": "print(1)\n",
        ".git/HEAD": "ref: refs/heads/main\n",
        ".git/config": "[core]\n\tfsmonitor = touch /tmp/pwned\n",
        ".git/hooks/post-checkout": "#!/bin/sh\ntouch /tmp/pwned\n",
        ".git/objects/info/alternates": "/home/someone/else/.git/objects\n",
        ".git/refs/heads/main": "0" * 40 + "\n",
        "vendor/lib/.git": "gitdir: /home/someone/else/.git\n",
        "sub/.GIT/config": "[core]\n\tpager = evil\n",
    })
    cleaned, left_out, git_dirs = takehome.sanitize_git(manifest)
    assert git_dirs == [".git", "sub/.GIT"]
    kept = set(cleaned.tree)
    assert {".git/HEAD", ".git/refs/heads/main", "src/a.py"} <= kept
    for bad in (".git/config", ".git/hooks/post-checkout", ".git/objects/info/alternates",
                "vendor/lib/.git", "sub/.GIT/config"):
        assert bad not in kept
        assert any(line.startswith(bad + ":") for line in left_out), (bad, left_out)

    dest, cfg = tmp_path / "home-copy", tmp_path / "user-cfg"
    copy = takehome.pull_home(volume, manifest, directory=dest, config_dir=cfg,
                              session_uuid=UUID, zero=None)
    config = (dest / ".git" / "config").read_text()
    assert "fsmonitor" not in config and "repositoryformatversion = 0" in config
    assert not (dest / ".git" / "hooks").exists()
    assert not (dest / "vendor" / "lib" / ".git").exists()
    assert (dest / "src" / "a.py").read_text() == "print(1)\n"
    assert copy.transcript == cfg / "projects" / encode_project_dir(str(dest)) / \
        f"{UUID}.jsonl"
    assert os.stat(copy.transcript).st_mode & 0o777 == 0o600


def test_an_existing_conversation_is_never_overwritten_and_nothing_is_written(
        tmp_path: Path) -> None:
    volume, manifest = _session(tmp_path, {"a.txt": "a\n"})
    dest, cfg = tmp_path / "dest", tmp_path / "user-cfg"
    mine = cfg / "projects" / encode_project_dir(str(dest)) / f"{UUID}.jsonl"
    mine.parent.mkdir(parents=True)
    mine.write_text("the user's own\n")
    with pytest.raises(ParheliaError) as err:
        takehome.pull_home(volume, manifest, directory=dest, config_dir=cfg,
                           session_uuid=UUID, zero=None)
    assert err.value.code == "E103" and "never overwritten" in err.value.message
    assert mine.read_text() == "the user's own\n"
    assert not dest.exists()


def test_side_store_files_that_exist_are_kept(tmp_path: Path) -> None:
    volume, manifest = _session(
        tmp_path, {"a.txt": "a\n"},
        extra={f"file-history/{UUID}/abc@v1": "remote v1\n",
               f"file-history/{UUID}/abc@v2": "remote v2\n"})
    cfg = tmp_path / "user-cfg"
    history = cfg / "file-history" / UUID
    history.mkdir(parents=True)
    (history / "abc@v1").write_text("local v1\n")
    copy = takehome.pull_home(volume, manifest, directory=tmp_path / "dest", config_dir=cfg,
                              session_uuid=UUID, zero=None)
    assert (history / "abc@v1").read_text() == "local v1\n"
    assert (history / "abc@v2").read_text() == "remote v2\n"
    assert copy.conversation_files == 2  # the transcript and abc@v2


@pytest.mark.parametrize("state", ["file", "non-empty", "symlink"])
def test_the_destination_must_be_new_or_empty(tmp_path: Path, state: str) -> None:
    dest = tmp_path / "dest"
    if state == "file":
        dest.write_text("x")
    elif state == "non-empty":
        dest.mkdir()
        (dest / "keep.txt").write_text("mine")
    else:
        (tmp_path / "elsewhere").mkdir()
        dest.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ParheliaError) as err:
        takehome.fresh_directory(str(dest))
    assert err.value.code == "E103"
    with pytest.raises(ParheliaError):
        takehome.fresh_directory("relative/dir")


def test_a_checkpoint_without_the_conversation_is_refused_before_any_write(
        tmp_path: Path) -> None:
    volume, manifest = _session(tmp_path, {"a.txt": "a\n"})
    other = str(uuid.uuid4())
    with pytest.raises(ParheliaError) as err:
        takehome.pull_home(volume, manifest, directory=tmp_path / "dest",
                           config_dir=tmp_path / "cfg", session_uuid=other, zero=None)
    assert err.value.code == "E202"
    assert not (tmp_path / "dest").exists()


def test_the_local_conversation_is_found_near_the_user_then_anywhere(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    here, there = tmp_path / "here", tmp_path / "there"
    for where in (here, there):
        where.mkdir()
        project = cfg / "projects" / encode_project_dir(str(where))
        project.mkdir(parents=True)
        (project / f"{UUID}.jsonl").write_text("{}\n")
    found = takehome.find_local_conversation(cfg, UUID, (here,))
    assert found.project_dir.name == encode_project_dir(str(here))
    with pytest.raises(ParheliaError) as err:
        takehome.find_local_conversation(cfg, UUID, (tmp_path / "elsewhere",))
    assert err.value.code == "E104"
    with pytest.raises(ParheliaError) as err:
        takehome.find_local_conversation(cfg, str(uuid.uuid4()), (here,))
    assert err.value.code == "E202"
    (cfg / "projects" / encode_project_dir(str(there)) / f"{UUID}.jsonl").unlink()
    os.symlink("/etc/passwd",
               cfg / "projects" / encode_project_dir(str(there)) / f"{UUID}.jsonl")
    found = takehome.find_local_conversation(cfg, UUID, (tmp_path / "elsewhere",))
    assert found.project_dir.name == encode_project_dir(str(here))  # the link is no file


@pytest.mark.parametrize("value", ["", "not-a-uuid", "../../etc/passwd",
                                   UUID.upper() + "x", "{" + UUID + "}"])
def test_conversation_ids_are_uuids(value: str) -> None:
    with pytest.raises(ParheliaError) as err:
        takehome.check_uuid(value)
    assert err.value.code == "E101"


def test_git_in_the_pulled_directory_runs_nothing_from_the_checkpoint(tmp_path: Path) -> None:
    """The point of the fresh config: `git status` in DIR runs no fsmonitor of the worker's
    (restored verbatim, the same checkpoint does run it)."""
    marker = tmp_path / "pwned"
    ws = tmp_path / "repo"
    init_repo(ws, {"a.txt": "a\n"})
    git(ws, "config", "core.fsmonitor", f"touch {marker}")
    volume = LocalVolume(tmp_path / "vol")
    cfg = tmp_path / "worker-cfg"
    project = cfg / "projects" / encode_project_dir(str(ws))
    project.mkdir(parents=True)
    (project / f"{UUID}.jsonl").write_text("{}\n")
    manifest = snapshot(ws, volume=volume, session_id="s-1", parent_id=None, trigger="turn",
                        conversation=Conversation(project, UUID, cfg))

    verbatim = tmp_path / "verbatim"
    restore(manifest, verbatim, volume=volume)
    subprocess.run(["git", "-C", str(verbatim), "status"], capture_output=True, check=False)
    assert marker.exists()  # the attack is real
    marker.unlink()

    dest = tmp_path / "dest"
    takehome.pull_home(volume, manifest, directory=dest, config_dir=tmp_path / "cfg",
                       session_uuid=UUID, zero=None)
    status = subprocess.run(["git", "-C", str(dest), "status", "--porcelain"],
                            capture_output=True, text=True, check=False)
    assert status.returncode == 0, status.stderr  # still a working repository
    assert git(dest, "log", "--format=%s") == "base"
    assert not marker.exists()
