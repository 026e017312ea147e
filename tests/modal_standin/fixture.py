"""The ``modal_standin`` fixture: the stand-in of Modal's service on a free port of
127.0.0.1, for the REAL, unmodified ``modal`` SDK (pinned in uv.lock).

- ``standin.env()``: what a daemon subprocess needs to use it (``MODAL_SERVER_URL``, a
  token, no user config file).
- ``standin.sdk``: the real ``modal`` in this process, its client (a process-wide
  singleton) reset to this stand-in by the fixture.
- faults: ``fail(rpc, "UNAVAILABLE")``, ``hang(rpc)``, ``drop_reply(rpc)``,
  ``latency(seconds, rpc)``, ``refuse()``, ``gpu_capacity(False)``,
  ``init_failure(message)``, ``clear()``; end states: ``oom_kill``, ``evict`` (and the
  service's own timeout and terminate).
- ``standin.unimplemented()``: RPCs the SDK called that the stand-in does not answer; the
  fixture fails the test that made such a call, naming them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.modal_host.host import FAKE_TOKEN, ModalHost
from tests.modal_host.sandboxes import REPO
from tests.modal_standin.faults import EFFECTS, FAULTS_FILE, STATUSES
from tests.modal_standin.rpc import standin_errors, unimplemented_calls

SDK_VERSION = "1.6.4"
"""The modal release the stand-in follows (the one uv.lock pins; a test checks both)."""
START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class StandIn(ModalHost):
    store: Path | None = None
    """Images and mounts (shared by a test session's stand-ins; default ROOT/store)."""
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    _rules: list[dict[str, Any]] = field(default_factory=list)
    _latency: dict[str, float] = field(default_factory=dict)
    _flags: dict[str, bool] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    # -- the process -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, refused: bool = False) -> StandIn:
        """Start the stand-in (``refused``: its port reserved but refusing connections)."""
        if refused:
            self.port = self.port or free_port()
            self.refuse()
        ready = self.root / "ready.json"
        with contextlib.suppress(FileNotFoundError):
            ready.unlink()
        env = {**os.environ, "PYTHONPATH": str(REPO), "FAKE_MODAL_ROOT": str(self.root),
               "STANDIN_TOKEN_ID": FAKE_TOKEN["MODAL_TOKEN_ID"],
               "STANDIN_TOKEN_SECRET": FAKE_TOKEN["MODAL_TOKEN_SECRET"]}
        log = open(self.root / "standin.log", "ab")  # noqa: SIM115 - the child holds it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.modal_standin.server", "--root", str(self.root),
             "--ready", str(ready), "--port", str(self.port),
             "--store", str(self.store or self.root / "store")],
            env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the Modal stand-in did not start:\n"
                                   + (self.root / "standin.log").read_text()[-4000:])
            time.sleep(0.02)
        self.port = int(json.loads(ready.read_text())["port"])
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def env(self) -> dict[str, str]:
        """For a daemon (or any process) that imports the real SDK: the stand-in's URL, a
        token, and no user config file (``~/.modal.toml`` of whoever runs the tests)."""
        return {"MODAL_SERVER_URL": self.url, "MODAL_CONFIG_PATH": str(self.root / "modal.toml"),
                **FAKE_TOKEN}

    def use_in_process(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Point this process's real SDK at the stand-in (the fixture does)."""
        for key, value in self.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("FAKE_MODAL_ROOT", str(self.root))
        reset_sdk_client()

    @property
    def sdk(self) -> Any:
        """The real ``modal`` package (its client talks to this stand-in)."""
        import modal

        return modal

    # -- faults ------------------------------------------------------------------------

    def _write(self) -> None:
        data = {"rules": self._rules, "latency": self._latency, **self._flags}
        tmp = self.root / f".{FAULTS_FILE}.tmp"
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.root / FAULTS_FILE)

    def _rule(self, rpc: str, effect: str, *, status: str = "", message: str = "",
              seconds: float = 0.0, times: int | None = None) -> int:
        assert effect in EFFECTS
        assert not status or status in STATUSES, status
        rule = {"id": next(self._ids), "rpc": rpc, "effect": effect, "status": status,
                "message": message, "seconds": seconds, "times": times}
        self._rules.append(rule)
        self._write()
        return int(rule["id"])

    def fail(self, rpc: str, status: str, *, times: int | None = None,
             message: str = "") -> int:
        """Calls matching ``rpc`` (a name or a glob: ``Sandbox*``, ``*``) fail with the
        gRPC ``status``; returns the rule's id (``remove`` takes it)."""
        return self._rule(rpc, "status", status=status, message=message, times=times)

    def hang(self, rpc: str = "*") -> int:
        """Calls matching ``rpc`` are accepted and never answered while the rule stands."""
        return self._rule(rpc, "hang")

    def drop_reply(self, rpc: str, *, times: int | None = 1) -> int:
        """Calls matching ``rpc`` are carried out, then their reply is lost."""
        return self._rule(rpc, "drop_reply", times=times)

    def init_failure(self, message: str, *, times: int | None = 1) -> int:
        """The next sandbox(es) created fail to start (INIT_FAILURE with ``message``)."""
        return self._rule("SandboxCreate*", "init_failure", message=message, times=times)

    def delay(self, rpc: str, seconds: float, *, times: int | None = 1) -> int:
        """The next call(s) matching ``rpc`` wait ``seconds`` before they run (``latency``
        slows every call); returns the rule's id."""
        return self._rule(rpc, "delay", seconds=seconds, times=times)

    def latency(self, seconds: float, rpc: str = "*") -> None:
        """``seconds`` added to every call, or to the calls named ``rpc``."""
        if seconds:
            self._latency[rpc] = seconds
        else:
            self._latency.pop(rpc, None)
        self._write()

    def refuse(self, on: bool = True) -> None:
        """The service's port refuses connections (and cuts the open ones)."""
        self._flags["refused"] = on
        self._write()

    def gpu_capacity(self, available: bool) -> None:
        """Without capacity, GPU sandboxes wait unscheduled until it comes back."""
        self._flags["gpu_capacity"] = available
        self._write()

    def inert(self, on: bool = True) -> None:
        """Sandboxes created meanwhile only exist: no process (benches)."""
        self._flags["inert"] = on
        self._write()

    def remove(self, rule_id: int) -> None:
        self._rules = [r for r in self._rules if r["id"] != rule_id]
        self._write()

    def clear(self) -> None:
        self._rules, self._latency, self._flags = [], {}, {}
        self._write()

    def unimplemented(self) -> list[str]:
        return unimplemented_calls(self.root)


