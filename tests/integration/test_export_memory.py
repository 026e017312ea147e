"""`events export` of 120 000 events keeps the daemon's and the exporter's memory flat:
both are sampled while the export streams, and their growth is bounded far below what
holding the events would take (~1 KiB each as Python objects: over 100 MiB)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import psutil

from tests.helpers.daemon import RunningDaemon, cli_argv, start_daemon

EVENTS = 120_000
MIB = 1024 * 1024
MAX_DAEMON_GROWTH = 40 * MIB
MAX_EXPORTER_RSS = 90 * MIB


def _seed(db: Path) -> None:
    conn = sqlite3.connect(db)
    data = json.dumps({"tool": "Bash", "summary": "x" * 200, "n": 1})
    with conn:
        conn.executemany(
            "INSERT INTO events (type, level, at, task_id, session_id, container_id, message, "
            "data_json, container_seq) VALUES ('agent_tool_use', 'info', ?, 't-aaaaaaaaaaaa', "
            "'s-aaaaaaaaaaaa', 'c-aaaaaaaaaaaa', ?, ?, 0)",
            ((1_790_000_000_000_000 + i, f"Bash: step {i}", data) for i in range(EVENTS)))
    conn.close()


class Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = self.proc.memory_info().rss
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.02)


def test_export_of_many_events_keeps_memory_flat(parhelia_home: Path, tmp_path: Path) -> None:
    first = start_daemon(parhelia_home)  # creates and migrates the database
    db = first.paths.state_dir / "parheliad.db"
    first.stop()
    _seed(db)
    daemon: RunningDaemon = start_daemon(parhelia_home)
    try:
        out = tmp_path / "all.jsonl"
        # Warm up the daemon's code paths on a small export first, then measure.
        subprocess.run([*cli_argv(), "events", "export", str(tmp_path / "warm.jsonl"),
                        "--since", "2999-01-01T00:00:00Z"], env=daemon.env, check=True,
                       capture_output=True, timeout=60)
        daemon_sampler = Sampler(daemon.proc.pid)
        baseline = daemon_sampler.peak
        daemon_sampler.start()
        exporter = subprocess.Popen([*cli_argv(), "events", "export", str(out), "--json"],
                                    env=daemon.env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        exporter_sampler = Sampler(exporter.pid)
        exporter_sampler.start()
        stdout, stderr = exporter.communicate(timeout=240)
        daemon_sampler.stop.set()
        exporter_sampler.stop.set()
        daemon_sampler.join()
        exporter_sampler.join()
        assert exporter.returncode == 0, stderr
        assert json.loads(stdout)["events"] >= EVENTS
        with out.open() as fh:
            lines = sum(1 for _ in fh)
        assert lines >= EVENTS
        growth = daemon_sampler.peak - baseline
        print(f"daemon RSS {baseline / MIB:.1f} MiB, peak growth {growth / MIB:.1f} MiB; "
              f"exporter peak RSS {exporter_sampler.peak / MIB:.1f} MiB")
        assert growth < MAX_DAEMON_GROWTH, f"daemon grew {growth / MIB:.1f} MiB"
        assert exporter_sampler.peak < MAX_EXPORTER_RSS, \
            f"exporter peaked at {exporter_sampler.peak / MIB:.1f} MiB"
    finally:
        daemon.stop()
