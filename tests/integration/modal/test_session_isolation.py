"""One task per mount, and the key out of the sandbox (issue 22, findings 3 and 6; ADR 0031).

The Modal backend against the fake SDK, which honours ``with_mount_options(sub_path=...)``
as modal 1.6.4 does and records the outbound policy: the real worker and the fake agent
run as local processes whose ``/vol`` is what their sandbox mounts. From inside one
session's sandbox (``/workspace/../vol`` is ``/vol`` in a Modal sandbox and in the fake)
an agent reads nothing of another session -- its workspace, conversation, prompt -- and
the records it forges for another container never reach the daemon; with the named
secret, neither its environment nor any file it can read holds the credential.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from parhelia.sandbox import PLACEHOLDER_PREFIX
from parhelia.volume import LocalVolume
from tests.helpers.modal_backend import follow, make_backend, script, start, worker_spec

THEIRS = "OTHER-SESSION-WORKSPACE-SECRET-3b9f"
PROMPT = "OTHER-SESSION-PROMPT-77c2"
MODAL_KEY = "sk-ant-api03-MODAL-NAMED-SECRET-9e1d"


def _probe(target: str, forged_for: str, own: str) -> str:
    """Read every file the sandbox's volume shows, then forge records into the spool of
    another session's container (a guessed id) and into every spool it can see."""
    forged = json.dumps({"seq": 2, "type": "worker_exited", "at": "2026-12-01T00:00:00Z",
                         "data": {"exit_code": 0, "status": "completed",
                                  "error_message": "FORGED"}})
    return "; ".join([
        "find ../vol -type f | sort",
        "find ../vol -type f -exec cat {} + 2>/dev/null",
        f"mkdir -p ../vol/spool ../vol/sessions/{target}/spool",
        f"echo '{forged}' >> ../vol/spool/{forged_for}.jsonl",
        f"echo '{forged}' >> ../vol/sessions/{target}/spool/{forged_for}.jsonl",
        f"for f in ../vol/spool/*.jsonl; do [ \"$f\" = ../vol/spool/{own}.jsonl ] || "
        f"echo '{forged}' >> \"$f\"; done",
        "sync ../vol || true",
    ])


@pytest.mark.long
async def test_a_sandbox_sees_only_its_own_session_and_cannot_forge_anothers_records(
        fake_modal, tmp_path: Path) -> None:
    backend = make_backend(fake_modal)
    local = LocalVolume(tmp_path / "local")
    # Session B: its workspace, conversation and prompt on the volume; it keeps running.
    theirs = worker_spec(backend, script({"write": "theirs.txt", "content": THEIRS},
                                         {"turn": True}, {"sleep": 30}, text=PROMPT),
                         "c-theirs", session_id="s-theirs")
    await start(backend, local, theirs)
    before, their_cursor = await follow(backend, "c-theirs", until="checkpoint_created")
    their_root = fake_modal.service.volume_dir("parhelia-data") / "sessions" / "s-theirs"
    assert any(THEIRS.encode() in p.read_bytes() for p in their_root.rglob("*") if
               p.is_file()), "session B's files are not on the volume: the test proves nothing"

    # Session A: its agent goes looking.
    mine = worker_spec(backend, script(
        {"run": ["sh", "-c", _probe("s-theirs", "c-theirs", "c-mine")], "out": "probe.txt"},
        {"turn": True}), "c-mine", session_id="s-mine")
    sb_id = await start(backend, local, mine)
    fake_modal.wait_ended(sb_id, timeout=90)
    probe = (fake_modal.sandbox_root(sb_id) / "workspace" / "probe.txt").read_text()
    assert THEIRS not in probe and PROMPT not in probe
    assert "specs/c-mine.json" in probe  # it does see its own session's files
    records, _ = await follow(backend, "c-mine")
    assert records[-1]["data"]["status"] == "completed", fake_modal.sandbox("c-mine")

    # What it wrote landed in its own area, never in session B's; B's channel, as the
    # daemon reads it, holds no forged record.
    their_spool = (their_root / "spool" / "c-theirs.jsonl").read_text()
    assert "FORGED" not in their_spool
    after, _ = await follow(backend, "c-theirs", their_cursor, until="worker_exited",
                            timeout=90)
    assert all("FORGED" not in json.dumps(r) for r in before + after)
    assert after[-1]["data"]["status"] == "completed"
    assert fake_modal.sandbox("c-mine")["volumes"]["/vol"]["sub_path"] == "sessions/s-mine"


