"""CLI latency: median wall time of `parhelia --help`, and of `parhelia status --json` and
`parhelia task list --json` (one RPC each) on an empty database, then of `task list`
over ``--tasks`` stored tasks, against a real daemon on a temporary PARHELIA_HOME,
beside two floors measured the same way in the same run: `python -c pass` (starting
the interpreter) and `python -c "import grpc"` (what a grpcio client pays).

    uv run python bench/cli_latency.py [--runs 30] [--tasks 1000]

Milliseconds depend on the machine, so it prints the machine and each figure as a
ratio to both floors; quote the ratios (the README does). Goals (ADR 0040), as ratios
to `python -c pass`: --help <= 2x, one RPC on an empty database <= 4.5x. Children run
with bytecode caching on (PYTHONDONTWRITEBYTECODE removed), after warm-up runs, as an
installed CLI would; the cases take turns, run after run, so a load that comes and goes
hits them alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import machine

GOALS_X = {"parhelia --help": 2.0, "parhelia status --json (empty)": 4.5,
           "parhelia task list --json (empty)": 4.5}
"""Goals as ratios to `python -c pass`."""
FLOORS = ("python -c pass", "python -c 'import grpc'")


def console_script(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        sys.exit(f"{path} not found: run `uv sync` first")
    return str(path)


def measure(cases: dict[str, list[str]], env: dict[str, str], runs: int,
            warmup: int = 3) -> dict[str, list[float]]:
    """Milliseconds of each case, ``runs`` times, the cases taking turns."""
    for argv in cases.values():
        for _ in range(warmup):
            subprocess.run(argv, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, argv in cases.items():
            start = time.perf_counter()
            proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, check=False)
            times[name].append((time.perf_counter() - start) * 1000)
            if proc.returncode not in (0, 1):
                sys.exit(f"{' '.join(argv)} failed ({proc.returncode}): "
                         f"{proc.stderr.decode()}")
    return times


def store_tasks(socket: Path, count: int) -> None:
    """Create ``count`` pending tasks directly over gRPC (no dispatch, no workspace)."""
    import grpc

    from parhelia.v1 import tasks_pb2, tasks_pb2_grpc

    with grpc.insecure_channel(f"unix://{socket}") as channel:
        stub = tasks_pb2_grpc.TaskServiceStub(channel)
        for i in range(count):
            stub.CreateTask(tasks_pb2.CreateTaskRequest(
                prompt=f"Benchmark task {i}: refactor module_{i}.py and run its tests",
                no_dispatch=True), timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--tasks", type=int, default=1000)
    args = parser.parse_args()

    parhelia = console_script("parhelia")
    home = Path(tempfile.mkdtemp(prefix="phb-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONDONTWRITEBYTECODE", "PARHELIA_SOCKET", "XDG_RUNTIME_DIR",
                        "COLUMNS")}
    env.update(PARHELIA_HOME=str(home), PARHELIA_NO_AUTOSTART="1", NO_COLOR="1")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from parhelia import paths
    from parhelia_cli import client

    socket = paths.resolve(env=env).socket
    daemon = subprocess.Popen([sys.executable, "-m", "parheliad"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        if client.wait_for_daemon(socket, daemon, timeout=20) is None:
            sys.exit(f"parheliad did not start on {socket} (exit {daemon.poll()})")
        floors = {"python -c pass": [sys.executable, "-c", "pass"],
                  "python -c 'import grpc'": [sys.executable, "-c", "import grpc"]}
        measured = measure({
            **floors,
            "parhelia --help": [parhelia, "--help"],
            "parhelia status --json (empty)": [parhelia, "status", "--json"],
            "parhelia task list --json (empty)": [parhelia, "task", "list", "--json"],
        }, env, args.runs)
        start = time.perf_counter()
        store_tasks(socket, args.tasks)
        stored = time.perf_counter() - start
        measured.update(measure({
            **{f"{name} (again)": argv for name, argv in floors.items()},
            f"parhelia task list --json ({args.tasks} stored, newest 100)":
                [parhelia, "task", "list", "--json"],
            f"parhelia task list --json --limit {args.tasks}":
                [parhelia, "task", "list", "--json", "--limit", str(args.tasks)],
        }, env, args.runs))
        print(f"machine: {machine()}")
        print(f"stored {args.tasks} tasks in {stored:.1f} s between the two halves")
        print(f"{'command':<56} {'median':>8} {'p90':>8} {'x pass':>7} {'x grpc':>7}"
              f"   (ms, {args.runs} runs)")
        failed = False
        medians = {name: statistics.median(times) for name, times in measured.items()}
        for name, times in measured.items():
            times.sort()
            median = medians[name]
            p90 = times[int(len(times) * 0.9) - 1]
            floor_names = [f"{f} (again)" if name.endswith(("stored, newest 100)", "--limit "
                                                            f"{args.tasks}", "(again)"))
                           else f for f in FLOORS]
            ratios = [median / medians[f] for f in floor_names]
            goal = GOALS_X.get(name)
            verdict = ""
            if goal is not None:
                ok = ratios[0] <= goal
                verdict = f"  goal <= {goal:g}x: {'ok' if ok else 'MISSED'}"
                failed |= not ok
            print(f"{name:<56} {median:8.1f} {p90:8.1f} {ratios[0]:7.2f} {ratios[1]:7.2f}"
                  f"{verdict}")
        sys.exit(1 if failed else 0)
    finally:
        daemon.terminate()
        try:
            daemon.wait(15)
        except subprocess.TimeoutExpired:
            daemon.kill()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
