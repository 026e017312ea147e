"""Ingest: 1,000 simulated workers heartbeating through the local channel, then queries
over 1,000,000 stored events and a live watch with 50 subscribers, against a real
parheliad on a temporary PARHELIA_HOME.

    uv run python bench/ingest.py [--workers 1000] [--duration 60] [--events 1000000]
                                  [--subscribers 50] [--procs 4]

1. Ingest. ``--workers`` container rows (with their tasks) are registered in the
   database as running under this process's pid (so the listener drains them and the
   health sweep and reconciler see live, talking containers). ``--procs`` processes
   append a heartbeat per worker per second to ``spool/<container>.jsonl`` exactly as
   ``modal_worker.channel.LocalSpoolChannel`` does (it is the class used), for
   ``--duration`` seconds. The lag of each heartbeat is the time from its emission
   (the record's ``at``) to the moment it is seen stored (the heartbeats table is read
   every 20 ms, so lags are upper bounds with 20 ms resolution). The daemon's CPU
   (process CPU time / wall time) and peak RSS (VmHWM) are reported.
2. List. ``--events`` events are stored, then ``ListEvents`` (limit 50, over gRPC, the
   server's own time plus one local round trip) is timed for several filters.
3. Watch. ``--subscribers`` ``WatchEvents`` streams follow the log while workers emit
   ``agent_tool_use`` records through their spools; the lag from emission to delivery at
   every subscriber is reported.

Goals: heartbeat p99 lag < 500 ms at < 0.5 core; a filtered list < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from modal_worker.channel import LocalSpoolChannel  # noqa: E402
from tests.conftest import start_daemon  # noqa: E402

GOAL_P99_MS = 500.0
GOAL_CORES = 0.5
GOAL_LIST_MS = 50.0


def now_us() -> int:
    return time.time_ns() // 1000


def parse_at(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1_000_000)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# -- setup ------------------------------------------------------------------------------

def register(db: Path, count: int, backend_id: str, first: int = 0) -> list[str]:
    """Running tasks and containers straight into the (stopped) daemon's database."""
    conn = sqlite3.connect(db)
    now = now_us()
    ids = [f"c-{i:012x}" for i in range(first, first + count)]
    with conn:
        for i, cid in zip(range(first, first + count), ids, strict=True):
            tid = f"t-{i:012x}"
            conn.execute(
                "INSERT INTO tasks (id, seq, prompt, cpu, memory_mb, timeout_seconds, max_turns, "
                "permission_mode, backend, status, created_at, updated_at, started_at, "
                "container_id) VALUES (?, ?, 'bench', 1, 1024, 86400, 50, 'acceptEdits', "
                "'local', 'running', ?, ?, ?, ?)", (tid, i + 1, now, now, now, cid))
            conn.execute(
                "INSERT INTO containers (id, backend, backend_id, task_id, state, health, "
                "created_at, updated_at, started_at) VALUES (?, 'local', ?, ?, 'running', "
                "'unknown', ?, ?, ?)", (cid, backend_id, tid, now, now, now))
    conn.close()
    return ids


def store_events(db: Path, count: int, containers: list[str]) -> None:
    conn = sqlite3.connect(db)
    rng = random.Random(1)
    types = [("agent_tool_use", "info")] * 12 + [("agent_turn_completed", "info")] * 4 + [
        ("checkpoint_created", "info"), ("health_changed", "warning"),
        ("agent_api_retry", "warning"), ("container_failed", "error")]
    start = now_us() - 7 * 86_400_000_000
    step = 7 * 86_400_000_000 // count
    data = json.dumps({"tool": "Bash", "summary": "pytest -q tests/test_io.py"})

    def rows() -> Any:
        for i in range(count):
            kind, level = rng.choice(types)
            c = rng.choice(containers)
            yield (kind, level, start + i * step, "t-" + c[2:], c, f"{kind} {i}", data)

    with conn:
        conn.executemany("INSERT INTO events (type, level, at, task_id, container_id, message, "
                         "data_json) VALUES (?, ?, ?, ?, ?, ?, ?)", rows())
    conn.close()


# -- simulated workers --------------------------------------------------------------------

def emitter(volume: str, ids: list[str], duration: float, start_at: float, kind: str,
            per_second: float) -> None:
    """Emit one record per container every 1/per_second s, spread over the period."""
    channels = [LocalSpoolChannel(Path(volume) / "spool" / f"{cid}.jsonl") for cid in ids]
    period = 1.0 / per_second
    n = len(channels)
    tick = 0
    while True:
        base = start_at + tick * period
        if base - start_at >= duration:
            break
        for i, ch in enumerate(channels):
            due = base + period * i / n
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            if kind == "heartbeat":
                ch.emit("heartbeat", {"cpu_percent": 1.0, "memory_bytes": 50_000_000,
                                      "disk_bytes": 1_000_000, "agent_alive": True,
                                      "turns": 3, "input_tokens": 1200, "output_tokens": 300,
                                      "cost_usd": 0.0})
            else:
                ch.emit("agent_tool_use", {"tool": "Bash", "summary": f"step {tick}"})
        tick += 1
    for ch in channels:
        ch.close()


