"""A contained agent writes its workspace, config dir and hook dir while the worker, outside
its container, reads and writes them (ADR 0030): no symlink the agent plants -- even one
swapped in between a walk and a read -- makes the worker read or write outside them."""

from __future__ import annotations

import importlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modal_worker import hooks
from parhelia import container as sandbox
from parhelia.checkpoint import BlobStore, Conversation, snapshot
from parhelia.checkpoint.projects import encode_project_dir
from parhelia.safeio import open_beneath, read_regular
from parhelia.sandbox import SandboxSpec
from parhelia.volume import LocalVolume

SECRET = "USER-SECRET-FILE-7a1c"
UUID = "0b5c6d2e-1f2a-4b3c-8d4e-5f6a7b8c9d0e"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """The user's files, outside every tree the agent writes."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text(SECRET)
    (home / "notes.json").write_text(json.dumps({"summary": SECRET}))
    return home


def test_a_directory_swapped_for_a_symlink_is_not_gone_through(tmp_path: Path,
                                                               outside: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "d").mkdir(parents=True)
    (ws / "d" / "id_ed25519").write_text("the agent's own file\n")
    fd = open_beneath(ws, ws / "d" / "id_ed25519", os.O_RDONLY)
    os.close(fd)
    # what the worker's walk saw is gone: the agent swapped the directory for a link
    (ws / "d" / "id_ed25519").unlink()
    (ws / "d").rmdir()
    (ws / "d").symlink_to(outside / ".ssh")
    with pytest.raises(OSError):
        open_beneath(ws, ws / "d" / "id_ed25519", os.O_RDONLY)
    with pytest.raises(OSError):
        BlobStore(LocalVolume(tmp_path / "vol")).put_file(ws / "d" / "id_ed25519", ws)
    assert read_regular(ws / "d" / "id_ed25519", 1 << 20, root=ws) is None
    with pytest.raises(OSError):
        open_beneath(ws, outside / ".ssh" / "id_ed25519", os.O_RDONLY)  # not under it


def test_a_conversation_reached_through_a_symlink_is_not_checkpointed(
        tmp_path: Path, outside: Path) -> None:
    ws, cfg = tmp_path / "ws", tmp_path / "cfg"
    ws.mkdir()
    (ws / "a.txt").write_text("a")
    (cfg / "projects").mkdir(parents=True)
    real = outside / "elsewhere"
    real.mkdir()
    (real / f"{UUID}.jsonl").write_text(json.dumps({"text": SECRET}) + "\n")
    (cfg / "projects" / encode_project_dir(str(ws))).symlink_to(real)
    volume = LocalVolume(tmp_path / "vol")
    conv = Conversation(cfg / "projects" / encode_project_dir(str(ws)), UUID, cfg)
    manifest = snapshot(ws, volume=volume, session_id="s", parent_id=None, trigger="turn",
                        conversation=conv)
    assert manifest.conversation == {}
    blobs = [p.read_bytes() for p in (tmp_path / "vol").rglob("*") if p.is_file()]
    assert not any(SECRET.encode() in b for b in blobs)


def test_the_worker_answers_a_hook_without_writing_through_a_planted_link(
        tmp_path: Path, outside: Path) -> None:
    hook_dir = tmp_path / "hooks"
    hook_dir.mkdir()
    (hook_dir / "r1.req").write_text(json.dumps({"summary": "before rm -rf", "pattern": "rm"}))
    (hook_dir / "r1.done").symlink_to(outside / ".ssh" / "id_ed25519")
    (hook_dir / "stolen.req").symlink_to(outside / "notes.json")
    (hook_dir / "fifo.req").touch()
    found = hooks.pending(hook_dir)
    assert [r.id for r in found] == ["r1"]
    assert not (hook_dir / "stolen.req").exists() and not os.path.lexists(
        hook_dir / "stolen.req")
    hooks.answer(hook_dir, found[0], "cp-0123456789abcdef")
    assert (outside / ".ssh" / "id_ed25519").read_text() == SECRET
    assert not (hook_dir / "r1.done").is_symlink()
    assert json.loads((hook_dir / "r1.done").read_text()) == {
        "checkpoint_id": "cp-0123456789abcdef"}


def test_a_workspace_that_is_a_symlink_is_never_bound(tmp_path: Path, outside: Path) -> None:
    ws = tmp_path / "ws"
    ws.symlink_to(outside)
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    planned = sandbox.plan(SandboxSpec(hide=[str(outside)]), workspace=ws, writable=[cfg],
                           command=["/bin/true"], environ={"PATH": os.environ["PATH"]})
    assert isinstance(planned, str) and "not a directory of its own" in planned


def test_the_plan_hides_the_home_and_the_daemons_dirs_and_binds_the_task_back(
        tmp_path: Path) -> None:
    home, daemon = tmp_path / "home", tmp_path / "home" / ".local" / "share" / "parhelia"
    ws, cfg = daemon / "workspaces" / "s-1", daemon / "claude" / "s-1"
    tool = home / ".nvm" / "bin"
    for d in (ws, cfg, tool):
        d.mkdir(parents=True)
    planned = sandbox.plan(
        SandboxSpec(hide=[str(daemon), str(tmp_path / "absent")], read_only=[str(tool)]),
        workspace=ws, writable=[cfg], command=["/bin/true"],
        environ={"PATH": os.environ["PATH"], "HOME": str(home)})
    if isinstance(planned, str):
        pytest.skip(planned)  # no bwrap here: the plan needs its path only
    def hidden(path: Path) -> bool:
        return any(str(path) == h or str(path).startswith(h + "/") for h in planned.hidden)

    assert "/tmp" in planned.hidden and hidden(home) and hidden(daemon)
    assert str(daemon) not in planned.hidden  # inside a hidden directory already
    assert str(tmp_path / "absent") not in planned.hidden
    assert set(planned.writable) == {str(ws), str(cfg)}
    assert str(tool) in planned.read_only
    argv = planned.argv(["claude", "-p"])
    assert argv.index("--tmpfs") < argv.index("--bind")  # hidden first, then bound back
    assert argv[-3:] == ["--", "claude", "-p"]


def test_a_directory_swapped_between_the_walk_and_the_read_is_not_read_through(
        tmp_path: Path, outside: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    snapshot_module = importlib.import_module("parhelia.checkpoint.snapshot")
    ws = tmp_path / "ws"
    (ws / "d").mkdir(parents=True)
    (ws / "d" / "id_ed25519").write_text("the agent's own file, soon swapped\n")
    (ws / "keep.txt").write_text("kept")
    real_walk = snapshot_module.walk

    def walk_then_swap(root: Path, rel: str = "") -> Iterator[Any]:
        yield from real_walk(root, rel)
        if not rel:  # the agent wins the race: after the walk, before the read
            shutil.rmtree(ws / "d")
            (ws / "d").symlink_to(outside / ".ssh")

    monkeypatch.setattr(snapshot_module, "walk", walk_then_swap)
    volume = LocalVolume(tmp_path / "vol")
    manifest = snapshot(ws, volume=volume, session_id="s", parent_id=None, trigger="t")
    assert "d/id_ed25519" not in manifest.tree and "keep.txt" in manifest.tree
    assert any(s.startswith("d/id_ed25519") for s in manifest.skipped)
    blobs = [p.read_bytes() for p in (tmp_path / "vol").rglob("*") if p.is_file()]
    assert not any(SECRET.encode() in b for b in blobs)
