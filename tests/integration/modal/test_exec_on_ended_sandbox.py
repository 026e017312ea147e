"""An exec on a sandbox that already finished, through the backend and the REAL SDK on the
stand-in: modal 1.6.4 refuses it (``ConflictError``/``NotFoundError``, not
``SandboxTerminatedError``), and the backend reads that as the sandbox's end — a control
message is dropped quietly, an attach says the sandbox finished — never as Modal failing."""

from __future__ import annotations

from pathlib import Path

import pytest

from parhelia.volume import LocalVolume
from parheliad.backends.modal.errors import SandboxEnded
from tests.helpers.modal_backend import make_backend, script, start, worker_spec
from tests.modal_standin.fixture import StandIn


async def test_an_exec_on_a_finished_sandbox_is_its_end_not_an_error(
        modal_standin: StandIn, tmp_path: Path) -> None:
    modal_standin.create_secret("anthropic-api-key", {"ANTHROPIC_API_KEY": "sk-ant-test-key"})
    backend = make_backend(modal_standin)
    spec = worker_spec(backend, script({"sleep": 60}), "c-ended-1")
    sb_id = await start(backend, LocalVolume(tmp_path / "local"), spec)
    modal_standin.worker_pid("c-ended-1")
    await backend.terminate(sb_id, grace_seconds=0)
    modal_standin.wait_ended(sb_id)
    await backend.aclose()

    later = make_backend(modal_standin)  # a handle that has not seen the end yet
    modal_standin.reset_calls()
    await later.control(sb_id, "c-ended-1", {"type": "checkpoint", "reason": "manual"})
    assert "SandboxGetTaskIdV2" in modal_standin.calls()  # the SDK's exec asked, was refused
    with pytest.raises(SandboxEnded, match="already finished"):
        await later.open_terminal(sb_id, "c-ended-1", ["true"], 24, 80, "xterm")
    [status] = await later.statuses([(sb_id, "c-ended-1")])
    assert not status.running and status.exit_code == 137, status
    await later.terminate(sb_id)  # stopping what already ended is not an error either
    await later.aclose()
