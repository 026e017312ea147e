"""diff / unified_diff, verify, git-aware lists, project encoding, conversation capture."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from modal_worker.channel import MemoryChannel
from modal_worker.heartbeat import Heartbeat, ProcSampler, PsutilSampler, disk_usage
from modal_worker.stream import AgentStats
from parhelia import records
from parhelia.checkpoint import (
    Conversation,
    diff,
    encode_project_dir,
    git_file_list,
    git_state,
    project_dir,
    restore,
    snapshot,
    unified_diff,
    verify,
)
from parhelia.volume import LocalVolume, blob_key


def snap(root: Path, volume: LocalVolume, **kw: Any) -> Any:
    return snapshot(root, volume=volume, session_id="s", parent_id=None, trigger="t", **kw)


def test_diff_and_patch(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "keep.txt").write_text("same\n")
    (ws / "edit.txt").write_text("one\ntwo\nthree\n")
    (ws / "gone.txt").write_text("bye\n")
    (ws / "mode.sh").write_text("#!/bin/sh\n")
    (ws / "bin").write_bytes(b"\0\1\2")
    volume = LocalVolume(tmp_path / "vol")
    a = snap(ws, volume)
    (ws / "edit.txt").write_text("one\n2\nthree")
    (ws / "gone.txt").unlink()
    (ws / "new.txt").write_text("hello\n")
    (ws / "mode.sh").chmod(0o755)
    (ws / "bin").write_bytes(b"\0\1\3\4")
    (ws / "link").symlink_to("keep.txt")
    b = snap(ws, volume)
    d = diff(a, b)
    assert [c.path for c in d.added] == ["link", "new.txt"]
    assert [(c.path, c.old_size) for c in d.removed] == [("gone.txt", 4)]
    assert [(c.path, c.old_size, c.new_size, c.mode_only) for c in d.modified] == [
        ("bin", 3, 4, False), ("edit.txt", 14, 11, False), ("mode.sh", 10, 10, True)]
    assert not diff(a, a) and diff(None, a).added
    patch = unified_diff(a, b, volume=volume)
    assert "diff --git a/edit.txt b/edit.txt\n--- a/edit.txt\n+++ b/edit.txt\n" in patch
    assert "-two\n-three\n+2\n+three\n\\ No newline at end of file\n" in patch
    assert "deleted file mode 100644" in patch and "new file mode 120000" in patch
    assert "old mode 100644\nnew mode 100755" in patch
    assert "Binary files a/bin and b/bin differ" in patch
    # the text part of the patch applies with git and gives the new tree
    repo = tmp_path / "repo"
    restore(a, repo, volume=volume)
    text_paths = [c.path for c in d.changes if c.path != "bin"]
    text_patch = unified_diff(a, b, volume=volume, paths=text_paths)
    proc = subprocess.run(["git", "apply", "-"], cwd=repo, input=text_patch.encode(),
                          capture_output=True)
    assert proc.returncode == 0, proc.stderr
    for path in ("edit.txt", "new.txt", "keep.txt"):
        assert (repo / path).read_bytes() == (ws / path).read_bytes()
    assert os.readlink(repo / "link") == "keep.txt" and not (repo / "gone.txt").exists()
    assert (repo / "mode.sh").stat().st_mode & 0o100
    only = unified_diff(a, b, volume=volume, paths=["new.txt"])
    assert only.startswith("diff --git a/new.txt") and "edit.txt" not in only
    assert diff(a, b, ignore=["new.txt", "bin"]).added[0].path == "link"


def test_verify_finds_missing_and_corrupt_blobs(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a").write_text("aaa")
    (ws / "b").write_text("bbb")
    volume = LocalVolume(tmp_path / "vol")
    m = snap(ws, volume)
    assert verify(m, volume=volume).ok
    a_blob, b_blob = m.tree["a"].blob, m.tree["b"].blob
    volume.delete(blob_key(a_blob))
    path = volume.path_for(blob_key(b_blob))
    path.chmod(0o644)
    path.write_text("BBB")
    report = verify(m, volume=volume)
    assert not report.ok and report.missing == [a_blob] and report.corrupt == [b_blob]


def test_verify_blames_the_manifest_when_its_size_is_wrong(tmp_path: Path) -> None:
    """A file that grew while it was snapshotted: the manifest records the old size, the
    blob holds the new content. The blob is intact; the manifest is what is wrong."""
    import dataclasses

    from parhelia.checkpoint import load_manifest, save_manifest
    from parheliad.core.checkpoints import problems

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a").write_text("aaa")
    volume = LocalVolume(tmp_path / "vol")
    m = snap(ws, volume)
    m.tree["a"] = dataclasses.replace(m.tree["a"], size=2)
    m.id = ""
    m = load_manifest(volume, "s", save_manifest(volume, m).rsplit("/", 1)[1][:-5])
    report = verify(m, volume=volume)
    assert not report.ok
    assert report.corrupt == [] and report.missing == []
    assert [(x.path, x.recorded, x.actual) for x in report.sizes] == [("a", 2, 3)]
    [line] = problems(report)
    assert "the manifest is wrong about a" in line and "intact" in line


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                       env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})

    git("init", "-q", "-b", "main")
    (root / ".gitignore").write_text("build/\n*.log\n")
    (root / "src").mkdir()
    (root / "src" / "app.py").write_text("print(1)\n")
    (root / "gone.txt").write_text("x")
    git("add", ".")
    git("commit", "-q", "-m", "init")
    (root / "stash.txt").write_text("s")
    git("add", "stash.txt")
    git("stash", "-q")
    (root / "gone.txt").unlink()
    (root / "src" / "app.py").write_text("print(2)\n")
    (root / "new file.txt").write_text("untracked")
    (root / "build").mkdir()
    (root / "build" / "out.o").write_text("ignored")
    (root / "debug.log").write_text("ignored")
    return root


def test_git_file_list_and_state(repo: Path, tmp_path: Path) -> None:
    files = git_file_list(repo)
    assert files == [".gitignore", "gone.txt", "new file.txt", "src/app.py"]
    state = git_state(repo)
    assert state is not None
    assert state["branch"] == "main" and len(state["head"]) == 40
    assert {d["path"] for d in state["dirty"]} == {"gone.txt", "new file.txt", "src/app.py"}
    assert len(state["stash"]) == 1 and state["stash"][0].startswith("stash@{0}")
    assert git_state(tmp_path) is None
    volume = LocalVolume(tmp_path / "vol")
    m = snap(repo, volume, files=files, git=state)
    assert set(m.tree) == {".gitignore", "new file.txt", "src", "src/app.py"}
    assert m.git == state


def test_project_dir_encoding() -> None:
    assert encode_project_dir("/tmp/my_proj.v2 x") == "-tmp-my-proj-v2-x"
    assert encode_project_dir("/workspace") == "-workspace"
    assert encode_project_dir("/ws/é😀") == "-ws----"  # UTF-16 units, as in JavaScript
    long = "/" + "a" * 300
    encoded = encode_project_dir(long)
    assert encoded.startswith("-" + "a" * 199 + "-") and len(encoded) > 201
    assert encoded == encode_project_dir(long) != encode_project_dir(long + "b")


def test_conversation_is_captured_and_restored(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    uuid = "3b241101-e2bb-4255-8caf-4136c566a962"
    proj = project_dir(tmp_path / "claude", ws)
    (proj / uuid / "subagents").mkdir(parents=True)
    (proj / f"{uuid}.jsonl").write_bytes(b'{"a":1}\n{"b":2}\n{"partial')
    (proj / uuid / "subagents" / "agent-1.jsonl").write_bytes(b'{"s":1}\n')
    (proj / "other-session.jsonl").write_text("not ours\n")
    volume = LocalVolume(tmp_path / "vol")
    m = snap(ws, volume, conversation=Conversation(proj, uuid))
    assert set(m.conversation) == {f"{uuid}.jsonl", f"{uuid}/subagents/agent-1.jsonl"}
    assert m.conversation[f"{uuid}.jsonl"].size == len(b'{"a":1}\n{"b":2}\n')
    fresh = project_dir(tmp_path / "claude-2", ws)
    restore(m, ws, volume=volume, conversation_dir=fresh)
    assert (fresh / f"{uuid}.jsonl").read_bytes() == b'{"a":1}\n{"b":2}\n'
    assert (fresh / f"{uuid}.jsonl").stat().st_mode & 0o777 == 0o600
    assert (fresh / uuid / "subagents" / "agent-1.jsonl").is_file()
    assert not (fresh / "other-session.jsonl").exists()


@pytest.mark.parametrize("sampler", [ProcSampler, PsutilSampler])
def test_heartbeat_samples(tmp_path: Path, sampler: Any) -> None:
    (tmp_path / "f").write_bytes(b"x" * 10000)
    channel = MemoryChannel()
    stats = AgentStats(records.Usage(turns=2, input_tokens=5))
    sleeper = subprocess.Popen(["sleep", "5"], start_new_session=True)
    try:
        hb = Heartbeat(channel, 60, tmp_path, stats, agent_pid=lambda: sleeper.pid,
                       agent_alive=lambda: sleeper.poll() is None)
        hb.sampler = sampler()
        hb.beat()
        data = hb.beat()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert data["memory_bytes"] > 0 and data["cpu_percent"] >= 0
    assert data["disk_bytes"] >= 10000 and data["agent_alive"] is True
    assert data["turns"] == 2 and data["input_tokens"] == 5
    assert [r["type"] for r in channel.records] == ["heartbeat", "heartbeat"]
    assert disk_usage(tmp_path / "missing") == 0
