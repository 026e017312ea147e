"""Modal backend figures: the REAL modal SDK against the local stand-in of Modal's service
(tests/modal_standin), which adds --latency seconds to every RPC (gRPC and the volume's
block transfers alike). Counts are of the RPCs the stand-in answered, by name.

    uv run python bench/modal_backend.py [--latency 0.05] [--tasks 100] [--files 200]

1. RPCs per task lifecycle: push spec, launch, follow the channel to the end, status
   sweeps, pull result + final checkpoint (a real worker and the fake agent).
2. Per checkpoint copy: a workspace of --files files, checkpoints after changing one
   file: the RPCs, objects and bytes of copying each checkpoint to the daemon's side.
3. Event-loop lag while --tasks Modal tasks launch at once and then 5 s of health sweeps
   (sandboxes are inert, no process: the daemon's side is what is measured), and the RPCs
   of one health sweep (statuses), one reconciler sweep (list by owner) and one usage
   correction of the budget (Modal's cost of every container).
4. Peak Python memory of the channel's catch-up from the volume (a 64 MiB spool).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from parhelia.checkpoint import blob_key, load_manifest  # noqa: E402
from parhelia.spec import load_result  # noqa: E402
from parhelia.volume import LocalVolume, result_key  # noqa: E402
from parheliad.core import volsync  # noqa: E402
from tests.helpers.modal_backend import (  # noqa: E402
    OWNER,
    follow,
    make_backend,
    script,
    start,
    worker_spec,
)
from tests.modal_host import state  # noqa: E402
from tests.modal_standin.fixture import StandIn  # noqa: E402

FakeModal = StandIn


def counts(fake: FakeModal) -> dict[str, int]:
    return dict(sorted(collections.Counter(fake.calls()).items()))


async def lifecycle(fake: FakeModal, work: Path) -> dict[str, int]:
    backend = make_backend(fake)
    local = LocalVolume(work / "local-1")
    await backend.app()
    await backend.image()
    fake.reset_calls()
    spec = worker_spec(backend, script({"write": "a.txt", "content": "A"}, {"turn": True},
                                       {"write": "b.txt", "content": "B"}, {"turn": True}),
                       "c-life")
    sb = await start(backend, local, spec)
    await follow(backend, "c-life")
    while (await backend.statuses([(sb, "c-life")]))[0].running:
        await asyncio.sleep(0.2)
    await backend.pull(local, [result_key("c-life")], session_id="s-1")
    result = load_result(local.path_for(result_key("c-life")))
    assert result.last_checkpoint_id
    await volsync.pull_manifest(backend, local, "s-1", result.last_checkpoint_id)
    manifest = load_manifest(local, "s-1", result.last_checkpoint_id)
    await backend.pull(local, sorted(blob_key(d) for d in manifest.blobs()), session_id="s-1")
    return counts(fake)


async def per_checkpoint(fake: FakeModal, work: Path, files: int) -> list[dict[str, int]]:
    backend = make_backend(fake)
    local = LocalVolume(work / "local-2")
    steps = [{"write": f"src/f{i:04d}.txt", "content": f"file {i} " * 40} for i in range(files)]
    steps.append({"turn": True})
    for n in range(3):
        steps += [{"sleep": 1.2}, {"write": "src/f0000.txt", "content": f"changed {n}"},
                  {"turn": True}]
    spec = worker_spec(backend, script(*steps), "c-ckpt")
    await start(backend, local, spec)
    records, _ = await follow(backend, "c-ckpt", timeout=180)
    rows = []
    for r in records:
        if r["type"] != "checkpoint_created":
            continue
        cp = r["data"].get("checkpoint_id") or r["data"].get("id")
        before = set(local.list("checkpoints"))
        fake.reset_calls()
        fetched = await volsync.pull_manifest(backend, local, "s-1", cp)
        documents = len(set(local.list("checkpoints")) - before)  # a delta's base once
        manifest = load_manifest(local, "s-1", cp)
        blobs = sorted(blob_key(d) for d in manifest.blobs())
        missing = [b for b in blobs if not local.exists(b)]
        got = await backend.pull(local, missing, session_id="s-1")
        rows.append({"trigger": r["data"].get("trigger"), "files": len(manifest.tree),
                     "delta": manifest.delta is not None,
                     "objects_pulled": documents + len(missing),
                     "bytes_pulled": fetched + got, "rpcs": counts(fake)})
    return rows


async def many(fake: FakeModal, work: Path, tasks: int) -> dict[str, object]:
    backend = make_backend(fake, call_timeout_seconds=120)
    local = LocalVolume(work / "local-3")
    await backend.app()
    await backend.image()
    await backend.named_secret_key()
    fake.inert()
    specs = [worker_spec(backend, "x", f"c-many-{i:03d}") for i in range(tasks)]
    for spec in specs:
        local.put(f"specs/{spec.container_id}.json", json.dumps(spec.to_dict()).encode())
    for spec in specs:  # each container's spec into its session's area (s-1 for all)
        await backend.push(local, [f"specs/{spec.container_id}.json"],
                           session_id=spec.session_id)
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - t0 - 0.01)

    from tests.helpers.modal_backend import container_spec

    tick = asyncio.create_task(ticker())
    t0 = time.perf_counter()
    ids = await asyncio.gather(*(backend.launch(container_spec(s)) for s in specs))
    elapsed = time.perf_counter() - t0
    items = list(zip(ids, [s.container_id for s in specs], strict=True))
    sweeps = 0
    while time.perf_counter() - t0 < elapsed + 5:  # then the health sweep's pace, for 5 s
        await backend.statuses(items)
        sweeps += 1
        await asyncio.sleep(0.5)
    stop.set()
    await tick
    fake.reset_calls()
    statuses = await backend.statuses(list(zip(ids, [s.container_id for s in specs],
                                              strict=True)))
    sweep = counts(fake)
    fresh = make_backend(fake)  # the reconciler of a restarted daemon
    await fresh.app()
    fake.reset_calls()
    listed = await fresh.list(OWNER)
    first_reconcile = counts(fake)
    fake.reset_calls()
    await fresh.list(OWNER)
    second_reconcile = counts(fake)
    fake.reset_calls()  # the budget's usage correction for all of them, once ended
    costs = await fresh.compute_costs([(s.container_id, time.time() - 60) for s in specs])
    usage = counts(fake)
    fake.inert(False)
    lags_ms = sorted(x * 1000 for x in lags)
    return {
        "tasks": tasks, "launch_wall_s": round(elapsed, 2), "sweeps_after": sweeps,
        "running": sum(s.running for s in statuses), "listed": len(listed),
        "loop_lag_ms": {"samples": len(lags_ms), "p50": round(statistics.median(lags_ms), 2),
                        "p99": round(lags_ms[int(len(lags_ms) * 0.99) - 1], 2),
                        "max": round(lags_ms[-1], 2)},
        "health_sweep_calls": sweep, "reconcile_calls_first": first_reconcile,
        "reconcile_calls_next": second_reconcile,
        "usage_correction_calls": usage, "usage_costs_found": len(costs),
    }


async def catch_up_memory(fake: FakeModal, mib: int) -> dict[str, Any]:
    """Peak Python memory of the channel's catch-up from the volume after the sandbox
    ended: a spool of ``mib`` MiB, the daemon's cursor two records before its end."""
    import tracemalloc

    backend = make_backend(fake)
    await backend.ensure_volume()
    volume = state.volume_dir("parhelia-data")
    (volume / "specs").mkdir(parents=True, exist_ok=True)  # names the container's session
    (volume / "specs" / "c-bench-long.json").write_text(json.dumps({"session_id": "s-1"}))
    spool = volume / "sessions" / "s-1" / "spool" / "c-bench-long.jsonl"
    spool.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"seq": 0, "type": "heartbeat", "data": {"pad": "x" * 900}}) + "\n"
    with open(spool, "w") as fh:
        for _ in range((mib << 20) // len(line)):
            fh.write(line)
    cursor = spool.stat().st_size
    with open(spool, "a") as fh:
        fh.write(json.dumps({"seq": 1, "type": "heartbeat", "data": {}}) + "\n")
        fh.write(json.dumps({"seq": 2, "type": "worker_exited", "data": {}}) + "\n")
    tracemalloc.start()
    t0 = time.perf_counter()
    records, _ = await follow(backend, "c-bench-long", cursor=cursor, timeout=120)
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"spool_mib": mib, "records": len(records), "peak_mib": round(peak / 2**20, 2),
            "wall_s": round(elapsed, 2)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.05,
                        help="seconds added to every SDK call (default 0.05)")
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--files", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="parhelia-modal-bench-"))
    root = work / "modal-standin"
    root.mkdir()
    os.environ["FAKE_MODAL_ROOT"] = str(root)
    fake = StandIn(root).start()
    os.environ.update(fake.env())
    fake.latency(args.latency)
    try:
        print(f"the real modal SDK against the stand-in, {args.latency * 1000:g} ms added "
              "to every RPC")
        calls = await lifecycle(fake, work)
        print(f"1. RPCs per task lifecycle ({sum(calls.values())}): {calls}")
        for row in await per_checkpoint(fake, work, args.files):
            print(f"2. checkpoint copy ({row['trigger']}, {row['files']} files"
                  f"{', delta manifest' if row['delta'] else ''}): "
                  f"{row['objects_pulled']} objects, {row['bytes_pulled']} bytes pulled, "
                  f"RPCs {row['rpcs']}")
        print("3.", json.dumps(await many(fake, work, args.tasks), indent=1))
        print("4. catch-up from the volume:", json.dumps(await catch_up_memory(fake, 64)))
    finally:
        fake.clear()
        fake.stop_all()
        fake.stop()


if __name__ == "__main__":
    asyncio.run(main())
