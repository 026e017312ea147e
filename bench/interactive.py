"""Interactive sessions: how long the TUI takes to be attachable, a detach to be
checkpointed, a take-over and a release, with the REAL pinned Claude Code CLI in real tmux
against the local fake Messages API (tests/fake_anthropic) and a real parheliad.

    uv run python bench/interactive.py [--runs 3]

Per run:
- ready: `task create --interactive` -> the session is detached with its socket recorded
  (the worker started, seeded the config, the TUI showed its prompt and got the first
  message);
- detach: a client attached in a tmux pane of our own is detached -> the `detach`
  checkpoint is indexed (the worker reads the TUI's state once a second);
- take-over: `session attach --take-over --print` on a headless task waiting on the API
  (checkpoint, SIGTERM of `claude -p`, the TUI started with --resume and ready);
- release: `session release` (checkpoint, the TUI closed, `claude -p --resume` started).
The claude binary: $PARHELIA_CLAUDE_BIN, else .ci/cache/claude.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fake_anthropic import FakeAnthropic, reply  # noqa: E402

BIN = Path(sys.executable).parent
CLAUDE = Path(os.environ.get("PARHELIA_CLAUDE_BIN")
              or ROOT / ".ci" / "cache" / "claude" / "node_modules" / ".bin" / "claude")


def cli(env: dict[str, str], *args: str) -> Any:
    out = subprocess.run([str(BIN / "parhelia"), *args, "--json"], env=env, check=True,
                         capture_output=True, text=True, timeout=300).stdout
    return json.loads(out)


def until(check: Callable[[], Any], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.02)
    raise SystemExit("timed out")


def one(home: Path, query: str, *args: Any) -> Any:
    with sqlite3.connect(f"file:{home / 'state' / 'parheliad.db'}?mode=ro", uri=True) as db:
        row = db.execute(query, args).fetchone()
    return row[0] if row else None


def detach_checkpoints(home: Path, session: str) -> int:
    return int(one(home, "SELECT COUNT(*) FROM checkpoints WHERE session_id = ? AND "
                         "trigger = 'detach'", session) or 0)


def run_once(home: Path, env: dict[str, str], fake: FakeAnthropic, tmp: Path
             ) -> dict[str, float]:
    figures: dict[str, float] = {}
    fake.add_replies(reply("Hello from the fake."))
    t0 = time.monotonic()
    task = cli(env, "task", "create", "Say hello.", "--interactive", "--no-workspace")
    task_id = task.get("task", task)["id"]
    socket = until(lambda: one(home, "SELECT s.tmux_socket FROM sessions s JOIN tasks t ON "
                                     "t.session_id = s.id WHERE t.id = ? AND s.status = "
                                     "'detached'", task_id))
    figures["ready"] = time.monotonic() - t0
    session = one(home, "SELECT session_id FROM tasks WHERE id = ?", task_id)

    outer = tmp / f"outer-{task_id}"
    run = ["tmux", "-S", str(outer), "-f", os.devnull]
    subprocess.run([*run, "new-session", "-d", "-x", "100", "-y", "30", "--", "env", "-u",
                    "TMUX", "tmux", "-S", socket, "attach-session", "-t", "parhelia"],
                   check=True)
    until(lambda: one(home, "SELECT attached_clients FROM sessions WHERE id = ?", session))
    before = detach_checkpoints(home, session)
    t0 = time.monotonic()
    subprocess.run(["tmux", "-S", socket, "detach-client", "-s", "parhelia"], check=True)
    until(lambda: detach_checkpoints(home, session) > before)
    figures["detach"] = time.monotonic() - t0
    subprocess.run([*run, "kill-server"], check=False, capture_output=True)
    cli(env, "session", "kill", session, "-y")

    fake.add_replies(reply("Thinking...", delay_s=300))
    task = cli(env, "task", "create", "Think hard.", "--no-workspace")
    task_id = task.get("task", task)["id"]
    session = until(lambda: one(home, "SELECT session_id FROM tasks WHERE id = ? AND "
                                      "status = 'running'", task_id))
    until(lambda: one(home, "SELECT COUNT(*) FROM events WHERE task_id = ? AND type = "
                            "'agent_started'", task_id))
    time.sleep(2)  # the headless agent is waiting on the fake API
    t0 = time.monotonic()
    cli(env, "session", "attach", session, "--take-over", "--print")
    figures["take_over"] = time.monotonic() - t0
    fake.add_replies(reply("Done."))
    t0 = time.monotonic()
    cli(env, "session", "release", session, "Finish.")
    figures["release"] = time.monotonic() - t0
    until(lambda: one(home, "SELECT status FROM tasks WHERE id = ? AND status = 'completed'",
                      task_id), timeout=300)
    return figures


def stop_workers(home: Path) -> None:
    """SIGKILL the workers this run's daemon started (by their recorded pids); their TUIs'
    guards end the agents and tmux servers."""
    with sqlite3.connect(f"file:{home / 'state' / 'parheliad.db'}?mode=ro", uri=True) as db:
        ids = [r[0] for r in db.execute("SELECT backend_id FROM containers WHERE "
                                        "backend_id != ''")]
    for backend_id in ids:
        pid = int(backend_id.split("@")[0])
        with contextlib.suppress(OSError, psutil.Error):
            if psutil.Process(pid).environ().get("PARHELIA_HOME") == str(home):
                os.killpg(pid, signal.SIGKILL)
    time.sleep(2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not CLAUDE.exists() or shutil.which("tmux") is None:
        raise SystemExit(f"needs tmux and the pinned Claude Code CLI ({CLAUDE})")
    home = Path(tempfile.mkdtemp(prefix="ph-bench-", dir="/tmp"))
    tmp = Path(tempfile.mkdtemp(prefix="ph-bt-", dir="/tmp"))
    with FakeAnthropic() as fake:
        (home / "config.toml").write_text(
            f"[agent]\ncommand = ['{CLAUDE}']\n[heartbeat]\ninterval_seconds = 0.5\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PARHELIA_", "XDG_"))}
        env.update(PARHELIA_HOME=str(home), PARHELIA_NO_AUTOSTART="1", NO_COLOR="1",
                   ANTHROPIC_API_KEY="bench-key-0123456789abcdef", ANTHROPIC_BASE_URL=fake.url,
                   CLAUDE_CODE_MAX_RETRIES="0", NO_PROXY="127.0.0.1,localhost")
        daemon = subprocess.Popen([sys.executable, "-m", "parheliad"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        try:
            until(lambda: (home / "run" / "parheliad.sock").exists(), timeout=30)
            results = [run_once(home, env, fake, tmp) for _ in range(args.runs)]
        finally:
            daemon.terminate()
            daemon.wait(30)
            stop_workers(home)
            shutil.rmtree(home, ignore_errors=True)
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"interactive sessions, {args.runs} runs (real Claude Code CLI, fake API, local "
          "backend); seconds, median [min-max]")
    for key, label in (("ready", "task create --interactive -> attachable TUI"),
                       ("detach", "client detached -> detach checkpoint indexed"),
                       ("take_over", "session attach --take-over (headless -> TUI ready)"),
                       ("release", "session release (TUI -> headless agent started)")):
        values = [r[key] for r in results]
        print(f"  {label:<52} {statistics.median(values):6.2f} "
              f"[{min(values):.2f}-{max(values):.2f}]")


if __name__ == "__main__":
    main()
