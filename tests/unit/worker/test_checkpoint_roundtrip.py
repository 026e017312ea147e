"""Property tests: snapshot -> restore round trips, incremental == full, stat cache."""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from parhelia.checkpoint import (
    Entry,
    StatCache,
    load_manifest,
    restore,
    restored_mode,
    snapshot,
)
from parhelia.checkpoint import cas as cas_module
from parhelia.volume import LocalVolume
from tests.helpers.worker import tree_state

NAME = st.text(alphabet=list("abcXYZ019_-. éü€😀"), min_size=1, max_size=6).filter(
    lambda s: s not in (".", ".."))
FILE = st.tuples(st.just("file"), st.binary(max_size=300),
                 st.sampled_from([0o644, 0o600, 0o755, 0o700, 0o664, 0o444, 0o4755]))
TREE = st.dictionaries(
    NAME,
    st.recursive(FILE, lambda children: st.tuples(
        st.just("dir"), st.dictionaries(NAME, children, max_size=4),
        st.sampled_from([0o755, 0o700, 0o775, 0o750])), max_leaves=12),
    max_size=5)
PAST_NS = 1_600_000_000 * 10**9


def build(root: Path, tree: dict[str, Any]) -> list[str]:
    """Create ``tree`` under root; return all created paths (relative)."""
    made: list[str] = []
    for name, node in tree.items():
        path = root / name
        if node[0] == "file":
            path.write_bytes(node[1])
            os.chmod(path, node[2])
        else:
            path.mkdir()
            made += [f"{name}/{p}" for p in build(path, node[1])]
            os.chmod(path, node[2])
        made.append(name)
    return made


def add_symlinks(root: Path, paths: list[str], data: st.DataObject) -> None:
    dirs = [""] + [p for p in paths if (root / p).is_dir() and not (root / p).is_symlink()]
    for i in range(data.draw(st.integers(0, 3))):
        where = data.draw(st.sampled_from(dirs))
        target = data.draw(st.sampled_from(paths)) if paths else "missing"
        rel = posixpath.relpath(target, where or ".")
        link = root / where / f"link{i}"
        if not link.exists() and not link.is_symlink():
            link.symlink_to(rel)


def expected(root: Path) -> dict[str, tuple[Any, ...]]:
    """What a restore must produce: the same tree with modes normalised."""
    out = {}
    for rel, item in tree_state(root).items():
        if item[0] == "file":
            out[rel] = ("file", restored_mode(Entry("file", mode=item[1])), item[2])
        elif item[0] == "dir":
            out[rel] = ("dir", restored_mode(Entry("dir", mode=item[1])))
        else:
            out[rel] = item
    return out


