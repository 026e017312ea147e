"""Dispatch figures: task create -> first worker heartbeat, and throughput of many
fake-agent tasks at a concurrency cap, with the daemon's CPU time per task.

    uv run python bench/dispatch.py [--latency-runs 10] [--tasks 100] [--concurrency 10]

A real parheliad on a temporary PARHELIA_HOME, the real CLI for `task create`, real
worker processes, and the scripted fake Claude agent (tests/fake_agent/claude).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
FAKE_AGENT = ROOT / "tests" / "fake_agent" / "claude"
BIN = Path(sys.executable).parent


def start(home: Path, concurrency: int) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    (home / "config.toml").write_text(
        f"[agent]\ncommand = ['{FAKE_AGENT}']\n[heartbeat]\ninterval_seconds = 0.5\n"
        f"[orchestrator]\nmax_concurrent_workers = {concurrency}\n"
        "dispatch_interval_seconds = 0.5\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PARHELIA_", "XDG_"))}
    env.update(PARHELIA_HOME=str(home), PARHELIA_NO_AUTOSTART="1", NO_COLOR="1",
               ANTHROPIC_API_KEY="bench-key")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    daemon = subprocess.Popen([sys.executable, "-m", "parheliad"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    sock = home / "run" / "parheliad.sock"
    deadline = time.monotonic() + 20
    while not sock.exists():
        if time.monotonic() > deadline or daemon.poll() is not None:
            raise SystemExit("parheliad did not start")
        time.sleep(0.05)
    cli(env, "status")
    return daemon, env


def cli(env: dict[str, str], *args: str) -> str:
    return subprocess.run([str(BIN / "parhelia"), *args], env=env, check=True,
                          capture_output=True, text=True).stdout


def db(home: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{home / 'state' / 'parheliad.db'}?mode=ro", uri=True)


def wait_all(home: Path, ids: list[str], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    marks = ",".join("?" for _ in ids)
    while time.monotonic() < deadline:
        with db(home) as conn:
            done = conn.execute(
                f"SELECT COUNT(*) FROM tasks WHERE id IN ({marks}) AND status IN "
                "('completed','failed','cancelled')", ids).fetchone()[0]
        if done == len(ids):
            return
        time.sleep(0.1)
    raise SystemExit("tasks did not finish in time")


def latency(home: Path, env: dict[str, str], runs: int) -> list[float]:
    out = []
    prompt = "FAKE_SCRIPT: " + json.dumps([{"sleep": 1.5}, {"write": "x", "content": "y"},
                                           {"turn": True}])
    for _ in range(runs):
        t0 = time.time()
        task_id = json.loads(cli(env, "task", "create", prompt, "--no-workspace",
                                 "--json"))["task_id"]
        deadline = time.monotonic() + 60
        first = None
        while first is None and time.monotonic() < deadline:
            with db(home) as conn:
                row = conn.execute(
                    "SELECT MIN(h.at) FROM heartbeats h JOIN containers c "
                    "ON h.container_id = c.id WHERE c.task_id = ?", (task_id,)).fetchone()
            first = row[0] if row else None
            time.sleep(0.02)
        if first is None:
            raise SystemExit("no heartbeat")
        out.append(first / 1e6 - t0)
        wait_all(home, [task_id])
    return out


def throughput(home: Path, env: dict[str, str], daemon: psutil.Process, n: int
               ) -> tuple[float, float]:
    """Create ``n`` tasks as fast as one gRPC channel allows, then time until all finish."""
    import grpc

    from parhelia.v1 import common_pb2, tasks_pb2, tasks_pb2_grpc

    prompt = "FAKE_SCRIPT: " + json.dumps([{"write": "out.txt", "content": "done"},
                                           {"turn": True}])
    cpu0 = sum(daemon.cpu_times()[:2])
    t0 = time.monotonic()
    with grpc.insecure_channel(f"unix://{home / 'run' / 'parheliad.sock'}") as channel:
        stub = tasks_pb2_grpc.TaskServiceStub(channel)
        ids = [stub.CreateTask(tasks_pb2.CreateTaskRequest(
            prompt=prompt, options=common_pb2.TaskOptions())).task.id for _ in range(n)]
    wait_all(home, ids)
    wall = time.monotonic() - t0
    cpu = sum(daemon.cpu_times()[:2]) - cpu0
    with db(home) as conn:
        marks = ",".join("?" for _ in ids)
        done = conn.execute(
            f"SELECT COUNT(*) FROM tasks WHERE id IN ({marks}) AND status = 'completed'",
            ids).fetchone()[0]
    if done != n:
        raise SystemExit(f"only {done} of {n} tasks completed")
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--latency-runs", type=int, default=10)
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=10)
    ns = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="ph-bench-", dir="/tmp"))
    daemon, env = start(home, ns.concurrency)
    try:
        lat = latency(home, env, ns.latency_runs)
        wall, cpu = throughput(home, env, psutil.Process(daemon.pid), ns.tasks)
    finally:
        daemon.terminate()
        daemon.wait(30)
        shutil.rmtree(home, ignore_errors=True)
    ms = sorted(x * 1000 for x in lat)
    print(f"task create -> first heartbeat ({len(lat)} runs, CLI process included): "
          f"median {statistics.median(ms):.0f} ms, min {ms[0]:.0f} ms, max {ms[-1]:.0f} ms")
    print(f"{ns.tasks} fake-agent tasks at concurrency {ns.concurrency}: {wall:.1f} s wall "
          f"from the first create to the last completion, {ns.tasks / wall:.1f} tasks/s")
    print(f"daemon CPU: {cpu:.2f} s total, {cpu / ns.tasks * 1000:.1f} ms per task")


if __name__ == "__main__":
    main()
