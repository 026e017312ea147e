"""Hostile manifests (the shared table, tests/helpers/hostile_manifests.py): every violation
is refused with E600 and nothing is written."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from parhelia.checkpoint import Manifest, load_manifest, restore, snapshot
from parhelia.errors import ParheliaError
from parhelia.volume import LocalVolume, blob_key
from tests.helpers.hostile_manifests import MUTATIONS, blob_of
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
    with open(blob, "r+b") as fh:  # one byte changed (writing a fixed one left the
        fh.seek(500_000)           # random content as it was once in 256 runs)
        byte = fh.read(1)[0]
        fh.seek(500_000)
        fh.write(bytes([byte ^ 0xFF]))
    dest = tmp_path / "dest"
    with pytest.raises(ParheliaError) as err:
        restore(manifest, dest, volume=volume)
    assert err.value.code == "E600" and not dest.exists()
    assert sorted(os.listdir(tmp_path)) == ["src", "vol"]
