"""The ``fake_modal`` fixture: a fake Modal service in a temporary directory.

- ``fake.sdk``: the fake SDK loaded in this process (as the module ``fake_modal_sdk``, so
  it never shadows the real ``modal`` that the signature tests import), for unit tests
  that pass it to ``ModalBackend(sdk=...)``.
- ``fake.env()``: environment for a daemon subprocess that must import the fake as
  ``modal`` (``PYTHONPATH`` first) and find a Modal token.
- ``fake.switch(name, on)``: fault switches (unreachable, hang, no_capacity, name_clash,
  auth, latency=<seconds>, latency.<Class.method>=<seconds>, terminate_fails), read by
  the fake at every call, also across processes.
- ``fake.sandboxes()``, ``fake.calls()``, ``fake.kill_worker(container_id)``: the local
  service's helpers (``tests.modal_host.host.ModalHost``), the same on the gRPC stand-in.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.modal_host.host import FAKE_TOKEN, ModalHost
from tests.modal_host.sandboxes import REPO

SHADOW = Path(__file__).resolve().parent / "shadow"


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
class FakeModal(ModalHost):
    """The SDK-level fake: ``sdk`` in this process, ``env()`` for a daemon subprocess."""

    @property
    def sdk(self) -> Any:
        return load_fake_sdk()

    def env(self) -> dict[str, str]:
        """The shadow first (it is ``modal`` there), then the repository (``tests.modal_host``,
        the sandboxes both fakes share)."""
        path = os.pathsep.join(p for p in (str(SHADOW), str(REPO), os.environ.get("PYTHONPATH", ""))
                               if p)
        return {"PYTHONPATH": path, "FAKE_MODAL_ROOT": str(self.root), **FAKE_TOKEN}


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
