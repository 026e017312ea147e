"""The daemon refuses to start, saying why and how to recover, rather than losing state
or running on files it cannot trust; the CLI's autostart repeats the reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.daemon import RunningDaemon, cli_argv, daemon_env, start_daemon


def _parheliad(home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "parheliad"], env=daemon_env(home),
                          capture_output=True, text=True, timeout=60)


def _create_task(d: RunningDaemon) -> None:
    out = subprocess.run([*cli_argv(), "task", "create", "x", "--no-workspace", "--no-dispatch"],
                         env=d.env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("damage, why", [
    (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    (lambda p: p.write_bytes(b"this is not a database at all" * 200),
     "is not an SQLite database"),
])
def test_empty_or_garbage_database_is_never_recreated(parhelia_home: Path, damage,
                                                     why: str) -> None:
    d = start_daemon(parhelia_home)
    _create_task(d)
    db = d.paths.database
    assert d.stop() == 0
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    damage(db)
    before = db.read_bytes()
    out = _parheliad(parhelia_home)
    assert out.returncode == 1
    assert "E500" in out.stderr and why in out.stderr and f"mv {db}" in out.stderr
    assert db.read_bytes() == before  # untouched: nothing recreated over it


def test_autostart_says_what_is_wrong_with_the_config(parhelia_home: Path) -> None:
    (parhelia_home / "config.toml").write_bytes(b"\x00\xff\xfe binary \x89PNG")
    env = {k: v for k, v in daemon_env(parhelia_home).items() if k != "PARHELIA_NO_AUTOSTART"}
    out = subprocess.run([*cli_argv(), "task", "list"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0
    assert "E504" in out.stderr
    assert "E101" in out.stderr and "config.toml" in out.stderr and "UTF-8" in out.stderr
