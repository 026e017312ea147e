"""Live-view costs: the overlap check after a checkpoint, and progress reporting.

    uv run python bench/live_views.py                  # 20,000 files, 100 changed per task
    uv run python bench/live_views.py --files 2000     # quick run

Overlap: what the daemon's overlap monitor does after a checkpoint of a live task (ADR
0023): load the task's checkpoint zero and newest manifests, diff them, intersect the
changed paths with another task's. Both tasks' trees are real snapshots on a local
volume. The monitor does this in a worker thread, only when another live task shares the
repository, and remembers each task's paths per checkpoint (so one checkpoint costs one
task's load and diff, not both).

Progress: ``Tracker.report`` called from a worker thread for every file, as restore,
snapshot and pull do, with a watcher following (``ProgressHub.watch``): reports per
second, and how many states the watcher saw (merged to one per 50 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proto"))

from parhelia.checkpoint import diff, load_manifest, snapshot
from parhelia.volume import LocalVolume
from parheliad.core.progress import ProgressHub


def _tree(root: Path, files: int) -> None:
    for i in range(files):
        path = root / f"pkg{i % 50}" / f"mod{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"def f{i}():\n    return {i}\n")


def _task(volume: LocalVolume, base: Path, work: Path, session: str, changed: range
          ) -> tuple[str, str]:
    """(checkpoint zero, newest checkpoint) of a task that changed ``changed`` files."""
    zero = snapshot(base, volume=volume, session_id=session, parent_id=None,
                    trigger="workspace_upload")
    for i in changed:
        (work / f"pkg{i % 50}" / f"mod{i}.py").write_text(f"def f{i}():\n    return -{i}\n")
    last = snapshot(work, volume=volume, session_id=session, parent_id=zero.id, trigger="turn")
    return zero.id, last.id


def overlap(files: int, changed: int, rounds: int) -> None:
    import shutil

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        volume = LocalVolume(root / "volume")
        base = root / "base"
        _tree(base, files)
        tasks = []
        for n, start in enumerate((0, changed // 2)):  # half of their changes overlap
            work = root / f"work{n}"
            shutil.copytree(base, work)
            session = f"s-{n:012x}"
            tasks.append((session, *_task(volume, base, work, session,
                                          range(start, start + changed))))
        timings = []
        for _ in range(rounds):
            started = time.perf_counter()
            paths = []
            for session, zero, last in tasks:
                a = load_manifest(volume, session, zero)
                b = load_manifest(volume, session, last)
                paths.append({c.path for c in diff(a, b, ignore=(".git",)).changes})
            both = paths[0] & paths[1]
            timings.append(time.perf_counter() - started)
        timings.sort()
        print(f"overlap check, {files:,} files, {changed} changed per task, "
              f"{len(both)} in common: median {timings[len(timings) // 2] * 1000:.1f} ms, "
              f"worst {timings[-1] * 1000:.1f} ms over {rounds} rounds "
              "(both tasks' manifests loaded and diffed, as after a checkpoint)")


async def progress(reports: int) -> None:
    hub = ProgressHub()
    op = "bench-" + "0" * 20
    seen = 0

    async def watch() -> None:
        nonlocal seen
        async for _state in hub.watch(op):
            seen += 1

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0)
    with hub.track(op) as tracker:
        tracker.phase("bench")

        def work() -> float:
            started = time.perf_counter()
            for done in range(1, reports + 1):
                tracker.report(done, reports)
            return time.perf_counter() - started

        spent = await asyncio.to_thread(work)
    await watcher
    print(f"progress reports from a thread: {reports / spent:,.0f}/s "
          f"({spent / reports * 1e6:.2f} us each); the watcher saw {seen} states "
          f"for {reports:,} reports in {spent * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--changed", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--reports", type=int, default=200_000)
    args = parser.parse_args()
    overlap(args.files, args.changed, args.rounds)
    asyncio.run(progress(args.reports))


if __name__ == "__main__":
    main()
