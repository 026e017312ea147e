"""A REAL ``parheliad`` subprocess on a temporary ``PARHELIA_HOME``, and the real CLI's
argv: the machinery behind the ``daemon``, ``cli`` and harness fixtures
(``tests/conftest.py``), for tests that need a daemon of their own (a custom
environment, a second daemon, a restart).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
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


REFUSED: str | None = None
"""Why this test may not start a real daemon (set for every unit test by
``tests/unit/conftest.py``): :meth:`RunningDaemon.start` fails the test with it, however
it was reached (a fixture, ``start_daemon``, a ``RunningDaemon`` of its own)."""


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
        if REFUSED is not None:
            pytest.fail(REFUSED, pytrace=False)
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

    def cli(self, *args: str, timeout: float = CLI_TIMEOUT_S, input: str | None = None,
            env: Mapping[str, str | None] | None = None, cwd: Path | None = None,
            ) -> subprocess.CompletedProcess[str]:
        """Run the real CLI against this daemon: ``daemon.cli("task", "list", "--json")``;
        ``env`` adds to the daemon's environment (``None`` removes a variable)."""
        merged = {**self.env, **(env or {})}
        return subprocess.run([*cli_argv(), *args],
                              env={k: v for k, v in merged.items() if v is not None},
                              capture_output=True, text=True, timeout=timeout, input=input,
                              cwd=cwd, check=False)


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


def cli_argv() -> list[str]:
    """The ``parhelia`` console script of this environment (or ``-m parhelia_cli``)."""
    script = Path(sys.executable).parent / "parhelia"
    return [str(script)] if script.exists() else [sys.executable, "-m", "parhelia_cli"]
