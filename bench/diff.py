"""Diff benchmark: `task diff` / `checkpoint diff` (parheliad/core/patches.py) against
`git diff --no-index` of the same two files, on the shapes that were slow with difflib.

    uv run python bench/diff.py [--runs 7] [--difflib]

Shapes: a 0.95 MB lockfile-shaped file (uv.lock-like packages with dependencies, sdists
and wheels with hashes) with 340 packages changed, and a 0.6 MB file of repeated lines
(150 short lines over and over) with 200 lines changed. Each is checkpointed before and
after the change (a local volume in a temp directory, as the daemon has it); the patch
and the counts alone (`--stat`) are timed, median of ``--runs``, beside `git diff
--no-index` of the two files (process start included on both sides). Goal: within 3x
of git. ``--difflib`` also times, once, the fallback used where git is missing (the
only path before: seconds).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proto"))

from _machine import machine

from parhelia.checkpoint import snapshot
from parhelia.volume import LocalVolume
from parheliad.core import patches

GOAL = 3.0


def lockfile(target_bytes: int, changed: int, seed: int) -> tuple[bytes, bytes]:
    """A uv.lock-like file of about ``target_bytes``: packages with dependencies on each
    other (a dependency line recurs in many packages), an sdist and wheels with hashes;
    ``changed`` packages get a new version, new hashes and a new upload time."""
    rng = random.Random(seed)

    def digest(*parts: object) -> str:
        return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()

    def entry(name: str, version: str, deps: list[str]) -> str:
        url = f"https://files.pythonhosted.org/packages/{digest(name)[:2]}/{name}-{version}"
        wheels = "".join(
            f'    {{ url = "{url}-py3-none-{tag}.whl", hash = "sha256:'
            f'{digest(name, version, tag)}", size = {len(name) * 1000 + i} }},\n'
            for i, tag in enumerate(("any", "manylinux_2_17_x86_64", "macosx_11_0_arm64")))
        dependencies = "".join(f'    {{ name = "{d}" }},\n' for d in deps)
        return (f'[[package]]\nname = "{name}"\nversion = "{version}"\n'
                f'source = {{ registry = "https://pypi.org/simple" }}\n'
                f"dependencies = [\n{dependencies}]\n"
                f'sdist = {{ url = "{url}.tar.gz", hash = "sha256:{digest(name, version)}", '
                f'size = {len(version) * 7919} }}\nwheels = [\n{wheels}]\n\n')

    packages: list[list[Any]] = []
    size = 0
    while size < target_bytes:
        name = f"pkg-{len(packages):04d}-" + "".join(rng.choice("abcdefghij") for _ in range(6))
        version = f"{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 99)}"
        popular = [p[0] for p in packages[:60]]
        deps = sorted(set(rng.sample(popular, min(len(popular), rng.randint(0, 8)))))
        packages.append([name, version, deps])
        size += len(entry(name, version, deps))
    old = "".join(entry(*p) for p in packages)
    for i in rng.sample(range(len(packages)), changed):
        packages[i][1] += ".post1"
    new = "".join(entry(*p) for p in packages)
    return old.encode(), new.encode()


def repeated(target_bytes: int, changed: int, seed: int) -> tuple[bytes, bytes]:
    """150 short lines over and over (each too rare for difflib's "popular line" rule,
    its worst case); ``changed`` lines edited."""
    rng = random.Random(seed)
    cycle = [f"  - item: {i}\n" for i in range(150)]
    lines: list[str] = []
    size = 0
    while size < target_bytes:
        lines.append(cycle[len(lines) % len(cycle)])
        size += len(lines[-1])
    old = "".join(lines)
    for i in rng.sample(range(len(lines)), changed):
        lines[i] = "  - item: changed\n"
    return old.encode(), "".join(lines).encode()


def median_s(fn: Callable[[], Any], runs: int) -> float:
    fn()  # warm-up (page cache, imports)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--difflib", action="store_true",
                        help="also time the difflib fallback (slow)")
    args = parser.parse_args()
    shapes = {
        "lockfile 0.95 MB, 340 entries changed": lockfile(950_000, 340, 1),
        "repeated lines 0.6 MB, 200 lines changed": repeated(600_000, 200, 2),
    }
    print(f"machine: {machine()}")
    version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout
    print(f"git: {version.strip()}")
    print(f"\n{'shape':<42} {'what':<26} {'seconds':>9} {'x git':>7}")
    failed = False
    for name, (old, new) in shapes.items():
        base = Path(tempfile.mkdtemp(prefix="parhelia-bench-diff-"))
        try:
            (base / "old").write_bytes(old)
            (base / "new").write_bytes(new)
            ws, volume = base / "ws", LocalVolume(base / "vol")
            ws.mkdir()
            (ws / "file").write_bytes(old)
            a = snapshot(ws, volume=volume, session_id="bench", parent_id=None, trigger="t")
            (ws / "file").write_bytes(new)
            b = snapshot(ws, volume=volume, session_id="bench", parent_id=a.id, trigger="t")
            git_argv = ["git", "diff", "--no-index", str(base / "old"), str(base / "new")]
            t_git = median_s(lambda argv=git_argv: subprocess.run(
                argv, stdout=subprocess.DEVNULL, check=False), args.runs)
            made = patches.build(a, b, volume=volume)
            counts = made.lines["file"]
            numstat = patches.build(a, b, volume=volume, with_text=False).lines["file"]
            rows = [
                ("git diff --no-index", t_git),
                ("patch (task diff)", median_s(
                    lambda a=a, b=b, v=volume: patches.build(a, b, volume=v), args.runs)),
                ("counts only (--stat)", median_s(
                    lambda a=a, b=b, v=volume: patches.build(a, b, volume=v,
                                                             with_text=False), args.runs)),
            ]
            if args.difflib:
                from parhelia.checkpoint import unified_diff

                start = time.perf_counter()
                unified_diff(a, b, volume=volume)
                rows.append(("difflib (no git), 1 run", time.perf_counter() - start))
            for what, seconds in rows:
                ratio = seconds / t_git
                verdict = ""
                if what.startswith(("patch", "counts")):
                    ok = ratio <= GOAL
                    failed |= not ok
                    verdict = f"  goal <= {GOAL:.0f}x: {'ok' if ok else 'MISSED'}"
                print(f"{name:<42} {what:<26} {seconds:9.4f} {ratio:7.2f}{verdict}")
            print(f"{'':<42} (+{counts.added} -{counts.removed} lines, "
                  f"patch {len(made.text) / 1e6:.2f} MB; numstat "
                  f"{'agrees' if numstat == counts else f'DIFFERS: {numstat}'})")
        finally:
            shutil.rmtree(base, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
