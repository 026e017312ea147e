"""Checkpoint benchmark: first checkpoint, incremental, restore, against the disk itself.

    uv run python bench/checkpoint.py                      # 20,000 files, 1 GiB
    uv run python bench/checkpoint.py --files 2000 --mib 100   # quick run

Everything runs on the same disk in one temp directory. The references are what the
disk does with the same tree in the same run: ``cp -a`` of the tree (writing it once:
the physical floor of a restore) and ``sha256sum`` of every file (reading and hashing it
once; with ``cp -a``, the floor of a first checkpoint, which copies and hashes). First
checkpoint, ``cp -a``, hashing and restore are each the median of ``--runs`` (3) runs
into fresh directories, with dirty pages flushed (``sync``, not timed) before each step
so one step's writeback does not slow the next; the page cache stays warm (numbers are
for the code path, not a cold disk). Goals: restore <= 1.2x ``cp -a``; first checkpoint
<= 1.5x (``cp -a`` + hashing); incremental < 1 s writing <= 1.1x the changed bytes.

"Per-turn overhead" is what the worker pays after every agent turn: ``--turns`` turn
checkpoints (workspace and conversation, as the worker takes them: it keeps the parent
manifest between turns), each after changing ``--changed`` files and appending a turn to
a transcript. Goals: < 0.5 s per turn, and the blobs written <= 1.1x the changed bytes.
The manifest (a delta against the last full one, ADR 0003) is reported apart, and with
the blobs as "all written".
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proto"))

from _machine import machine

from parhelia.checkpoint import Conversation, StatCache, manifest_key, restore, snapshot
from parhelia.checkpoint.manifest import Manifest
from parhelia.volume import LocalVolume

MB = 1_000_000
WORDS = b"def class return import self value index parser result error files bytes \n"


def sizes(n: int, total: int, rng: random.Random) -> list[int]:
    """Log-uniform sizes (a few large files, many small ones) scaled to ``total``."""
    raw = [2 ** rng.uniform(6, 22) for _ in range(n)]
    scale = total / sum(raw)
    out = [max(1, int(r * scale)) for r in raw]
    out[0] += total - sum(out)
    return out


def generate(root: Path, files: int, total: int, seed: int) -> int:
    """Half text-like (compressible), half random data; every file unique."""
    rng = random.Random(seed)
    text_pool = (WORDS * (8 * MB // len(WORDS) + 1))[: 8 * MB]
    rand_pool = rng.randbytes(8 * MB)
    written = 0
    for i, size in enumerate(sizes(files, total, rng)):
        d = root / f"d{i % 40:02d}" / f"s{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        pool = text_pool if i % 2 else rand_pool
        header = f"{i}:{rng.getrandbits(64):x}\n".encode()
        with open(d / f"f{i:05d}.{'txt' if i % 2 else 'bin'}", "wb") as fh:
            fh.write(header[:size])
            left = size - min(size, len(header))
            while left:
                start = rng.randrange(0, len(pool) - min(left, len(pool) // 2))
                chunk = pool[start : start + min(left, len(pool) // 2)]
                fh.write(chunk)
                left -= len(chunk)
        written += size
    return written


def change(root: Path, count: int, seed: int) -> int:
    rng = random.Random(seed + 1)
    paths = sorted(p for p in root.rglob("*") if p.is_file())
    changed = 0
    for path in rng.sample(paths, count):
        size = path.stat().st_size
        path.write_bytes(rng.randbytes(size))
        changed += size
    return changed


def per_turn(ws: Path, volume: LocalVolume, cache: Path, parent: Manifest, turns: int,
             changed: int, seed: int, workers: int | None) -> list[tuple[float, int, int, int]]:
    """(seconds, blob bytes written, manifest bytes, changed bytes) of each turn checkpoint."""
    rng = random.Random(seed + 2)
    conv = Conversation(ws.parent / "projects" / "-ws", "bench-session")
    conv.project_dir.mkdir(parents=True, exist_ok=True)
    transcript = conv.project_dir / f"{conv.session_uuid}.jsonl"
    transcript.write_bytes(b'{"type":"user","message":{"content":"start"}}\n' * 20_000)
    time.sleep(0.1)
    stat_cache = StatCache(cache)  # the worker loads it once and keeps it
    # The worker's start checkpoint holds the conversation so far (not measured).
    parent = snapshot(ws, volume=volume, session_id="bench", parent_id=parent.id,
                      trigger="start", stat_cache=stat_cache, conversation=conv,
                      workers=workers, previous=parent)
    out = []
    for turn in range(turns):
        changed_bytes = change(ws, changed, seed + 10 * (turn + 1))  # not the incremental's
        line = b'{"type":"assistant","message":{"content":"' + rng.randbytes(8_000).hex().encode()
        line += b'"}}\n'
        with open(transcript, "ab") as fh:
            fh.write(line)
        changed_bytes += len(line)
        time.sleep(0.1)
        seconds, manifest = timed(snapshot, ws, volume=volume, session_id="bench",
                                  parent_id=parent.id, trigger="turn",
                                  stat_cache=stat_cache, conversation=conv,
                                  workers=workers, previous=parent)
        assert isinstance(manifest, Manifest)
        size = volume.size(manifest_key("bench", manifest.id))
        out.append((seconds, manifest.stats.new_bytes, size, changed_bytes))
        parent = manifest
    return out


def timed(fn: object, *args: object, **kw: object) -> tuple[float, object]:
    os.sync()
    start = time.perf_counter()
    result = fn(*args, **kw)  # type: ignore[operator]
    return time.perf_counter() - start, result


def shell(command: str) -> None:
    subprocess.run(["sh", "-c", command], check=True, stdout=subprocess.DEVNULL)


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--mib", type=int, default=1024, help="total size in MiB")
    parser.add_argument("--changed", type=int, default=10, help="files changed before the "
                        "incremental checkpoint")
    parser.add_argument("--runs", type=int, default=3, help="runs of each timed step "
                        "(the median is reported)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the temp dir")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--turns", type=int, default=5, help="turn checkpoints measured")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="parhelia-bench-", dir=args.dir))
    try:
        ws = base / "ws"
        ws.mkdir()
        print(f"generating {args.files} files, {args.mib} MiB in {base} ...", flush=True)
        t_gen, total = timed(generate, ws, args.files, args.mib * 1024 * 1024, args.seed)
        assert isinstance(total, int)
        print(f"  generated in {t_gen:.1f} s", flush=True)
        time.sleep(0.2)  # let the newest mtimes leave the stat cache's racy window

        firsts, copies, hashes, restores = [], [], [], []
        first: Manifest | None = None
        volume = LocalVolume(base / "vol0")
        for run in range(args.runs):
            vol, out, copy = base / f"vol{run}", base / f"restored{run}", base / f"cp{run}"
            volume = LocalVolume(vol)
            seconds, made = timed(snapshot, ws, volume=volume, session_id="bench",
                                  parent_id=None, trigger="start",
                                  stat_cache=StatCache(base / f"cache{run}.json"),
                                  workers=args.workers)
            assert isinstance(made, Manifest)
            first = made
            firsts.append(seconds)
            copies.append(timed(shell, f"cp -a '{ws}' '{copy}'")[0])
            hashes.append(timed(shell, f"cd '{ws}' && find . -type f -print0 | "
                                       "xargs -0 sha256sum")[0])
            restores.append(timed(restore, made, out, volume=volume, workers=args.workers)[0])
            print(f"  run {run + 1}: first {firsts[-1]:.2f} s, cp -a {copies[-1]:.2f} s, "
                  f"sha256sum {hashes[-1]:.2f} s, restore {restores[-1]:.2f} s", flush=True)
            for done in (out, copy) + ((vol,) if run < args.runs - 1 else ()):
                shutil.rmtree(done, ignore_errors=True)
        assert first is not None
        cache = base / f"cache{args.runs - 1}.json"
        changed = change(ws, args.changed, args.seed)
        time.sleep(0.1)
        t_incr, incr = timed(snapshot, ws, volume=volume, session_id="bench",
                             parent_id=first.id, trigger="turn",
                             stat_cache=StatCache(cache), workers=args.workers)
        assert isinstance(incr, Manifest)
        turns = per_turn(ws, volume, cache, incr, args.turns, args.changed, args.seed,
                         args.workers)

        t_first, t_cp, t_hash, t_restore = (median(v) for v in
                                            (firsts, copies, hashes, restores))

        def rate(seconds: float) -> str:
            return f"{total / MB / seconds:8.1f}"

        new_first = first.stats.new_bytes
        new_incr = incr.stats.new_bytes
        rows = [
            ("first checkpoint", t_first, rate(t_first), f"{new_first / MB:.1f} MB written"),
            ("cp -a of the tree", t_cp, rate(t_cp), "writing it once"),
            ("sha256sum of the tree", t_hash, rate(t_hash), "reading and hashing it once"),
            ("full restore (verified)", t_restore, rate(t_restore), ""),
            (f"incremental ({args.changed} files changed)", t_incr, "        -",
             f"{new_incr / MB:.2f} MB written for {changed / MB:.2f} MB changed"),
        ]
        print(f"\nmachine: {machine()}")
        print(f"workspace: {args.files} files, {total / MB:.1f} MB; medians of {args.runs} "
              "runs, sync between steps\n")
        print(f"{'operation':<36} {'seconds':>8} {'MB/s':>9}  notes")
        print("-" * 100)
        for name, seconds, mbps, note in rows:
            print(f"{name:<36} {seconds:8.2f} {mbps:>9}  {note}")
        restore_ratio = t_restore / t_cp
        first_ratio = t_first / (t_cp + t_hash)
        print("\nratios")
        print(f"  restore / cp -a:                      {restore_ratio:5.2f}x")
        print(f"  first checkpoint / (cp -a + sha256sum): {first_ratio:5.2f}x")
        print(f"  incremental vs first:                 {t_first / t_incr:5.1f}x faster")
        print(f"  incremental bytes written / changed bytes: {new_incr / max(changed, 1):.3f}")
        print(f"\nper-turn overhead ({args.turns} turns, {args.changed} files changed and a "
              "transcript growing by one turn each)")
        for i, (seconds, blobs, manifest_bytes, turn_changed) in enumerate(turns, 1):
            print(f"  turn {i}: {seconds:6.3f} s, blobs {blobs / MB:6.3f} MB for "
                  f"{turn_changed / MB:6.3f} MB changed ({blobs / turn_changed:.3f}x), "
                  f"manifest {manifest_bytes / MB:.3f} MB, all written "
                  f"{(blobs + manifest_bytes) / turn_changed:.3f}x")
        worst = max(t[0] for t in turns)
        worst_ratio = max(t[1] / t[3] for t in turns)
        goals = [
            ("restore <= 1.2x cp -a", restore_ratio <= 1.2),
            ("first checkpoint <= 1.5x (cp -a + sha256sum)", first_ratio <= 1.5),
            ("incremental < 1 s", t_incr < 1.0),
            ("incremental writes <= 1.1x changed", new_incr <= 1.1 * changed),
            ("per-turn checkpoint < 0.5 s", worst < 0.5),
            ("per-turn blobs written <= 1.1x changed", worst_ratio <= 1.1),
        ]
        print("\ngoals")
        for goal, ok in goals:
            print(f"  [{'ok' if ok else 'MISSED'}] {goal}")
        return 0 if all(ok for _, ok in goals) else 1
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
