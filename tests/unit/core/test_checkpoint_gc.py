"""checkpoint gc: the retention policy removes old automatic checkpoints, keeps manual
ones, checkpoint zero, the latest and the newest `keep_last`, and frees only the blobs
no remaining manifest (or config bundle) refers to."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pytest

from parhelia.checkpoint import Manifest, blob_key, load_manifest, restore, snapshot, verify
from parhelia.paths import Paths
from parheliad.config import Config
from parheliad.core.events import EventBus
from parheliad.core.runtime import Runtime
from parheliad.store import open_store
from parheliad.store.clock import now_us
from parheliad.wiring import build_runtime

DAY_US = 86_400 * 1_000_000


@pytest.fixture
async def runtime(tmp_path: Path):
    paths = Paths(home=tmp_path, config_file=tmp_path / "config.toml",
                  state_dir=tmp_path / "state", data_dir=tmp_path / "data",
                  socket=tmp_path / "s")
    cfg = dataclasses.replace(Config(), checkpoint=dataclasses.replace(
        Config().checkpoint, keep_last=1, max_age_days=1.0))
    store = await open_store(tmp_path / "db.sqlite")
    yield build_runtime(store, paths, lambda: cfg, "owner", EventBus())
    await store.close()


async def test_gc_applies_retention_and_frees_unreferenced_blobs(runtime: Runtime,
                                                                 tmp_path: Path) -> None:
    store, volume = runtime.store, runtime.volume
    ws = tmp_path / "ws"
    ws.mkdir()
    task = await store.write(lambda tx: tx.tasks.insert(dict(
        prompt="p", cpu=1.0, memory_mb=512, timeout_seconds=60, max_turns=5,
        permission_mode="acceptEdits", backend="local")))
    session = await store.write(lambda tx: tx.sessions.insert(task.id))
    made = []
    plan = [("workspace_upload", False, 10), ("turn", False, 9), ("manual", True, 8),
            ("turn", False, 7), ("turn", False, 6), ("turn", False, 0.0)]
    for i, (trigger, manual, age_days) in enumerate(plan):
        (ws / f"file{i}.txt").write_text(f"only in checkpoint {i}\n")
        m = snapshot(ws, volume=volume, session_id=session.id,
                     parent_id=made[-1][0] if made else None, trigger=trigger)
        (ws / f"file{i}.txt").unlink()  # each file lives in exactly one checkpoint

        def index(tx, m=m, trigger=trigger, manual=manual, age=age_days):  # noqa: ANN001
            tx.checkpoints.insert(session_id=session.id, checkpoint_id=m.id, trigger=trigger,
                                  manual=manual, created_at=now_us() - int(age * DAY_US))
            tx.sessions.update(session.id, latest_checkpoint_id=m.id)

        await store.write(index)
        made.append((m.id, m.tree[f"file{i}.txt"].blob))
    old = time.time() - 2 * 3600  # blobs older than the in-flight horizon
    for _, blob in made:
        os.utime(volume.path_for(blob_key(blob)), (old, old))

    dry = await runtime.checkpoints.gc(dry_run=True)
    # kept: upload (zero), manual, newest automatic (keep_last=1, also the latest);
    # removed: the three old automatic turns older than a day.
    assert sorted(dry.removed) == sorted([made[1][0], made[3][0], made[4][0]])
    assert dry.blobs_removed == 3 and dry.bytes_freed > 0
    assert all(volume.exists(blob_key(b)) for _, b in made)  # a dry run changes nothing

    done = await runtime.checkpoints.gc(dry_run=False)
    assert sorted(done.removed) == sorted(dry.removed)
    left = {cp.id for cp in await store.checkpoints.list(session.id)}
    assert left == {made[0][0], made[2][0], made[5][0]}
    for i, (cp_id, blob) in enumerate(made):
        removed = cp_id in done.removed
        assert volume.exists(blob_key(blob)) is not removed, i
        assert volume.exists(f"checkpoints/{session.id}/{cp_id}.json") is not removed
    again = await runtime.checkpoints.gc(dry_run=False)
    assert again.removed == [] and again.blobs_removed == 0


async def test_gc_keeps_the_base_of_a_kept_delta(runtime: Runtime, tmp_path: Path) -> None:
    """Turn checkpoints are deltas against an older full manifest: when that one is due
    for removal but a kept checkpoint needs it, it stays (listed, with its blobs), and the
    kept checkpoint still restores."""
    store, volume = runtime.store, runtime.volume
    ws = tmp_path / "ws"
    ws.mkdir()
    for i in range(30):
        (ws / f"common{i}.txt").write_text(f"in every checkpoint {i}\n")
    task = await store.write(lambda tx: tx.tasks.insert(dict(
        prompt="p", cpu=1.0, memory_mb=512, timeout_seconds=60, max_turns=5,
        permission_mode="acceptEdits", backend="local")))
    session = await store.write(lambda tx: tx.sessions.insert(task.id))
    made: list[Manifest] = []
    for i, age_days in enumerate((9, 8, 7, 0.0)):
        (ws / "turn.txt").write_text(f"turn {i}\n")
        m = snapshot(ws, volume=volume, session_id=session.id,
                     parent_id=made[-1].id if made else None, trigger="turn",
                     previous=made[-1] if made else None)

        def index(tx, m=m, age=age_days):  # noqa: ANN001
            tx.checkpoints.insert(session_id=session.id, checkpoint_id=m.id, trigger="turn",
                                  created_at=now_us() - int(age * DAY_US))
            tx.sessions.update(session.id, latest_checkpoint_id=m.id)

        await store.write(index)
        made.append(m)
    base, latest = made[0], made[-1]
    assert base.delta is None and latest.delta is not None and latest.delta.base_id == base.id
    old = time.time() - 2 * 3600
    for key in volume.list("cas/blobs"):
        path = volume.path_for(key)
        assert path is not None
        os.utime(path, (old, old))

    done = await runtime.checkpoints.gc(dry_run=False)
    assert sorted(done.removed) == sorted([made[1].id, made[2].id])
    assert done.blobs_removed == 2  # "turn 1", "turn 2": only in the removed deltas
    left = {cp.id for cp in await store.checkpoints.list(session.id)}
    assert left == {base.id, latest.id}
    restored = load_manifest(volume, session.id, latest.id)
    assert restored.tree == latest.tree
    assert verify(restored, volume=volume).ok
    restore(restored, tmp_path / "out", volume=volume)
    assert (tmp_path / "out" / "turn.txt").read_text() == "turn 3\n"
