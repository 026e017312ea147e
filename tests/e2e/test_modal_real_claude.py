"""The REAL pinned Claude Code CLI through the Modal backend: ModalBackend -> the real modal
SDK -> the local stand-in of Modal's service and its sandbox (a local process with /vol,
/workspace and /root of its own) -> the real worker -> claude -> the local fake of the
Messages API. The credential and the API's URL
reach the sandbox only as Modal secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from parhelia.checkpoint import blob_key, load_manifest
from parhelia.spec import load_result
from parhelia.volume import LocalVolume, result_key
from parheliad.core.volsync import pull_manifest
from tests.fake_anthropic import FakeAnthropic, reply, tool_use
from tests.helpers.modal_backend import follow, make_backend, seqs, start, worker_spec

pytestmark = pytest.mark.claude


async def test_real_claude_runs_in_a_modal_sandbox_and_its_work_comes_back(
        modal_standin, claude_bin: Path, tmp_path: Path) -> None:  # noqa: F811
    with FakeAnthropic() as api:
        api.add_replies(
            reply("I'll create the file.",
                  tool_use("Bash", {"command": "echo 'made on modal' > hello.txt",
                                    "description": "create hello.txt"})),
            reply("Created hello.txt."))
        backend = make_backend(modal_standin)
        backend._environ["ANTHROPIC_API_KEY"] = "test-key"
        local = LocalVolume(tmp_path / "local")
        spec = worker_spec(backend, "Create hello.txt saying 'made on modal'", "c-claude-1",
                           permission_mode="bypassPermissions", timeout_seconds=240)
        spec.agent.command = [str(claude_bin)]
        sb_id = await start(backend, local, spec, timeout=300, secret_env={
            "ANTHROPIC_BASE_URL": api.url, "CLAUDE_CODE_MAX_RETRIES": "0",
            "NO_PROXY": "127.0.0.1,localhost"})
        records, _ = await follow(backend, "c-claude-1", timeout=240)
        assert seqs(records) == list(range(1, len(records) + 1))
        exited = records[-1]["data"]
        assert exited["status"] == "completed", (exited, api.summary())
        assert api.main_requests and api.main_requests[0].api_key_is("test-key")

        modal_standin.wait_ended(sb_id)  # the result is on the volume once synced or ended
        await backend.pull(local, [result_key("c-claude-1")], session_id="s-1")
        result = load_result(local.path_for(result_key("c-claude-1")))
        assert "Created hello.txt." in str((result.agent or {}).get("text"))
        cp = result.last_checkpoint_id
        # A turn's manifest may be a delta: its base comes too, as the daemon fetches it.
        await pull_manifest(backend, local, "s-1", cp)
        manifest = load_manifest(local, "s-1", cp)
        entry = manifest.tree["hello.txt"]
        await backend.pull(local, [blob_key(entry.blob)], session_id="s-1")
        assert local.get(blob_key(entry.blob)) == b"made on modal\n"
        # The conversation came back with the checkpoint (a resume on another sandbox
        # restores it).
        assert manifest.conversation
        await backend.aclose()  # the daemon's shutdown: stop following channels
        for path in modal_standin.root.rglob("*"):
            if path.is_file() and "secrets" not in path.parts and path.stat().st_size < 1 << 22:
                assert b"test-key" not in path.read_bytes(), path
