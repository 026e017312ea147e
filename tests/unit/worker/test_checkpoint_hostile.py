"""Hostile manifests: every violation is refused with E600 and nothing is written."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from parhelia.checkpoint import Manifest, load_manifest, restore, snapshot
from parhelia.errors import ParheliaError
from parhelia.volume import LocalVolume, blob_key
from tests.helpers.worker import tree_state


@pytest.fixture
def setup(tmp_path: Path) -> tuple[LocalVolume, dict[str, Any], Path]:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub" / "b.txt").write_text("beta")
    (src / "link").symlink_to("a.txt")
    volume = LocalVolume(tmp_path / "vol")
    manifest = snapshot(src, volume=volume, session_id="s", parent_id=None, trigger="t")
    dest = tmp_path / "dest"
    (dest / "keep").mkdir(parents=True)
    (dest / "keep" / "me.txt").write_text("precious")
    (dest / "top.txt").write_text("top")
    return volume, manifest.to_dict(), dest


def entry(raw: dict[str, Any], path: str) -> dict[str, Any]:
    return next(e for e in raw["tree"] if e["path"] == path)


def blob_of(raw: dict[str, Any], path: str) -> str:
    return str(entry(raw, path)["blob"])


def add(raw: dict[str, Any], **item: Any) -> None:
    raw["tree"].append(item)


MUTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "dotdot": lambda m: add(m, path="../evil", type="file", mode=0o644, size=5,
                            blob=blob_of(m, "a.txt")),
    "inner dotdot": lambda m: add(m, path="sub/../../evil", type="file", mode=0o644, size=5,
                                  blob=blob_of(m, "a.txt")),
    "absolute": lambda m: add(m, path="/tmp/evil", type="file", mode=0o644, size=5,
                              blob=blob_of(m, "a.txt")),
    "not normalised": lambda m: add(m, path="sub//x", type="file", mode=0o644, size=5,
                                    blob=blob_of(m, "a.txt")),
    "dot component": lambda m: add(m, path="./x", type="file", mode=0o644, size=5,
                                   blob=blob_of(m, "a.txt")),
    "nul": lambda m: add(m, path="x\x00y", type="file", mode=0o644, size=5,
                         blob=blob_of(m, "a.txt")),
    "empty path": lambda m: add(m, path="", type="dir", mode=0o755),
    "symlink absolute": lambda m: add(m, path="evil", type="symlink", target="/etc/passwd"),
    "symlink out": lambda m: add(m, path="sub/evil", type="symlink", target="../../etc"),
    "symlink chain out": lambda m: (
        add(m, path="sub/up", type="symlink", target=".."),
        add(m, path="chain", type="symlink", target="sub/up/.."),
    ),
    "symlink loop": lambda m: (
        add(m, path="l1", type="symlink", target="l2"),
        add(m, path="l2", type="symlink", target="l1"),
    ),
    "write through symlink": lambda m: (
        add(m, path="dirlink", type="symlink", target="sub"),
        add(m, path="dirlink/x.txt", type="file", mode=0o644, size=5, blob=blob_of(m, "a.txt")),
    ),
    "under a file": lambda m: add(m, path="a.txt/x", type="file", mode=0o644, size=5,
                                  blob=blob_of(m, "a.txt")),
    "duplicate path": lambda m: add(m, **dict(entry(m, "a.txt"))),
    "missing blob": lambda m: entry(m, "a.txt").update(blob="0" * 64),
    "blob not hex": lambda m: entry(m, "a.txt").update(blob="../../etc/passwd"),
    "absurd size": lambda m: entry(m, "a.txt").update(size=1 << 50),
    "negative size": lambda m: entry(m, "a.txt").update(size=-1),
    "size differs from blob": lambda m: entry(m, "a.txt").update(size=4),
    "setuid mode": lambda m: entry(m, "a.txt").update(mode=0o4755),
    "sticky dir": lambda m: entry(m, "sub").update(mode=0o1777),
    "negative mode": lambda m: entry(m, "a.txt").update(mode=-1),
    "mode as text": lambda m: entry(m, "a.txt").update(mode="755"),
    "unknown type": lambda m: entry(m, "a.txt").update(type="device"),
    "conversation dotdot": lambda m: m["conversation"].append(
        {"path": "../../x.jsonl", "blob": blob_of(m, "a.txt"), "size": 5}),
    "tree not a list": lambda m: m.update(tree={"a": 1}),
    "wrong format": lambda m: m.update(format=99),
}


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_hostile_manifest_is_refused_and_nothing_written(
        setup: tuple[LocalVolume, dict[str, Any], Path], case: str) -> None:
    volume, raw, dest = setup
    MUTATIONS[case](raw)
    before = tree_state(dest)
    siblings = sorted(os.listdir(dest.parent))
    conv = dest.parent / "conv"
    with pytest.raises(ParheliaError) as err:
        manifest = Manifest.from_json(json.dumps(raw).encode())
        restore(manifest, dest, volume=volume, conversation_dir=conv)
    assert err.value.code == "E600"
    assert tree_state(dest) == before
    assert sorted(os.listdir(dest.parent)) == siblings
    assert not conv.exists()


def test_corrupt_blob_is_detected_while_copying(
        setup: tuple[LocalVolume, dict[str, Any], Path]) -> None:
    volume, raw, dest = setup
    path = volume.path_for(blob_key(blob_of(raw, "sub/b.txt")))
    os.chmod(path, 0o644)
    path.write_text("BETA")  # same size, different content
    before = tree_state(dest)
    siblings = sorted(os.listdir(dest.parent))
    with pytest.raises(ParheliaError) as err:
        restore(Manifest.from_dict(raw), dest, volume=volume)
    assert err.value.code == "E600"
    assert tree_state(dest) == before
    assert sorted(os.listdir(dest.parent)) == siblings


def test_duplicate_json_keys_are_refused(setup: tuple[LocalVolume, dict[str, Any], Path]) -> None:
    _, raw, _ = setup
    text = json.dumps(raw)
    text = text.replace('"format": 1', '"format": 1, "format": 1', 1)
    with pytest.raises(ParheliaError) as err:
        Manifest.from_json(text.encode())
    assert err.value.code == "E600"


def test_tampered_manifest_is_refused_on_load(tmp_path: Path,
                                              setup: tuple[LocalVolume, dict[str, Any], Path]
                                              ) -> None:
    volume, raw, _ = setup
    key = f"checkpoints/s/{raw['id']}.json"
    stored = json.loads(volume.get(key))
    stored["tree"][0]["mode"] = 0o777
    volume.put(key, json.dumps(stored).encode())
    with pytest.raises(ParheliaError) as err:
        load_manifest(volume, "s", raw["id"])
    assert err.value.code == "E600"


def test_unknown_checkpoint_is_e202(setup: tuple[LocalVolume, dict[str, Any], Path]) -> None:
    volume, _, _ = setup
    with pytest.raises(ParheliaError) as err:
        load_manifest(volume, "s", "cp-0000000000000000")
    assert err.value.code == "E202"


def test_destination_symlink_is_refused(tmp_path: Path,
                                        setup: tuple[LocalVolume, dict[str, Any], Path]) -> None:
    volume, raw, dest = setup
    link = tmp_path / "dest-link"
    link.symlink_to(dest)
    with pytest.raises(ParheliaError):
        restore(Manifest.from_dict(raw), link, volume=volume)
    assert link.is_symlink()


def test_corrupt_large_blob_is_detected_in_the_kernel_copy_path(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "large").write_bytes(os.urandom(1 << 20))
    volume = LocalVolume(tmp_path / "vol")
    manifest = snapshot(src, volume=volume, session_id="s", parent_id=None, trigger="t")
    blob = volume.path_for(blob_key(manifest.tree["large"].blob or ""))
    blob.chmod(0o644)
    with open(blob, "r+b") as fh:
        fh.seek(500_000)
        fh.write(b"X")
    dest = tmp_path / "dest"
    with pytest.raises(ParheliaError) as err:
        restore(manifest, dest, volume=volume)
    assert err.value.code == "E600" and not dest.exists()
    assert sorted(os.listdir(tmp_path)) == ["src", "vol"]