def backdate(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.utime(Path(dirpath) / name, ns=(PAST_NS, PAST_NS), follow_symlinks=False)


@given(tree=TREE, data=st.data())
def test_snapshot_then_restore_gives_the_same_tree(tree: dict[str, Any], data: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        src = base / "src"
        src.mkdir()
        paths = build(src, tree)
        add_symlinks(src, paths, data)
        (src / "empty-file").write_bytes(b"")
        (src / "empty-dir").mkdir()
        volume = LocalVolume(base / "vol")
        manifest = snapshot(src, volume=volume, session_id="s", parent_id=None, trigger="test")
        loaded = load_manifest(volume, "s", manifest.id)
        assert loaded.tree == manifest.tree
        dest = base / "dest"
        dest.mkdir()
        (dest / "stale.txt").write_text("must disappear")
        restore(loaded, dest, volume=volume)
        assert tree_state(dest) == expected(src)
        assert sorted(os.listdir(base)) == ["dest", "src", "vol"]  # no staging left behind


@given(tree=TREE, data=st.data())
def test_incremental_snapshot_equals_full_snapshot(tree: dict[str, Any], data: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        src = base / "src"
        src.mkdir()
        paths = build(src, tree)
        backdate(src)
        volume = LocalVolume(base / "vol")
        cache = base / "cache.json"
        snapshot(src, volume=volume, session_id="s", parent_id=None, trigger="t",
                 stat_cache=cache)
        files = [p for p in paths if (src / p).is_file()]
        for rel in data.draw(st.lists(st.sampled_from(files), unique=True)) if files else []:
            choice = data.draw(st.sampled_from(["rewrite", "append", "delete"]))
            if choice == "delete":
                (src / rel).unlink()
            else:
                old = (src / rel).read_bytes()
                (src / rel).write_bytes(old + b"!" if choice == "append" else b"x" * len(old))
        (src / "new-file").write_bytes(data.draw(st.binary(max_size=50)))
        incremental = snapshot(src, volume=volume, session_id="s", parent_id=None,
                               trigger="t", stat_cache=cache)
        full = snapshot(src, volume=volume, session_id="s", parent_id=None, trigger="t")
        assert incremental.tree == full.tree


def test_unchanged_files_are_not_read_again(tmp_path: Path, monkeypatch: Any) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for i in range(20):
        (src / "d" / f"f{i}").write_bytes(os.urandom(100 + i))
    (src / "big").write_bytes(os.urandom(5 << 20))
    backdate(src)
    volume = LocalVolume(tmp_path / "vol")
    cache = tmp_path / "cache.json"
    first = snapshot(src, volume=volume, session_id="s", parent_id=None, trigger="t",
                     stat_cache=cache)
    assert first.stats.rehashed_files == 21

    opened: list[str] = []
    real_open = cas_module.open_regular

    def counting_open(path: Path) -> int:
        opened.append(Path(path).name)
        return real_open(path)

    monkeypatch.setattr(cas_module, "open_regular", counting_open)
    (src / "d" / "f3").write_bytes(b"changed")
    second = snapshot(src, volume=volume, session_id="s", parent_id=first.id, trigger="t",
                      stat_cache=StatCache(cache))
    assert opened == ["f3"]
    assert second.stats.rehashed_files == 1
    assert second.stats.new_bytes == len(b"changed")
    assert second.tree["big"] == first.tree["big"]


def test_restore_seeds_the_stat_cache(tmp_path: Path, monkeypatch: Any) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        (src / f"f{i}").write_bytes(os.urandom(64))
    volume = LocalVolume(tmp_path / "vol")
    manifest = snapshot(src, volume=volume, session_id="s", parent_id=None, trigger="t")
    cache = tmp_path / "cache.json"
    restore(manifest, tmp_path / "dest", volume=volume, stat_cache=cache)
    again = snapshot(tmp_path / "dest", volume=volume, session_id="s", parent_id=manifest.id,
                     trigger="start", stat_cache=cache)
    assert again.stats.rehashed_files == 0
    assert again.tree == manifest.tree


def test_racy_files_are_not_cached(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "fresh").write_bytes(b"just written")
    volume = LocalVolume(tmp_path / "vol")
    cache = tmp_path / "cache.json"
    snapshot(src, volume=volume, session_id="s", parent_id=None, trigger="t", stat_cache=cache)
    assert StatCache(cache).entries == {}  # mtime is too recent to trust


def test_manifest_id_is_content_hash_and_stable(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a")
    volume = LocalVolume(tmp_path / "vol")
    manifest = snapshot(src, volume=volume, session_id="s", parent_id=None, trigger="t")
    assert manifest.id.startswith("cp-") and len(manifest.id) == 19
    assert manifest.compute_id() == manifest.id
    assert (tmp_path / "vol" / "checkpoints" / "s" / f"{manifest.id}.json").is_file()
    blob = manifest.tree["a"].blob
    assert blob is not None
    assert (tmp_path / "vol" / "cas" / "blobs" / blob[:2] / blob).read_bytes() == b"a"


def test_special_files_and_escaping_symlinks_are_skipped(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    os.mkfifo(src / "fifo")
    (src / "out").symlink_to("/etc/passwd")
    (src / "up").symlink_to("../..")
    (src / "ok").symlink_to("out")  # resolves through an escaping link: dropped as well
    (src / "file").write_text("x")
    volume = LocalVolume(tmp_path / "vol")
    manifest = snapshot(src, volume=volume, session_id="s", parent_id=None, trigger="t")
    assert set(manifest.tree) == {"file"}
    assert len(manifest.skipped) == 4
    restore(manifest, tmp_path / "dest", volume=volume)  # and the result restores cleanly


def test_large_files_are_streamed(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom((cas_module.SMALL) + 12345)
    (src / "large").write_bytes(data)
    volume = LocalVolume(tmp_path / "vol")
    manifest = snapshot(src, volume=volume, session_id="s", parent_id=None, trigger="t")
    assert manifest.stats.new_bytes == len(data)
    restore(manifest, tmp_path / "dest", volume=volume)
    assert (tmp_path / "dest" / "large").read_bytes() == data
    assert os.listdir(tmp_path / "vol" / "cas" / "tmp") == []


def test_in_place_restore_into_existing_directory(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "x").write_text("x")
    volume = LocalVolume(tmp_path / "vol")
    manifest = snapshot(src, volume=volume, session_id="s", parent_id=None, trigger="t")
    dest = tmp_path / "dest"
    (dest / "old").mkdir(parents=True)
    (dest / "old" / "y").write_text("y")
    inode = os.stat(dest).st_ino
    restore(manifest, dest, volume=volume, in_place=True)
    assert tree_state(dest) == expected(src)
    assert os.stat(dest).st_ino == inode  # the directory itself was kept (a mount point)


def test_session_side_stores_round_trip_and_a_planted_symlink_is_replaced(tmp_path: Path) -> None:
    """File history, session env and background output travel with the transcript; a
    restore replaces a store directory the agent swapped for a symlink without following
    it, and empties a store the checkpoint did not hold."""
    from parhelia.checkpoint import session_conversation

    ws, config = tmp_path / "ws", tmp_path / "cfg"
    ws.mkdir()
    (ws / "a.txt").write_text("a")
    conv = session_conversation(config, ws, "0b61ea9f-3e12-4a2c-a093-16b5e384540b")
    sides = conv.side_dirs()
    conv.project_dir.mkdir(parents=True)
    (conv.project_dir / f"{conv.session_uuid}.jsonl").write_text('{"type":"user"}\n')
    sub = conv.project_dir / conv.session_uuid / "subagents"
    sub.mkdir(parents=True)
    (sub / "agent-a1.jsonl").write_text('{"type":"user"}\n')
    for prefix, content in (("@file-history", "before edit"), ("@tasks", "bg output")):
        sides[prefix].mkdir(parents=True)
        (sides[prefix] / "item").write_text(content)
    volume = LocalVolume(tmp_path / "vol")
    manifest = snapshot(ws, volume=volume, session_id="s-1", parent_id=None, trigger="turn",
                        conversation=conv)
    assert sorted(manifest.conversation) == sorted([
        f"{conv.session_uuid}.jsonl", f"{conv.session_uuid}/subagents/agent-a1.jsonl",
        "@file-history/item", "@tasks/item"])

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("not the agent's")
    shutil.rmtree(sides["@file-history"])
    sides["@file-history"].symlink_to(outside)
    shutil.rmtree(conv.project_dir / conv.session_uuid)
    sides["@session-env"].mkdir(parents=True)
    (sides["@session-env"] / "stale").write_text("later state")
    restore(manifest, ws, volume=volume, conversation=conv)
    assert (outside / "keep").read_text() == "not the agent's"
    assert not sides["@file-history"].is_symlink()
    assert (sides["@file-history"] / "item").read_text() == "before edit"
    assert (sides["@tasks"] / "item").read_text() == "bg output"
    assert (sub / "agent-a1.jsonl").read_text() == '{"type":"user"}\n'
    assert not sides["@session-env"].exists() or not any(sides["@session-env"].iterdir())
