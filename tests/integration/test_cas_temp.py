"""Temp files a killed writer leaves in the CAS are swept at daemon start and by
`checkpoint gc` — only when their writer is gone or they are old; a live one stays."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from parhelia.checkpoint.cas import TEMP_MAX_AGE_SECONDS, sweep_temp
from parhelia.volume import LocalVolume
from tests.helpers.harness import Harness


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _plant(cas: Path, pid: int, where: str = "tmp", age: float = 0) -> Path:
    d = cas / where
    d.mkdir(parents=True, exist_ok=True)
    path = d / f".tmp-{pid}-1"
    path.write_bytes(b"x" * 100)
    if age:
        t = time.time() - age
        os.utime(path, (t, t))
    return path


def test_sweep_keeps_live_writers_files(tmp_path: Path) -> None:
    cas = tmp_path / "cas"
    dead = _plant(cas, _dead_pid())
    dead_shard = _plant(cas, _dead_pid(), "blobs/ab")
    live = _plant(cas, os.getpid(), "blobs/cd")
    live_old = _plant(cas, os.getpid(), age=TEMP_MAX_AGE_SECONDS + 60)
    blob = cas / "blobs" / "ab" / ("ab" + "0" * 62)
    blob.write_bytes(b"blob")
    assert sweep_temp(LocalVolume(tmp_path)) == (3, 300)
    assert live.exists() and blob.exists()
    assert not dead.exists() and not dead_shard.exists() and not live_old.exists()


def test_daemon_start_and_gc_sweep_stale_temp_files(harness_factory) -> None:
    harness: Harness = harness_factory()
    cas = harness.home / "data" / "volume" / "cas"
    stale = _plant(cas, _dead_pid())
    harness.daemon.restart()
    assert not stale.exists()
    stale = _plant(cas, _dead_pid(), "blobs/ef")
    harness.run("checkpoint", "gc", "--yes", check=True)
    assert not stale.exists()