def run_emitters(volume: Path, ids: list[str], procs: int, duration: float, kind: str,
                 per_second: float) -> list[mp.Process]:
    start_at = time.time() + 1.0
    chunks = [ids[i::procs] for i in range(procs)]
    ctx = mp.get_context("spawn")  # never fork a process that runs gRPC threads
    ps = [ctx.Process(target=emitter, args=(str(volume), chunk, duration, start_at, kind,
                                            per_second)) for chunk in chunks if chunk]
    for p in ps:
        p.start()
    return ps


class DaemonMeter:
    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.t0 = time.monotonic()
        c = self.proc.cpu_times()
        self.cpu0 = c.user + c.system

    def cores(self) -> float:
        c = self.proc.cpu_times()
        return (c.user + c.system - self.cpu0) / (time.monotonic() - self.t0)

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return self.proc.memory_info().rss / 1024 / 1024


# -- phases ---------------------------------------------------------------------------------

def phase_ingest(daemon: Any, ids: list[str], args: argparse.Namespace) -> dict[str, Any]:
    db = daemon.paths.state_dir / "parheliad.db"
    volume = daemon.paths.volume_dir
    reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    last = reader.execute("SELECT COALESCE(MAX(id), 0) FROM heartbeats").fetchone()[0]
    lags: list[float] = []
    meter = DaemonMeter(daemon.proc.pid)
    ps = run_emitters(volume, ids, args.procs, args.duration, "heartbeat", 1.0)
    expected = len(ids) * int(args.duration)
    deadline = time.time() + args.duration + 15
    while time.time() < deadline and len(lags) < expected:
        rows = reader.execute("SELECT id, at FROM heartbeats WHERE id > ? ORDER BY id",
                              (last,)).fetchall()
        seen = now_us()
        for rid, at in rows:
            lags.append((seen - at) / 1000)
            last = rid
        time.sleep(0.02)
    cores = meter.cores()
    for p in ps:
        p.join()
    reader.close()
    return {"heartbeats": len(lags), "expected": expected,
            "p50_ms": pct(lags, 50), "p99_ms": pct(lags, 99), "max_ms": max(lags or [0]),
            "cores": cores, "peak_rss_mib": meter.peak_rss_mib()}


