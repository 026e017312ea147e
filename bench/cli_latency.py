"""CLI latency: median wall time of `parhelia --help`, `parhelia status --json` and
`parhelia task list --json` over 1,000 stored tasks, in one run against a real daemon
on a temporary PARHELIA_HOME, beside two floors measured the same way: `python -c pass`
(starting the interpreter) and `python -c "import grpc"` (what any gRPC client pays).

    uv run python bench/cli_latency.py [--runs 30] [--tasks 1000]

Milliseconds depend on the machine, so it prints the machine and each figure as a
ratio to both floors; quote those (the README does). Goals: --help <= 60 ms, task list
--json <= 120 ms. Children run with bytecode caching on (PYTHONDONTWRITEBYTECODE
removed), after warm-up runs, as an installed CLI would.
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

GOALS_MS = {"parhelia --help": 60.0, "parhelia task list --json (1000)": 120.0}
FLOORS = ("python -c pass", "python -c 'import grpc'")


def machine() -> str:
    """CPU model, cores, load and Python: what the milliseconds depend on."""
    import platform

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{model}, {os.cpu_count()} cores, load {load}, Python "
            f"{platform.python_version()}, {platform.system()} {platform.release()}")


def console_script(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        sys.exit(f"{path} not found: run `uv sync` first")
    return str(path)


def measure(argv: list[str], env: dict[str, str], runs: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=False)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, check=False)
        times.append((time.perf_counter() - start) * 1000)
        if proc.returncode not in (0, 1):
            sys.exit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode()}")
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
           if k not in ("PYTHONDONTWRITEBYTECODE", "PARHELIA_SOCKET", "XDG_RUNTIME_DIR")}
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
        start = time.perf_counter()
        store_tasks(socket, args.tasks)
        print(f"stored {args.tasks} tasks in {time.perf_counter() - start:.1f} s")
        print(f"machine: {machine()}")
        cases = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "python -c 'import grpc'": [sys.executable, "-c", "import grpc"],
            "parhelia --help": [parhelia, "--help"],
            "parhelia status --json": [parhelia, "status", "--json"],
            "parhelia task list --json (default limit 100)": [parhelia, "task", "list", "--json"],
            f"parhelia task list --json ({args.tasks})": [parhelia, "task", "list", "--json",
                                                          "--limit", str(args.tasks)],
        }
        print(f"{'command':<48} {'median':>8} {'p90':>8} {'x pass':>7} {'x grpc':>7}"
              f"   (ms, {args.runs} runs)")
        failed = False
        measured = {name: sorted(measure(argv, env, args.runs))
                    for name, argv in cases.items()}
        medians = {name: statistics.median(times) for name, times in measured.items()}
        for name, times in measured.items():
            median = medians[name]
            p90 = times[int(len(times) * 0.9) - 1]
            goal = GOALS_MS.get(name)
            verdict = ""
            if goal is not None:
                verdict = f"  goal <= {goal:.0f}: {'ok' if median <= goal else 'MISSED'}"
                failed |= median > goal
            ratios = " ".join(f"{median / medians[f]:7.2f}" for f in FLOORS)
            print(f"{name:<48} {median:8.1f} {p90:8.1f} {ratios}{verdict}")
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
