"""Fixtures of the CLI tests: an isolated PARHELIA_HOME, an in-process fake daemon, a
real ``parheliad`` subprocess (skipped until the daemon exists) and CLI runners."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from parhelia import paths

REPO = Path(__file__).resolve().parents[2]
PARHELIAD_MAIN = REPO / "parheliad" / "__main__.py"


def cli_argv() -> list[str]:
    """The ``parhelia`` console script of this environment (or ``-m parhelia_cli``)."""
    script = Path(sys.executable).parent / "parhelia"
    return [str(script)] if script.exists() else [sys.executable, "-m", "parhelia_cli"]


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short temporary PARHELIA_HOME (socket paths must stay under 104 bytes);
    autostart off unless a test turns it on."""
    path = Path(tempfile.mkdtemp(prefix="phc-", dir="/tmp"))
    monkeypatch.setenv("PARHELIA_HOME", str(path))
    monkeypatch.setenv("PARHELIA_NO_AUTOSTART", "1")
    for name in ("PARHELIA_SOCKET", "NO_COLOR", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _fresh_warnings() -> None:
    from parhelia_cli import render

    render._warned.clear()


@pytest.fixture
def fake(home: Path) -> Iterator[object]:
    from .fake_daemon import FakeDaemon

    daemon = FakeDaemon(paths.resolve().socket).start()
    yield daemon
    daemon.stop()


@pytest.fixture
def run(home: Path):
    """Invoke the CLI in-process: ``run("task", "list", "--json")``."""
    from parhelia_cli.main import cli

    def _run(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)

    return _run


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    home: Path
    socket: Path
    env: dict[str, str]

    def cli(self, *args: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli_argv(), *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, **kwargs)


def daemon_env(home_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PARHELIA_SOCKET", "XDG_RUNTIME_DIR", "NO_COLOR")}
    env.update(PARHELIA_HOME=str(home_dir), PARHELIA_NO_AUTOSTART="1")
    return env


def wait_for_socket(socket: Path, proc: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    from parhelia_cli import client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.probe(socket) is not None:
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.1)
    return False


def require_daemon() -> None:
    if not PARHELIAD_MAIN.exists():
        pytest.skip("parheliad/__main__.py does not exist yet: the daemon has not landed")


@pytest.fixture
def daemon(home: Path) -> Iterator[Daemon]:
    """A real ``parheliad`` on a temporary PARHELIA_HOME (the CLI has autostart off)."""
    require_daemon()
    env = daemon_env(home)
    socket = paths.resolve(env=env).socket
    log = (home / "daemon.out").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "parheliad"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if not wait_for_socket(socket, proc, 20):
            out = (home / "daemon.out").read_text(errors="replace")[-2000:]
            pytest.fail(f"parheliad did not answer on {socket}:\n{out}")
        yield Daemon(proc, home, socket, env)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