async def test_with_the_named_secret_no_file_or_variable_of_the_sandbox_holds_the_key(
        fake_modal, tmp_path: Path) -> None:
    fake_modal.create_secret("anthropic-api-key", {"ANTHROPIC_API_KEY": MODAL_KEY})
    backend = make_backend(fake_modal)
    local = LocalVolume(tmp_path / "local")
    spec = worker_spec(backend, script(
        {"run": ["sh", "-c", "env; cat /proc/$PPID/environ | tr '\\0' '\\n'; "
                             f"grep -rl {MODAL_KEY[:-1]}[{MODAL_KEY[-1]}] .. 2>/dev/null"],
         "out": "probe.txt"}, {"turn": True}), "c-key", session_id="s-key")
    sb_id = await start(backend, local, spec)
    records, _ = await follow(backend, "c-key")
    assert records[-1]["data"]["status"] == "completed"
    fake_modal.wait_ended(sb_id)
    root = fake_modal.sandbox_root(sb_id)
    probe = (root / "workspace" / "probe.txt").read_text()
    assert MODAL_KEY not in probe and f"ANTHROPIC_API_KEY={PLACEHOLDER_PREFIX}" in probe
    for dirpath, _dirs, files in os.walk(root):  # everything the sandbox could read
        for name in files:
            path = Path(dirpath) / name
            if not path.is_symlink():
                assert MODAL_KEY.encode() not in path.read_bytes(), path
    [policy] = fake_modal.sandbox("c-key")["outbound_policy"]
    assert policy["secret"] == "anthropic-api-key" and policy["domain"] == "api.anthropic.com"
    assert policy["headers"] == {"x-api-key": "$ANTHROPIC_API_KEY"}
    assert backend.isolation("c-key") == ("modal sandbox", "outbound policy")


async def test_without_an_outbound_policy_the_sandbox_gets_the_secret_and_says_so(
        fake_modal, tmp_path: Path) -> None:
    """Where the SDK has no outbound policy (or the credential is only in the daemon's
    environment, which a policy cannot use), today's secret, and the container says so."""
    fake_modal.create_secret("anthropic-api-key", {"ANTHROPIC_API_KEY": MODAL_KEY})
    backend = make_backend(fake_modal)
    sdk = backend.sdk

    class WithoutPolicy:
        def __getattr__(self, name: str) -> object:
            if name == "experimental":
                raise AttributeError(name)
            return getattr(sdk, name)

    backend._sdk_obj = WithoutPolicy()
    assert "no modal.experimental.OutboundPolicy" in (await backend.credentials()).detail
    local = LocalVolume(tmp_path / "local")
    spec = worker_spec(backend, script({"run": ["sh", "-c", "env"], "out": "env.txt"},
                                       {"turn": True}), "c-old", session_id="s-old")
    sb_id = await start(backend, local, spec)
    await follow(backend, "c-old")
    fake_modal.wait_ended(sb_id)
    env = (fake_modal.sandbox_root(sb_id) / "workspace" / "env.txt").read_text()
    assert f"ANTHROPIC_API_KEY={MODAL_KEY}" in env
    assert fake_modal.sandbox("c-old")["outbound_policy"] == []
    assert backend.isolation("c-old") == ("modal sandbox", "modal secret")
