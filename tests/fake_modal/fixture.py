"""The ``fake_modal`` fixture: a fake Modal service in a temporary directory.

- ``fake.sdk``: the fake SDK loaded in this process (as the module ``fake_modal_sdk``, so
  it never shadows the real ``modal`` that the signature tests import), for unit tests
  that pass it to ``ModalBackend(sdk=...)``.
- ``fake.env()``: environment for a daemon subprocess that must import the fake as
  ``modal`` (``PYTHONPATH`` first) and find a Modal token.
- ``fake.switch(name, on)``: fault switches (unreachable, hang, no_capacity, name_clash,
  auth, latency=<seconds>, latency.<Class.method>=<seconds>, terminate_fails), read by
  the fake at every call, also across processes.
- ``fake.sandboxes()``, ``fake.calls()``, ``fake.kill_worker(container_id)``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SHADOW = Path(__file__).resolve().parent / "shadow"
FAKE_TOKEN = {"MODAL_TOKEN_ID": "ak-fake-token-id", "MODAL_TOKEN_SECRET": "as-fake-token-secret"}


def load_fake_sdk() -> ModuleType:
    """The fake ``modal`` package under the name ``fake_modal_sdk`` (in this process)."""
    name = "fake_modal_sdk"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, SHADOW / "modal" / "__init__.py",
        submodule_search_locations=[str(SHADOW / "modal")])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class FakeModal:
    root: Path

    @property
    def sdk(self) -> Any:
        return load_fake_sdk()

    @property
    def service(self) -> Any:
        load_fake_sdk()
        return sys.modules["fake_modal_sdk._service"]

    def env(self) -> dict[str, str]:
        path = os.pathsep.join(p for p in (str(SHADOW), os.environ.get("PYTHONPATH", "")) if p)
        return {"PYTHONPATH": path, "FAKE_MODAL_ROOT": str(self.root), **FAKE_TOKEN}

    def switch(self, name: str, on: bool = True, value: str = "") -> None:
        path = self.root / "switches" / name
        if on:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(value)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def create_secret(self, name: str, values: dict[str, str]) -> None:
        self.service.write_json(self.root / "secrets" / f"{name}.json", values)

    def calls(self) -> list[str]:
        return self.service.calls()

    def reset_calls(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / "calls.log").unlink()

    def sandboxes(self) -> list[dict[str, Any]]:
        out = []
        for sb_id in self.service.all_sandboxes():
            meta = self.service.sandbox_meta(sb_id) or {}
            out.append({**meta, "id": sb_id, "state": self.service.sandbox_state(sb_id),
                        "returncode": self.service.returncode(sb_id)})
        return out

    def sandbox(self, container_id: str) -> dict[str, Any]:
        found = [s for s in self.sandboxes() if s.get("name") == container_id]
        assert found, f"no sandbox named {container_id}"
        return found[-1]

    def sandbox_root(self, sb_id: str) -> Path:
        return self.root / "sandboxes" / sb_id / "root"

    def worker_pid(self, container_id: str, timeout: float = 20) -> int:
        """The pid of the sandbox's command (the worker), once it has started."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            child = self.sandbox(container_id)["state"].get("child")
            if child:
                return int(child)
            time.sleep(0.05)
        raise AssertionError(f"the sandbox of {container_id} has not started its command")

    def kill_worker(self, container_id: str) -> None:
        """SIGKILL the worker process of a sandbox (as if it crashed)."""
        os.kill(self.worker_pid(container_id), signal.SIGKILL)

    def wait_ended(self, sb_id: str, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.service.returncode(sb_id)
            if code is not None:
                return int(code)
            time.sleep(0.05)
        raise AssertionError(f"sandbox {sb_id} did not end")

    def stop_all(self) -> None:
        for sb in self.sandboxes():
            pid = sb["state"].get("pid")
            if sb["state"].get("inert") and sb["returncode"] is None:
                self.service.write_json(self.root / "sandboxes" / sb["id"] / "state.json",
                                        {**sb["state"], "returncode": 137})
            if pid and sb["returncode"] is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGTERM)
        for sb in self.sandboxes():
            with contextlib.suppress(AssertionError):
                self.wait_ended(sb["id"], timeout=10)


@pytest.fixture
def fake_modal(tmp_path_factory: pytest.TempPathFactory,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeModal]:
    root = tmp_path_factory.mktemp("fake-modal")
    monkeypatch.setenv("FAKE_MODAL_ROOT", str(root))
    fake = FakeModal(root)
    try:
        yield fake
    finally:
        fake.switch("hang", False)
        fake.switch("unreachable", False)
        fake.switch("auth", False)
        fake.switch("terminate_fails", False)
        fake.stop_all()
