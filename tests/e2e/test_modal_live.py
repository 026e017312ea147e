"""Live tests against Modal itself: `uv run pytest -m modal tests/e2e/test_modal_live.py`.

Deselected by default (`-m 'not modal'` in pyproject) and skipped without
MODAL_TOKEN_ID/MODAL_TOKEN_SECRET. They cost a few cents: a CPU sandbox, a T4 for
`nvidia-smi`, a kill-and-resume. The agent is the scripted fake (tests/fake_agent, uploaded
to the test's own volume), so no Anthropic key is spent. Everything they create is removed
at the end: sandboxes (terminated, then checked gone by owner tag) and the volume (deleted).
The app `parhelia-live-tests` stays (Modal keeps apps; `modal app stop` ends it).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from parhelia.checkpoint import blob_key, load_manifest
from parhelia.spec import load_result
from parhelia.volume import LocalVolume, result_key
from parheliad.backends.modal import ModalBackend, ModalSettings, load_sdk
from parheliad.core import volsync
from tests.helpers.modal_backend import follow, script, seqs, start, worker_spec
from tests.helpers.paths import REPO

pytestmark = [
    pytest.mark.modal,
    pytest.mark.skipif(not (os.environ.get("MODAL_TOKEN_ID")
                            and os.environ.get("MODAL_TOKEN_SECRET")),
                       reason="live Modal tests need MODAL_TOKEN_ID and MODAL_TOKEN_SECRET"),
]

AGENT_KEY = "bin/fake_claude.py"
AGENT = ["python3", f"/vol/{AGENT_KEY}"]


class Live:
    def __init__(self, backend: ModalBackend, local: LocalVolume) -> None:
        self.backend = backend
        self.local = local

    def spec(self, prompt: str, container_id: str, **agent: Any) -> Any:
        agent.setdefault("command", list(AGENT))
        return worker_spec(self.backend, prompt, container_id, **agent)

    async def final_tree(self, container_id: str, session_id: str = "s-1") -> dict[str, bytes]:
        """The files of the container's last checkpoint, brought back to the local side."""
        await self.backend.pull(self.local, [result_key(container_id)])
        result = load_result(self.local.path_for(result_key(container_id)))
        assert result.last_checkpoint_id, result
        await volsync.pull_manifest(self.backend, self.local, session_id,
                                    result.last_checkpoint_id)
        manifest = load_manifest(self.local, session_id, result.last_checkpoint_id)
        blobs = {path: blob_key(e.blob) for path, e in manifest.tree.items() if e.blob}
        await self.backend.pull(self.local, sorted(set(blobs.values())))
        return {path: self.local.get(key) for path, key in blobs.items()}

    async def ended(self, sb_id: str, container_id: str, timeout: float = 600) -> int | None:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            status = await self.backend.status(sb_id, container_id)
            if not status.running:
                return status.exit_code
            await asyncio.sleep(2)
        raise AssertionError(f"{container_id} did not end")


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    run = uuid.uuid4().hex[:10]
    settings = ModalSettings(app_name="parhelia-live-tests", volume_name=f"parhelia-live-{run}",
                             secret_name=f"parhelia-live-absent-{run}",
                             call_timeout_seconds=120)
    env = {**os.environ, "ANTHROPIC_API_KEY": "live-test-not-a-real-key"}
    backend = ModalBackend(settings, env, owner_tag=f"parhelia-live-{run}")
    local = LocalVolume(tmp_path / "local")
    local.put(AGENT_KEY, (REPO / "tests" / "fake_agent" / "fake_claude.py").read_bytes())
    await backend.push(local, [AGENT_KEY])
    try:
        yield Live(backend, local)
    finally:
        sdk = load_sdk()
        for listed in await backend.list(backend.owner_tag):
            await backend.terminate(listed.backend_id)
        for _ in range(30):
            if not await backend.list(backend.owner_tag):
                break
            await asyncio.sleep(2)
        assert await backend.list(backend.owner_tag) == []
        await sdk.Volume.objects.delete.aio(settings.volume_name, allow_missing=True)
        with pytest.raises(sdk.exception.NotFoundError):
            await sdk.Volume.from_name(settings.volume_name).hydrate.aio()


async def test_live_cpu_task_end_to_end(live: Live) -> None:
    spec = live.spec(script({"write": "hello.txt", "content": "from a modal sandbox"},
                            {"turn": True}), "c-live-cpu")
    sb_id = await start(live.backend, live.local, spec, timeout=900)
    records, _ = await follow(live.backend, "c-live-cpu", timeout=900)
    assert seqs(records) == list(range(1, len(records) + 1))
    assert records[-1]["data"]["status"] == "completed", records[-1]
    assert await live.ended(sb_id, "c-live-cpu") == 0
    tree = await live.final_tree("c-live-cpu")
    assert tree["hello.txt"] == b"from a modal sandbox"


async def test_live_gpu_task_runs_nvidia_smi(live: Live) -> None:
    command = ["bash", "-c", 'nvidia-smi -L > gpu.txt 2>&1; exec "$@"', "agent", *AGENT]
    spec = live.spec(script({"turn": True}), "c-live-gpu", command=command)
    sb_id = await start(live.backend, live.local, spec, gpu="T4", timeout=900)
    records, _ = await follow(live.backend, "c-live-gpu", timeout=1800)
    assert records[-1]["data"]["status"] == "completed", records[-1]
    await live.ended(sb_id, "c-live-gpu")
    tree = await live.final_tree("c-live-gpu")
    assert b"GPU 0: Tesla T4" in tree["gpu.txt"], tree["gpu.txt"]


async def test_live_kill_and_resume_keeps_the_conversation(live: Live) -> None:
    prompt = script({"write": "a.txt", "content": "A"}, {"turn": True}, {"sleep": 40},
                    {"write": "b.txt", "content": "B"}, {"turn": True})
    first = live.spec(prompt, "c-live-kill-1")
    sb_id = await start(live.backend, live.local, first, timeout=900)
    records, cursor = await follow(live.backend, "c-live-kill-1",
                                   until="agent_turn_completed", timeout=900)

    def turn_checkpoints() -> list[str]:
        return [r["data"]["checkpoint_id"] for r in records
                if r["type"] == "checkpoint_created" and r["data"]["trigger"] == "turn"]

    while not turn_checkpoints():  # the turn's checkpoint holds the transcript
        more, cursor = await follow(live.backend, "c-live-kill-1", cursor,
                                    until="checkpoint_created")
        records += more
    checkpoint_id = turn_checkpoints()[0]
    await live.backend.terminate(sb_id)  # the sandbox dies mid-task (returncode 137)
    assert await live.ended(sb_id, "c-live-kill-1") == 137

    second = live.spec(prompt, "c-live-kill-2", session_uuid=first.agent.session_uuid)
    second.restore_checkpoint_id = checkpoint_id
    second.agent.resume = True
    second.incarnation = 2
    sb2 = await start(live.backend, live.local, second, timeout=900)
    resumed, _ = await follow(live.backend, "c-live-kill-2", timeout=900)
    assert resumed[-1]["data"]["status"] == "completed", resumed[-1]
    await live.ended(sb2, "c-live-kill-2")
    tree = await live.final_tree("c-live-kill-2")
    assert (tree["a.txt"], tree["b.txt"]) == (b"A", b"B")
    result = load_result(live.local.path_for(result_key("c-live-kill-2")))
    assert "Resumed with" in str((result.agent or {}).get("text"))