def phase_list(socket: Path, ids: list[str], runs: int = 15) -> dict[str, float]:
    import grpc

    from parhelia.v1 import common_pb2, events_pb2, events_pb2_grpc

    one_hour = time.time() - 3600
    day = time.time() - 2 * 86400
    c = ids[len(ids) // 2]
    filters: dict[str, dict[str, Any]] = {
        "no filter": {},
        "--type agent_tool_use": {"types": ["agent_tool_use"]},
        "--type container_failed (rare)": {"types": ["container_failed"]},
        "--level warning": {"min_level": "warning"},
        "--level error": {"min_level": "error"},
        "--container C": {"container_id": c},
        "--task T --type agent_turn_completed": {"task_id": "t-" + c[2:],
                                                  "types": ["agent_turn_completed"]},
        "--since 1h": {"since": one_hour},
        "--since 2d --until 1d --level warning": {"since": day,
                                                   "until": day + 86400,
                                                   "min_level": "warning"},
    }
    out: dict[str, float] = {}
    with grpc.insecure_channel(f"unix://{socket}") as channel:
        stub = events_pb2_grpc.EventServiceStub(channel)
        for name, spec in filters.items():
            flt = common_pb2.EventFilter(types=spec.get("types", []),
                                         min_level=spec.get("min_level", ""),
                                         task_id=spec.get("task_id", ""),
                                         container_id=spec.get("container_id", ""))
            if "since" in spec:
                flt.since.FromMicroseconds(int(spec["since"] * 1e6))
            if "until" in spec:
                flt.until.FromMicroseconds(int(spec["until"] * 1e6))
            times = []
            for _ in range(runs):
                t = time.perf_counter()
                stub.ListEvents(events_pb2.ListEventsRequest(filter=flt, limit=50))
                times.append((time.perf_counter() - t) * 1000)
            out[name] = statistics.median(times)
    return out


def phase_watch(daemon: Any, ids: list[str], args: argparse.Namespace) -> dict[str, Any]:
    import grpc

    from parhelia.v1 import common_pb2, events_pb2, events_pb2_grpc

    lags: list[float] = []
    received = [0] * args.subscribers
    ready = threading.Event()
    done = threading.Event()

    async def watchers() -> None:
        channel = grpc.aio.insecure_channel(f"unix://{daemon.socket}")
        stub = events_pb2_grpc.EventServiceStub(channel)
        flt = common_pb2.EventFilter(types=["agent_tool_use"])

        async def one(i: int) -> None:
            call = stub.WatchEvents(events_pb2.WatchEventsRequest(filter=flt))
            try:
                async for ev in call:
                    lags.append((now_us() - ev.at.ToMicroseconds()) / 1000)
                    received[i] += 1
            except grpc.aio.AioRpcError:
                return

        tasks = [asyncio.create_task(one(i)) for i in range(args.subscribers)]
        await asyncio.sleep(1.0)
        ready.set()
        while not done.is_set():
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await channel.close()

    thread = threading.Thread(target=lambda: asyncio.run(watchers()), daemon=True)
    thread.start()
    ready.wait(30)
    emitting = ids[: args.watch_workers]
    meter = DaemonMeter(daemon.proc.pid)
    ps = run_emitters(daemon.paths.volume_dir, emitting, args.procs, args.watch_duration,
                      "agent_tool_use", 1.0)
    for p in ps:
        p.join()
    cores = meter.cores()
    done.set()
    thread.join(30)
    emitted = len(emitting) * int(args.watch_duration)
    return {"subscribers": args.subscribers, "events_emitted": emitted,
            "deliveries": len(lags), "expected_deliveries": emitted * args.subscribers,
            "p50_ms": pct(lags, 50), "p99_ms": pct(lags, 99), "cores": cores,
            "min_per_subscriber": min(received) if received else 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of heartbeats")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--subscribers", type=int, default=50)
    ap.add_argument("--watch-workers", type=int, default=200,
                    help="workers emitting one agent_tool_use per second in the watch phase")
    ap.add_argument("--watch-duration", type=float, default=10.0)
    ap.add_argument("--procs", type=int, default=4, help="emitter processes")
    ap.add_argument("--keep", action="store_true", help="keep the temporary home")
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="ph-bench-", dir="/tmp"))
    (home / "config.toml").write_text(
        "[heartbeat]\ninterval_seconds = 1.0\n[orchestrator]\nmax_concurrent_workers = 1000\n")
    # Every simulated container "runs" as this one idle process (its own session, so
    # whatever the daemon might signal is only ever it).
    sleeper = subprocess.Popen(["sleep", "100000"], start_new_session=True)
    created = psutil.Process(sleeper.pid).create_time()
    backend_id = f"{sleeper.pid}@{created:.2f}"
    daemon = start_daemon(home)
    try:
        db = daemon.paths.state_dir / "parheliad.db"
        daemon.stop()
        ids = register(db, args.workers, backend_id)
        daemon.start()
        print(f"ingest: {args.workers} workers x 1 heartbeat/s for {args.duration:g}s "
              f"({args.procs} emitter processes, LocalSpoolChannel)", flush=True)
        ing = phase_ingest(daemon, ids, args)
        print(f"  stored {ing['heartbeats']}/{ing['expected']} heartbeats; lag p50 "
              f"{ing['p50_ms']:.0f} ms, p99 {ing['p99_ms']:.0f} ms, max {ing['max_ms']:.0f} ms "
              f"(goal p99 < {GOAL_P99_MS:.0f} ms)")
        print(f"  daemon CPU {ing['cores']:.2f} cores (goal < {GOAL_CORES}), peak RSS "
              f"{ing['peak_rss_mib']:.0f} MiB", flush=True)

        daemon.stop()
        # The workers fall silent from here on: a long heartbeat interval keeps the health
        # sweep from declaring them dead while the watch phase still needs them live.
        (home / "config.toml").write_text(
            "[heartbeat]\ninterval_seconds = 600\n[orchestrator]\nmax_concurrent_workers = 1000\n")
        # Fresh containers for the watch phase: a new channel starts at seq 1, and the
        # listener rightly ignores seqs a container has already used.
        watch_ids = register(db, args.watch_workers, backend_id, first=args.workers)
        t = time.perf_counter()
        store_events(db, args.events, ids)
        print(f"\nlist: stored {args.events} events in {time.perf_counter() - t:.1f}s; "
              "ListEvents limit 50, median of 15 (gRPC round trip included):", flush=True)
        daemon.start()
        for name, ms in phase_list(daemon.socket, ids).items():
            flag = "" if ms < GOAL_LIST_MS else "  (over the goal)"
            print(f"  {name:<42} {ms:7.1f} ms{flag}")
        print(f"  (goal < {GOAL_LIST_MS:.0f} ms)", flush=True)

        print(f"\nwatch: {args.subscribers} subscribers, {args.watch_workers} workers x 1 "
              f"agent_tool_use/s for {args.watch_duration:g}s", flush=True)
        w = phase_watch(daemon, watch_ids, args)
        print(f"  delivered {w['deliveries']}/{w['expected_deliveries']} (fewest to one "
              f"subscriber: {w['min_per_subscriber']} of {w['events_emitted']}); lag p50 "
              f"{w['p50_ms']:.0f} ms, p99 {w['p99_ms']:.0f} ms; daemon CPU {w['cores']:.2f} "
              "cores")
    finally:
        if daemon.proc.poll() is None:
            daemon.stop()
        sleeper.kill()
        sleeper.wait()
        if not args.keep:
            subprocess.run(["rm", "-rf", str(home)], check=False)
        else:
            print(f"home kept: {home}")


if __name__ == "__main__":
    os.environ.pop("PARHELIA_SOCKET", None)
    main()
