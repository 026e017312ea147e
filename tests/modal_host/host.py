"""What a test sees of the local Modal service, whichever fake fronts it: its sandboxes
(with their end), their worker processes, secrets, switches, and the end states a test
can impose on a running sandbox (an OOM kill, an eviction).

``FakeModal`` (the SDK-level fake) and ``StandIn`` (the gRPC stand-in) both derive from
``ModalHost``: a test written against these helpers runs on either.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.modal_host import sandboxes as host_sandboxes
from tests.modal_host import state

FAKE_TOKEN = {"MODAL_TOKEN_ID": "ak-fake-token-id", "MODAL_TOKEN_SECRET": "as-fake-token-secret"}
OOM_MESSAGE = "Container was killed: out of memory (memory limit exceeded)"
EVICTION_MESSAGE = "Container was evicted: the worker it ran on was reclaimed"


@dataclass
class ModalHost:
    root: Path

    @property
    def service(self) -> Any:
        return state

    def switch(self, name: str, on: bool = True, value: str = "") -> None:
        state.set_switch(name, on, value, base=self.root)

    def create_secret(self, name: str, values: dict[str, str]) -> None:
        state.write_json(self.root / "secrets" / f"{name}.json", values)

    def delete_volume(self, name: str) -> None:
        """Delete a volume behind every client's back (``modal volume delete``)."""
        with contextlib.suppress(FileNotFoundError):
            (self.root / "volumes" / f"{name}.json").unlink()
        import shutil

        shutil.rmtree(state.volume_dir(name), ignore_errors=True)

    def calls(self) -> list[str]:
        return state.calls()

    def reset_calls(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / "calls.log").unlink()

    def sandboxes(self) -> list[dict[str, Any]]:
        out = []
        for sb_id in state.all_sandboxes():
            meta = state.sandbox_meta(sb_id) or {}
            out.append({**meta, "id": sb_id, "state": state.sandbox_state(sb_id),
                        "returncode": state.returncode(sb_id), "result": state.result(sb_id)})
        return out

    def sandbox(self, container_id: str) -> dict[str, Any]:
        found = [s for s in self.sandboxes() if s.get("name") == container_id]
        assert found, f"no sandbox named {container_id}"
        return found[-1]

    def sandbox_root(self, sb_id: str) -> Path:
        return self.root / "sandboxes" / sb_id / "root"

    def running(self) -> list[dict[str, Any]]:
        """Sandboxes that have not ended (started or still waiting for capacity)."""
        return [s for s in self.sandboxes() if s["returncode"] is None]

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

    def oom_kill(self, sb_id: str, message: str = OOM_MESSAGE) -> None:
        """The kernel's OOM killer ends the sandbox (KERNEL_OOM_KILL, exit 137)."""
        state.request_end(sb_id, state.KERNEL_OOM_KILL, message, 137)

    def evict(self, sb_id: str, message: str = EVICTION_MESSAGE) -> None:
        """Modal reclaims the machine under the sandbox (an eviction; the exit code the
        server sends is 0, which ``poll()`` passes on as it is)."""
        state.request_end(sb_id, state.MEMORY_MANAGER_EVICTION, message, 0)

    def wait_ended(self, sb_id: str, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = state.returncode(sb_id)
            if code is not None:
                return int(code)
            time.sleep(0.05)
        raise AssertionError(f"sandbox {sb_id} did not end")

    def stop_all(self) -> None:
        for sb in self.sandboxes():
            if sb["returncode"] is None:
                host_sandboxes.terminate(sb["id"])
        for sb in self.sandboxes():
            with contextlib.suppress(AssertionError):
                self.wait_ended(sb["id"], timeout=10)
