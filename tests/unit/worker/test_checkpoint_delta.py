"""Per-turn checkpoints cost what the turn changed (ADR 0003, "Per-turn cost"): an
append-only transcript gains a chunk instead of being stored again, and a turn's manifest
is a delta against the session's last full manifest. Restore, verify and hostile input
behave exactly as for full manifests."""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path

import pytest

from parhelia.checkpoint import (
    BlobStore,
    Conversation,
    StatCache,
    load_manifest,
    manifest_key,
    restore,
    snapshot,
    verify,
)
from parhelia.checkpoint.manifest import ID_PREFIX, MAX_CHUNKS, Manifest, canonical_json
from parhelia.errors import ParheliaError
from parhelia.volume import LocalVolume
from tests.helpers.worker import tree_state

# the module, not the function the package exports under the same name
snapshot_module = importlib.import_module("parhelia.checkpoint.snapshot")
LINE = b'{"type":"user","message":{"content":"hello"}}\n'


class Session:
    """A workspace of ``files`` files and a transcript, checkpointed turn by turn the way
    the worker does it (the parent manifest kept in memory)."""

    def __init__(self, root: Path, files: int = 40) -> None:
        self.ws, self.volume = root / "ws", LocalVolume(root / "vol")
        self.ws.mkdir()
        for i in range(files):
            (self.ws / f"f{i:03d}.txt").write_text(f"file {i}\n" * 20)
        self.conv = Conversation(root / "config" / "projects" / "-ws", "sess-uuid")
        self.conv.project_dir.mkdir(parents=True)
        self.transcript = self.conv.project_dir / "sess-uuid.jsonl"
        self.transcript.write_bytes(LINE * 500)
        self.cache = StatCache(root / "cache.json")
        self.last: Manifest | None = None

    def turn(self, *, changed: int = 1, append: bytes = LINE * 3, n: int = 0,
             previous: bool = True) -> Manifest:
        for i in range(changed):
            (self.ws / f"f{i:03d}.txt").write_text(f"turn {n} changed {i}\n")
        with open(self.transcript, "ab") as fh:
            fh.write(append)
        self.last = snapshot(self.ws, volume=self.volume, session_id="s",
                             parent_id=self.last.id if self.last else None, trigger="turn",
                             stat_cache=self.cache, conversation=self.conv,
                             previous=self.last if previous else None)
        return self.last

    def restored(self, manifest_id: str, dest: Path) -> tuple[dict[str, object], bytes]:
        manifest = load_manifest(self.volume, "s", manifest_id)
        conv = Conversation(dest.parent / "conv", "sess-uuid")
        restore(manifest, dest, volume=self.volume, conversation=conv)
        return tree_state(dest), (conv.project_dir / "sess-uuid.jsonl").read_bytes()


def test_a_turn_stores_what_it_changed_and_restores_whole(tmp_path: Path) -> None:
    s = Session(tmp_path, files=400)
    first = s.turn(n=0)
    assert first.delta is None and len(first.conversation["sess-uuid.jsonl"].chunks) == 1
    appended = b'{"type":"assistant","message":{"content":"' + b"x" * 5000 + b'"}}\n'
    second = s.turn(n=1, append=appended)
    ref = second.conversation["sess-uuid.jsonl"]
    assert len(ref.chunks) == 2
    assert ref.chunks[0] == first.conversation["sess-uuid.jsonl"].chunks[0]
    # the changed file and the appended turn, nothing of the 25 kB transcript before it
    assert second.stats.new_bytes == len(appended) + len("turn 1 changed 0\n")
    assert second.delta is not None and second.delta.base_id == first.id
    assert set(second.delta.changed) == {"f000.txt"} and second.delta.removed == ()
    stored = s.volume.size(manifest_key("s", second.id))
    assert stored * 10 < s.volume.size(manifest_key("s", first.id))

    loaded = load_manifest(s.volume, "s", second.id)
    assert loaded.tree == second.tree and loaded.conversation == second.conversation
    state, transcript = s.restored(second.id, tmp_path / "out")
    assert state == tree_state(s.ws) and transcript == s.transcript.read_bytes()
    assert verify(loaded, volume=s.volume).ok


