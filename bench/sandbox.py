"""What containing a local agent costs (docs/adr/0030-local-sandbox.md).

    uv run python bench/sandbox.py            # 30 runs of each
    uv run python bench/sandbox.py --runs 10

Prints medians of:
- ``probe``: the one ``bwrap ... true`` a worker runs at start to learn whether it can
  contain its agent;
- ``start true`` uncontained vs contained: starting a trivial program directly, and
  through the container and the signal shim (``python -m parhelia.container exec``) --
  what every agent start pays extra;
- ``open file``: opening a file 5 directories deep with ``open`` vs
  ``safeio.open_beneath`` (what a checkpoint pays per file it reads);
- ``API call``: one streamed Messages API request to a local fake, direct vs through the
  worker's credential proxy.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proto"))

from modal_worker import keyproxy
from parhelia import container as sandbox
from parhelia.safeio import open_beneath
from parhelia.sandbox import SandboxSpec
from tests.fake_anthropic import FakeAnthropic

BODY = json.dumps({"model": "claude-test", "max_tokens": 64, "stream": True,
                   "messages": [{"role": "user", "content": "hi"}],
                   "tools": [{"name": "W", "description": "w",
                              "input_schema": {"type": "object"}}]}).encode()


def median_ms(runs: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def call(url: str, key: str) -> None:
    port = int(url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/v1/messages", body=BODY,
                 headers={"content-type": "application/json", "x-api-key": key})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    assert resp.status == 200, resp.status


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        root = Path(tmp)
        ws, cfg = root / "ws", root / "cfg"
        deep = ws / "a" / "b" / "c" / "d" / "e"
        deep.mkdir(parents=True)
        cfg.mkdir()
        (deep / "f.txt").write_text("x")
        planned = sandbox.plan(SandboxSpec(hide=[str(root)]), workspace=ws, writable=[cfg],
                               command=["/bin/true"], environ=dict(os.environ))
        if isinstance(planned, str):
            print(f"no container here: {planned}")
            return 1
        print(f"machine: {os.uname().sysname} {os.uname().release}, {os.cpu_count()} cpus, "
              f"python {sys.version.split()[0]}, {args.runs} runs each (medians)")
        probe = median_ms(args.runs, lambda: sandbox.probe(planned))
        print(f"probe (bwrap ... true)          {probe:8.1f} ms")
        direct = median_ms(args.runs, lambda: subprocess.run(["/bin/true"], check=True))
        contained = median_ms(args.runs, lambda: subprocess.run(
            planned.argv(["/bin/true"]), check=True, preexec_fn=sandbox.ignore_termination))
        print(f"start true, uncontained         {direct:8.1f} ms")
        print(f"start true, contained + shim    {contained:8.1f} ms  (+{contained - direct:.1f} ms "
              "per agent start)")
        target = deep / "f.txt"

        def plain() -> None:
            os.close(os.open(target, os.O_RDONLY | os.O_NOFOLLOW))

        def beneath() -> None:
            os.close(open_beneath(ws, target, os.O_RDONLY))

        n = 2000
        plain_us = median_ms(args.runs, lambda: [plain() for _ in range(n)]) / n * 1000
        beneath_us = median_ms(args.runs, lambda: [beneath() for _ in range(n)]) / n * 1000
        print(f"open a file 5 dirs deep, open   {plain_us:8.1f} us")
        print(f"open a file 5 dirs deep, beneath{beneath_us:8.1f} us  (per file a checkpoint "
              "reads)")
        with FakeAnthropic() as fake:
            key = "sk-bench"
            proxy = keyproxy.start({"ANTHROPIC_API_KEY": key, "ANTHROPIC_BASE_URL": fake.url})
            assert proxy is not None
            try:
                straight = median_ms(args.runs, lambda: call(fake.url, key))
                proxied = median_ms(args.runs, lambda: call(proxy.url, proxy.placeholder))
            finally:
                proxy.close()
        print(f"streamed API call, direct       {straight:8.1f} ms")
        print(f"streamed API call, via proxy    {proxied:8.1f} ms  (+{proxied - straight:.1f} ms "
              "per request)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
