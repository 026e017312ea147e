"""Clone benchmark: a ``--repo`` task's checkpoint zero made on the daemon's side
(``parheliad/core/repo_source.py``: ls-remote, a one-commit fetch into the mirror, a
checkout, the upload into the content-addressed volume), against a plain
``git clone --depth 1`` of the same repository and the same token, over the loopback git
server of the tests (``git http-backend`` on 127.0.0.1).

    uv run python bench/repo_clone.py [--files 3000] [--runs 5]

Timed, median of ``--runs``: a cold clone (empty mirror and volume), a warm one (the
mirror holds the commit; the blobs are in the volume: nothing new is stored), and the
reference `git clone --depth 1` (process start included on both sides). The push side
of ``task pr`` (one commit on top of that base) is timed too. Goal: a cold clone within
3x of `git clone --depth 1` (ours also hashes every file into the CAS and packs the base
commit for the agent's workspace).
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proto"))

from _machine import machine

from parhelia import gitremote
from parhelia.volume import LocalVolume
from parheliad.core import mirrors, workspace
from tests.helpers.git_server import GitServer

GOAL = 3.0


def files(count: int) -> dict[str, str | bytes]:
    """A source tree: ``count`` files of 1-8 KiB in nested directories."""
    out: dict[str, str | bytes] = {}
    for i in range(count):
        body = (f"# module {i}\n" + "".join(f"def f{j}(x):\n    return x * {j}\n"
                                            for j in range(20 + i % 150)))
        out[f"src/pkg{i % 40}/sub{i % 7}/mod{i}.py"] = body
    return out


def median(fn: Callable[[], None], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-clone-"))
    server = GitServer(tmp / "server", "ghp_" + secrets.token_hex(18)).start()
    try:
        server.create("o", "r", files(args.files))
        remote = gitremote.parse(server.url("o", "r"))
        token = server.token
        work = tmp / "work"

        def ours(fresh: bool) -> Callable[[], None]:
            def run() -> None:
                if fresh:
                    shutil.rmtree(work, ignore_errors=True)
                work.mkdir(exist_ok=True)
                volume = LocalVolume(work / "volume")
                resolved = gitremote.resolve(remote, token, None)
                with mirrors.Mirrors(work / "mirrors").locked(remote) as mirror:
                    mirrors.fetch_base(mirror, remote, token, resolved)
                    staging = Path(tempfile.mkdtemp(dir=work))
                    mirrors.checkout(mirror, resolved.commit, resolved.branch, staging / "r")
                    workspace.upload(volume, staging / "r", staging / "cache",
                                     user_excludes=False)
                    shutil.rmtree(staging)
            return run

        def plain() -> None:
            target = tmp / "plain"
            shutil.rmtree(target, ignore_errors=True)
            subprocess.run(["git", "-c", f"http.extraHeader={gitremote.auth_header(token)}",
                            "clone", "-q", "--depth", "1", remote.raw, str(target)],
                           check=True)

        cold = median(ours(fresh=True), args.runs)
        ours(fresh=True)()
        warm = median(ours(fresh=False), args.runs)
        reference = median(plain, args.runs)

        head = server.ref("o", "r", "refs/heads/main")
        assert head is not None
        mirror = mirrors.Mirrors(work / "mirrors").path(remote)
        env = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b",
               "GIT_COMMITTER_EMAIL": "b@x", "PATH": "/usr/bin:/bin"}
        tree = subprocess.run(["git", f"--git-dir={mirror}", "rev-parse", f"{head}^{{tree}}"],
                              capture_output=True, text=True, check=True, env=env).stdout.strip()
        counter = iter(range(1_000_000))

        def push() -> None:
            commit = subprocess.run(["git", f"--git-dir={mirror}", "commit-tree", tree, "-p",
                                     head, "-m", f"bench {next(counter)}"], capture_output=True,
                                    text=True, check=True, env=env).stdout.strip()
            done = gitremote.push_branch(str(mirror), remote, token, commit,
                                         f"bench-{secrets.token_hex(4)}", None)
            assert done.ok, done.reason

        pushed = median(push, args.runs)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"machine: {machine()}")
    print(f"repository: {args.files} files; median of {args.runs} runs")
    print(f"git clone --depth 1:                 {reference * 1000:8.0f} ms")
    print(f"checkpoint zero, cold mirror/volume: {cold * 1000:8.0f} ms  "
          f"({cold / reference:.1f}x git; goal <= {GOAL:.0f}x: "
          f"{'met' if cold / reference <= GOAL else 'NOT met'})")
    print(f"checkpoint zero, warm mirror/volume: {warm * 1000:8.0f} ms  "
          f"({warm / reference:.1f}x git)")
    print(f"task pr's push of one commit:        {pushed * 1000:8.0f} ms")


if __name__ == "__main__":
    main()