def test_deltas_are_against_the_last_full_manifest_and_rebase_when_large(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot_module, "REBASE_MIN_ENTRIES", 5)
    s = Session(tmp_path, files=40)
    base = s.turn(n=0)
    deltas = [s.turn(n=n, changed=2) for n in range(1, 4)]
    assert all(m.delta is not None and m.delta.base_id == base.id for m in deltas)
    (s.ws / "f039.txt").unlink()
    removed = s.turn(n=4)
    assert removed.delta is not None and removed.delta.removed == ("f039.txt",)
    big = s.turn(n=5, changed=10)  # more than max(5, 41 // 16) entries: a full manifest
    assert big.delta is None
    after = s.turn(n=6)
    assert after.delta is not None and after.delta.base_id == big.id
    for m in (*deltas, removed, big, after):
        state, transcript = s.restored(m.id, tmp_path / f"out-{m.id}")
        assert set(state) == {p for p in m.tree}
        assert transcript == b"".join(BlobStore(s.volume).read(c.blob, c.size)
                                      for c in m.conversation["sess-uuid.jsonl"].chunks)


def test_the_parent_is_read_from_the_volume_when_not_held(tmp_path: Path) -> None:
    """The daemon's checkpoint of a stopped session, or a resumed worker: same result."""
    s = Session(tmp_path)
    first = s.turn(n=0)
    second = s.turn(n=1, previous=False)
    third = s.turn(n=2, previous=False)
    assert second.delta is not None and third.delta is not None
    assert third.delta.base_id == first.id
    assert len(third.conversation["sess-uuid.jsonl"].chunks) == 3


def test_a_rewritten_transcript_is_stored_again_whole(tmp_path: Path) -> None:
    s = Session(tmp_path)
    s.turn(n=0)
    s.transcript.write_bytes(LINE.replace(b"hello", b"HELLO") * 501)  # not an append
    again = s.turn(n=1, append=b"")
    ref = again.conversation["sess-uuid.jsonl"]
    assert len(ref.chunks) == 1 and ref.size == len(LINE) * 501
    _, transcript = s.restored(again.id, tmp_path / "out")
    assert transcript == s.transcript.read_bytes()


def test_a_partial_last_line_waits_and_chunks_are_bounded(tmp_path: Path) -> None:
    s = Session(tmp_path)
    s.turn(n=0)
    half = s.turn(n=1, append=b'{"type":"assist')
    assert half.conversation["sess-uuid.jsonl"].size == len(LINE) * 503
    done = s.turn(n=2, append=b'ant"}\n')
    assert done.conversation["sess-uuid.jsonl"].size == s.transcript.stat().st_size
    for n in range(3, MAX_CHUNKS + 3):
        last = s.turn(n=n)
    assert 1 <= len(last.conversation["sess-uuid.jsonl"].chunks) <= MAX_CHUNKS
    _, transcript = s.restored(last.id, tmp_path / "out")
    assert transcript == s.transcript.read_bytes()


def _raw(volume: LocalVolume, checkpoint_id: str) -> dict[str, object]:
    return json.loads(volume.get(manifest_key("s", checkpoint_id)))


def _store_as(volume: LocalVolume, raw: dict[str, object]) -> str:
    """Store an edited manifest under the id of its edited content (anyone who can write
    the volume can do that), so only the format's rules can refuse it."""
    body = {k: v for k, v in raw.items() if k != "id"}
    cid = ID_PREFIX + hashlib.sha256(canonical_json(body)).hexdigest()[:16]
    volume.put(manifest_key("s", cid), json.dumps({"id": cid, **body}).encode())
    return cid


HOSTILE = {
    "base missing": lambda r, base, other: r.update(base="cp-" + "0" * 16),
    "base is a delta": lambda r, base, other: r.update(base=other),
    "removes what the base lacks": lambda r, base, other: r.update(removed=["nope.txt"]),
    "removes and changes a path": lambda r, base, other: r.update(
        removed=["f000.txt"]),
    "tree and base": lambda r, base, other: r.update(tree=[]),
    "base in format 1": lambda r, base, other: r.update(format=1),
    "chunk sizes do not add up": lambda r, base, other: r["conversation"][0].update(
        size=r["conversation"][0]["size"] + 1),
    "one chunk listed as chunks": lambda r, base, other: r["conversation"][0].update(
        chunks=r["conversation"][0]["chunks"][:1]),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_deltas_are_refused(tmp_path: Path, case: str) -> None:
    s = Session(tmp_path)
    base = s.turn(n=0)
    delta = s.turn(n=1)
    other = s.turn(n=2)
    assert load_manifest(s.volume, "s", _store_as(s.volume, _raw(s.volume, delta.id))
                         ).tree == delta.tree  # the unedited document loads
    raw = _raw(s.volume, delta.id)
    HOSTILE[case](raw, base.id, other.id)
    cid = _store_as(s.volume, raw)
    with pytest.raises(ParheliaError) as err:
        load_manifest(s.volume, "s", cid)
    assert err.value.code in ("E600", "E202")