def reset_sdk_client() -> None:
    """Forget this process's SDK client (modal keeps one per process, bound to the server
    URL it was created with), closing it on the SDK's own loop."""
    from modal._utils.async_utils import synchronizer
    from modal.client import _Client

    client = _Client._client_from_env
    _Client._client_from_env = None
    loop = synchronizer._get_loop(start=False)
    if client is not None and loop is not None and loop.is_running():
        closing = asyncio.run_coroutine_threadsafe(client.close(), loop)
        with contextlib.suppress(Exception):
            closing.result(timeout=10)


@pytest.fixture(scope="session")
def modal_standin_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Modal's images and mounts outlive a stand-in, as the SDK's process-wide cache of
    their ids expects (the default image is hydrated once per process)."""
    return tmp_path_factory.mktemp("modal-standin-store")


@pytest.fixture
def modal_standin(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
                  modal_standin_store: Path) -> Iterator[StandIn]:
    root = tmp_path_factory.mktemp("modal-standin")
    monkeypatch.setenv("FAKE_MODAL_ROOT", str(root))
    standin = StandIn(root, store=modal_standin_store).start()
    standin.use_in_process(monkeypatch)
    try:
        yield standin
    finally:
        standin.clear()
        standin.stop_all()
        standin.stop()
        reset_sdk_client()
    if errors := standin_errors(root):
        pytest.fail(f"the Modal stand-in failed while serving:\n{errors}", pytrace=False)
    missing = sorted(set(standin.unimplemented()))
    if missing:
        pytest.fail("the installed modal SDK called RPCs the Modal stand-in does not "
                    f"implement: {', '.join(missing)} (tests/modal_standin)", pytrace=False)
