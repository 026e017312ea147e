"""Shared fixtures: a short temporary PARHELIA_HOME, a REAL parheliad subprocess on it,
a CLI runner with the daemon's environment, and an async gRPC channel.

Daemons are function-scoped (tests kill and restart them). ``start_daemon`` is there for
tests that need a custom environment (NOTIFY_SOCKET...) or a second daemon.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from parhelia import paths

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 20.0
CLI_TIMEOUT_S = 60.0
_STRIPPED_ENV = ("PARHELIA_HOME", "PARHELIA_SOCKET", "PARHELIA_NO_AUTOSTART", "XDG_RUNTIME_DIR",
                 "NOTIFY_SOCKET", "INVOCATION_ID", "JOURNAL_STREAM", "NO_COLOR")


def daemon_env(home: Path, **extra: str) -> dict[str, str]:
    """Environment for parheliad and the CLI on ``home`` (autostart off, no colour,
    nothing inherited that would change the daemon's behaviour)."""
    env = {k: v for k, v in os.environ.items() if k not in _STRIPPED_ENV}
    env.update(PARHELIA_HOME=str(home), PARHELIA_NO_AUTOSTART="1", NO_COLOR="1", **extra)
    return env


def wait_serving(socket: Path, proc: subprocess.Popen[bytes] | None = None,
                 timeout: float = START_TIMEOUT_S) -> bool:
    """Poll the gRPC health check until the daemon on ``socket`` is SERVING."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        if socket.exists():
            with grpc.insecure_channel(f"unix://{socket}") as channel:
                try:
                    reply = health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return True
                except grpc.RpcError:
                    pass
        time.sleep(0.05)
    return False


@dataclass
class RunningDaemon:
    home: Path
    env: dict[str, str]
    args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] = field(init=False)
    runs: int = field(default=0, init=False)

    @property
    def paths(self) -> paths.Paths:
        return paths.resolve(env=self.env)

    @property
    def socket(self) -> Path:
        return self.paths.socket

    @property
    def log_file(self) -> Path:
        return self.paths.log_file

    @property
    def output_file(self) -> Path:
        return self.home / f"daemon-{self.runs}.out"

    def output(self) -> str:
        return self.output_file.read_text(errors="replace")

    def start(self, wait: bool = True) -> RunningDaemon:
        self.runs += 1
        with self.output_file.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "parheliad", *self.args],
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        if wait and not wait_serving(self.socket, self.proc):
            self.kill()
            pytest.fail(f"parheliad did not come up on {self.socket}:\n{self.output()[-3000:]}")
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int:
        """Signal the daemon and wait; its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"parheliad ignored signal {sig}:\n{self.output()[-3000:]}")
        return self.proc.returncode

    def kill(self) -> int:
        """SIGKILL: no cleanup at all (the socket file and pid file stay behind)."""
        return self.stop(signal.SIGKILL)

    def restart(self) -> RunningDaemon:
        self.stop()
        return self.start()


def start_daemon(home: Path, *args: str, **env_extra: str) -> RunningDaemon:
    return RunningDaemon(home, daemon_env(home, **env_extra), tuple(args)).start()


def reap(home: Path) -> None:
    """SIGKILL every process of ``home``: daemons (PARHELIA_HOME) and the workers and
    agents they started, which outlive a daemon on purpose (their command lines or
    environments name the home)."""
    import psutil

    marker = str(home)
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.pid == os.getpid():
            continue
        try:
            ours = marker in " ".join(proc.info.get("cmdline") or []) or \
                proc.environ().get("PARHELIA_HOME") == marker
            if ours:
                proc.kill()
        except psutil.Error:
            continue


@pytest.fixture
def parhelia_home() -> Iterator[Path]:
    """A fresh, short PARHELIA_HOME under /tmp (socket paths must stay under 104 bytes);
    afterwards every process still running for it is killed and the directory removed."""
    home = Path(tempfile.mkdtemp(prefix="ph-", dir="/tmp"))
    yield home
    reap(home)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def daemon(parhelia_home: Path) -> Iterator[RunningDaemon]:
    """A real ``parheliad`` serving on ``parhelia_home``; stopped (or killed) afterwards."""
    running = start_daemon(parhelia_home)
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            running.stop()


def cli_argv() -> list[str]:
    script = Path(sys.executable).parent / "parhelia"
    return [str(script)] if script.exists() else [sys.executable, "-m", "parhelia_cli.main"]


@pytest.fixture
def cli(daemon: RunningDaemon) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real CLI against ``daemon``: ``cli("task", "list", "--json")``."""
    def run(*args: str, timeout: float = CLI_TIMEOUT_S,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli_argv(), *args], env=daemon.env, capture_output=True,
                              text=True, timeout=timeout, input=input)
    return run


@pytest.fixture
async def client(daemon: RunningDaemon) -> AsyncIterator[grpc.aio.Channel]:
    """An async gRPC channel to ``daemon`` (closed afterwards)."""
    channel = grpc.aio.insecure_channel(f"unix://{daemon.socket}")
    try:
        yield channel
    finally:
        await channel.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say loudly when tests needing a real tool (Claude Code CLI, MCP Inspector) were
    skipped: on a developer's machine that is allowed, in CI (.ci/run) it fails instead."""
    from tests.real_tools import REQUIRE_ENV, SKIP_MARK

    skipped = [r for r in terminalreporter.stats.get("skipped", [])
               if SKIP_MARK in str(getattr(r, "longrepr", ""))]
    if skipped:
        terminalreporter.write_sep(
            "!", f"{len(skipped)} tests needing a real tool did NOT run (see the skip reasons); "
                 f"CI sets {REQUIRE_ENV}=1 and fails on them", red=True, bold=True)
