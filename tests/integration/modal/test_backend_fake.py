"""The Modal backend against the fake SDK, which runs the REAL worker (and the fake agent)
as local processes with /vol, /workspace and /root mapped per sandbox."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path

import pytest

from parhelia.checkpoint import blob_key, load_manifest, manifest_key
from parhelia.errors import ParheliaError
from parhelia.sandbox import PLACEHOLDER_PREFIX
from parhelia.spec import load_result
from parhelia.volume import LocalVolume, result_key
from parheliad.backends.modal import OWNER_TAG, sandbox_timeout
from parheliad.backends.modal.errors import BackendUnreachable, NoCapacity
from parheliad.core import volsync
from tests.helpers.modal_backend import (
    OWNER,
    TEST_KEY,
    follow,
    make_backend,
    script,
    seqs,
    start,
    worker_spec,
)


async def test_a_task_runs_in_a_sandbox_and_its_results_come_back(fake_modal, tmp_path: Path):
    backend = make_backend(fake_modal)
    local = LocalVolume(tmp_path / "local")
    spec = worker_spec(backend, script({"write": "hello.txt", "content": "from modal"},
                                       {"turn": True}), "c-e2e-1")
    sb_id = await start(backend, local, spec, timeout=900)

    records, cursor = await follow(backend, "c-e2e-1")
    assert seqs(records) == list(range(1, len(records) + 1))
    exited = records[-1]["data"]
    assert exited["status"] == "completed", fake_modal.sandbox("c-e2e-1")

    [status] = await backend.statuses([(sb_id, "c-e2e-1")])
    deadline = asyncio.get_running_loop().time() + 20
    while status.running and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
        [status] = await backend.statuses([(sb_id, "c-e2e-1")])
    assert (status.running, status.exit_code) == (False, 0)

    # The end: result, then the final checkpoint (manifest, then its blobs).
    await backend.pull(local, [result_key("c-e2e-1")], session_id="s-1")
    result = load_result(local.path_for(result_key("c-e2e-1")))
    assert result.status == "completed" and result.last_checkpoint_id
    await volsync.pull_manifest(backend, local, "s-1", result.last_checkpoint_id)
    manifest = load_manifest(local, "s-1", result.last_checkpoint_id)
    blobs = sorted(blob_key(d) for d in manifest.blobs())
    assert await backend.pull(local, blobs, session_id="s-1") > 0
    assert await backend.pull(local, blobs, session_id="s-1") == 0  # the local side has them
    entry = manifest.tree["hello.txt"]
    assert local.get(blob_key(entry.blob)) == b"from modal"

    sb = fake_modal.sandbox("c-e2e-1")
    assert sb["id"] == sb_id
    assert sb["tags"] == {OWNER_TAG: OWNER, "parhelia-task": "t-1",
                          "parhelia-session": "s-1", "parhelia-container": "c-e2e-1"}
    assert sb["timeout"] == sandbox_timeout(900) == 1500
    assert (sb["cpu"], sb["memory"], sb["gpu"]) == (0.5, 512, None)
    assert sb["volumes"] == {"/vol": {"volume": "parhelia-data", "sub_path": "sessions/s-1",
                                      "read_only": False}}
    assert sb["cmd"] == ["python", "-m", "modal_worker", "run", "/vol/specs/c-e2e-1.json"]
    # The credential went as a secret only: not in argv, env=, the spec or the volume.
    assert sb["env"] == {} and sb["secrets"] == 1
    for path in fake_modal.root.rglob("*"):
        if path.is_file() and "secrets" not in path.parts:
            assert TEST_KEY.encode() not in path.read_bytes(), path


async def test_a_retried_create_adopts_the_sandbox_instead_of_starting_a_second(
        fake_modal, tmp_path: Path):
    backend = make_backend(fake_modal)
    local = LocalVolume(tmp_path / "local")
    spec = worker_spec(backend, script({"sleep": 30}), "c-clash")
    fake_modal.switch("name_clash")  # the sandbox starts, but the reply is lost
    with pytest.raises(BackendUnreachable):
        await start(backend, local, spec)
    sb_id = await start(backend, local, spec)  # the dispatcher's retry
    assert [s["id"] for s in fake_modal.sandboxes()] == [sb_id]
    assert fake_modal.calls().count("Sandbox.from_name") == 1


async def test_no_capacity_is_not_a_failure_and_keeps_modals_message(fake_modal, tmp_path):
    backend = make_backend(fake_modal)
    local = LocalVolume(tmp_path / "local")
    spec = worker_spec(backend, script({"sleep": 1}), "c-cap")
    fake_modal.switch("no_capacity", value="No H100 capacity in any region right now")
    with pytest.raises(NoCapacity) as err:
        await start(backend, local, spec, gpu="H100")
    assert err.value.code == "E500"
    assert "No H100 capacity in any region right now" in err.value.message
    assert fake_modal.sandboxes() == []


async def test_unreachable_and_hanging_modal_raise_backend_unreachable_quickly(
        fake_modal, tmp_path):
    backend = make_backend(fake_modal, call_timeout_seconds=0.5)
    local = LocalVolume(tmp_path / "local")
    spec = worker_spec(backend, script({"sleep": 30}), "c-net")
    sb_id = await start(backend, local, spec)
    for switch in ("unreachable", "hang"):
        fake_modal.switch(switch)
        with pytest.raises(BackendUnreachable) as err:
            await backend.statuses([(sb_id, "c-net")])
        assert err.value.code == "E502" and "Recovery" in err.value.message
        fake_modal.switch(switch, False)
    # Nothing was terminated while Modal could not be reached.
    [status] = await backend.statuses([(sb_id, "c-net")])
    assert status.running
    assert "Sandbox.terminate" not in fake_modal.calls()


async def test_modal_auth_and_invalid_errors_map_to_the_catalogue(fake_modal, tmp_path):
    backend = make_backend(fake_modal)
    local = LocalVolume(tmp_path / "local")
    spec = worker_spec(backend, script({"sleep": 1}), "c-err")
    fake_modal.switch("auth")
    with pytest.raises(ParheliaError) as err:
        await start(backend, local, spec)
    assert err.value.code == "E400"
    assert "parhelia modal setup --token-id" in err.value.message
    fake_modal.switch("auth", False)
    with pytest.raises(ParheliaError) as err:
        await start(backend, local, spec, gpu="Z9000")
    assert err.value.code == "E503" and "Invalid GPU type: Z9000" in err.value.message
    # A sandbox Modal does not know (E203 from Modal) is reported as gone, with why.
    status = await backend.status("sb-does-not-exist", "c-x")
    assert (status.running, status.detail) == (False, "the sandbox is not known to Modal")


async def test_statuses_make_one_list_call_whatever_the_number_of_containers(
        fake_modal, tmp_path):
    backend = make_backend(fake_modal)
    local = LocalVolume(tmp_path / "local")
    items = []
    for i in range(4):
        spec = worker_spec(backend, script({"sleep": 30}), f"c-many-{i}")
        items.append((await start(backend, local, spec), spec.container_id))
    fake_modal.reset_calls()
    statuses = await backend.statuses(items)
    assert all(s.running for s in statuses)
    assert fake_modal.calls() == ["Sandbox.list"]

    await backend.terminate(items[0][0])
    fake_modal.wait_ended(items[0][0])
    fake_modal.reset_calls()
    statuses = await backend.statuses(items)
    assert [s.running for s in statuses] == [False, True, True, True]
    assert (statuses[0].exit_code, statuses[0].detail) == (137, "the sandbox was terminated")
    assert sorted(fake_modal.calls()) == ["Sandbox.list", "Sandbox.poll"]
    fake_modal.reset_calls()
    await backend.statuses(items)  # an ended sandbox is not polled again
    assert fake_modal.calls() == ["Sandbox.list"]


async def test_list_sees_only_this_owners_sandboxes_and_reads_tags_once(fake_modal, tmp_path):
    backend = make_backend(fake_modal)
    local = LocalVolume(tmp_path / "local")
    spec = worker_spec(backend, script({"sleep": 30}), "c-mine")
    mine = await start(backend, local, spec)
    sdk = fake_modal.sdk
    app = sdk.App.lookup("parhelia")
    other = sdk.Sandbox.create("sleep", "60", app=app, name="c-other",
                               tags={OWNER_TAG: "someone-else", "parhelia-container": "c-other"})
    fresh = make_backend(fake_modal)  # a restarted daemon: it has seen no sandbox yet
    fake_modal.reset_calls()
    listed = await fresh.list(OWNER)
    assert [(c.backend_id, c.container_id, c.extra["session_id"]) for c in listed] == [
        (mine, "c-mine", "s-1")]
    assert fake_modal.calls() == ["App.lookup", "Sandbox.list", "Sandbox.get_tags"]
    fake_modal.reset_calls()
    await fresh.list(OWNER)
    assert fake_modal.calls() == ["Sandbox.list"]
    assert other.object_id not in {c.backend_id for c in listed}


async def test_timeout_ends_with_124_and_is_reported(fake_modal, tmp_path):
    backend = make_backend(fake_modal)
    sdk = fake_modal.sdk
    app = await backend.app()
    sb = sdk.Sandbox.create("sleep", "60", app=app, name="c-slow", timeout=1,
                            tags={OWNER_TAG: OWNER})
    assert fake_modal.wait_ended(sb.object_id) == 124
    status = await backend.status(sb.object_id, "c-slow")
    assert (status.running, status.exit_code) == (False, 124)
    assert "timeout" in status.detail


async def test_a_restarted_daemon_catches_up_from_the_volume_exactly_once(fake_modal, tmp_path):
    backend = make_backend(fake_modal)
    local = LocalVolume(tmp_path / "local")
    spec = worker_spec(backend, script({"write": "a.txt", "content": "A"}, {"turn": True},
                                       {"sleep": 2}, {"write": "b.txt", "content": "B"},
                                       {"turn": True}), "c-restart")
    sb_id = await start(backend, local, spec)
    first, cursor = await follow(backend, "c-restart", until="agent_started")
    assert first[-1]["type"] != "worker_exited"
    fake_modal.wait_ended(sb_id)
    # A new daemon (no handles, no channel state) resumes from the stored cursor.
    fresh = make_backend(fake_modal)
    rest, _ = await follow(fresh, "c-restart", cursor=cursor)
    everything = first + rest
    assert seqs(everything) == list(range(1, len(everything) + 1))
    assert everything[-1]["type"] == "worker_exited"
    again = await fresh.events("c-restart", (await fresh.events("c-restart", cursor)).cursor)
    assert again.records == []
    # what the health sweep hears of it: its end (nothing more is due), not the old
    # heartbeats read back from the volume
    assert fresh.last_heard("c-restart") is not None
    assert fresh._channels["c-restart"].heard_at_us is None


async def test_push_sends_only_blobs_the_volume_lacks(fake_modal, tmp_path):
    backend = make_backend(fake_modal)
    local = LocalVolume(tmp_path / "local")
    import hashlib
    data = b"x" * 1000
    key = f"cas/blobs/{hashlib.sha256(data).hexdigest()[:2]}/{hashlib.sha256(data).hexdigest()}"
    local.put(key, data)
    local.put("checkpoints/s/cp.json", b"{}")
    assert await backend.push(local, [key, "checkpoints/s/cp.json"], session_id="s") == 1002
    assert await backend.push(local, [key, "checkpoints/s/cp.json"], session_id="s") == 2
    fresh = make_backend(fake_modal)  # learns what the volume holds with one listing
    fake_modal.reset_calls()
    assert await fresh.push(local, [key], session_id="s") == 0
    # Uploaded once, into the daemon-only area; copied into the session's area on the
    # service's side, never uploaded again (ADR 0031). The volume's one handle is kept.
    assert fake_modal.calls() == ["Volume.hydrate", "Volume.listdir", "Volume.copy_files"]
    fake_modal.reset_calls()
    await fresh.list_keys("cas")
    assert fake_modal.calls() == ["Volume.listdir"]
    assert await fresh.list_keys("cas") == [key]
    assert await fresh.list_keys("sessions/s/cas") == [f"sessions/s/{key}"]
    assert await fresh.push(local, [key], session_id="other") == 0
    assert await fresh.list_keys("sessions/other/cas") == [f"sessions/other/{key}"]


async def test_pull_refuses_a_blob_whose_content_does_not_match_its_name(fake_modal, tmp_path):
    backend = make_backend(fake_modal)
    local = LocalVolume(tmp_path / "local")
    forged = "cas/blobs/aa/" + "a" * 64
    vol = await backend.volume_handle()
    import io
    with vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(b"not what the name says"), f"sessions/s/{forged}")
    assert await backend.pull(local, [forged], session_id="s") == 0
    assert not local.exists(forged)


async def test_credentials_from_the_named_secret_else_the_daemons_environment(
        fake_modal, tmp_path):
    backend = make_backend(fake_modal)
    creds = await backend.credentials()
    assert creds.ok and "ephemeral" in creds.detail
    fake_modal.create_secret("anthropic-api-key", {"ANTHROPIC_API_KEY": "sk-ant-from-modal"})
    named = make_backend(fake_modal)
    creds = await named.credentials()
    assert creds.ok and "'anthropic-api-key' (ANTHROPIC_API_KEY)" in creds.detail
    assert "outbound policy" in creds.detail
    # With the named secret, the credential never enters the sandbox: Modal puts it into
    # the requests to the API host (the outbound policy); the agent's variable holds a
    # placeholder. Nothing of the daemon's environment is sent, except the config sync
    # pass-through values.
    local = LocalVolume(tmp_path / "local")
    spec = worker_spec(named, script({"sleep": 30}), "c-secret")
    await start(named, local, spec, secret_env={"MY_TOOL_TOKEN": "pass-through-1"})
    worker = fake_modal.worker_pid("c-secret")
    env = Path(f"/proc/{worker}/environ").read_bytes().decode().replace("\0", "\n")
    assert f"ANTHROPIC_API_KEY={PLACEHOLDER_PREFIX}" in env
    assert "sk-ant-from-modal" not in env
    assert "MY_TOOL_TOKEN=pass-through-1" in env
    assert TEST_KEY not in env
    [policy] = fake_modal.sandbox("c-secret")["outbound_policy"]
    assert policy == {"domain": "api.anthropic.com", "secret": "anthropic-api-key",
                      "headers": {"x-api-key": "$ANTHROPIC_API_KEY"}}
    assert named.isolation("c-secret") == ("modal sandbox", "outbound policy")

    nothing = make_backend(fake_modal, secret_name="missing-secret")
    nothing._environ.pop("ANTHROPIC_API_KEY")
    creds = await nothing.credentials()
    assert not creds.ok and "parhelia auth set" in creds.detail
    assert "'missing-secret'" in creds.detail and "modal secret create" not in creds.detail
    with pytest.raises(ParheliaError) as err:
        await start(nothing, local, worker_spec(nothing, "x", "c-nocreds"))
    assert err.value.code == "E400"


async def test_a_broken_tail_is_followed_again_while_the_sandbox_runs(fake_modal, tmp_path):
    import os
    import signal

    backend = make_backend(fake_modal)
    local = LocalVolume(tmp_path / "local")
    spec = worker_spec(backend, script({"write": "a.txt", "content": "A"}, {"turn": True},
                                       {"sleep": 12}, {"turn": True}), "c-tail")
    sb_id = await start(backend, local, spec)
    records, cursor = await follow(backend, "c-tail", until="agent_started")
    execs = fake_modal.root / "sandboxes" / sb_id / "execs"
    pids = [int(p.name) for p in execs.iterdir()]
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)  # the stream breaks; the sandbox goes on
    await asyncio.sleep(0.5)
    seen_at = len(records)
    live_after_break = False
    while records[-1]["type"] != "worker_exited":
        batch = await backend.events("c-tail", cursor)
        cursor = batch.cursor
        if batch.records and fake_modal.service.returncode(sb_id) is None:
            live_after_break = True
        records += batch.records
        await asyncio.sleep(0.1)
    assert live_after_break, "records arrived only after the sandbox ended"
    assert len(records) > seen_at
    assert seqs(records) == list(range(1, len(records) + 1))
    assert fake_modal.calls().count("Sandbox.exec") >= 2


async def test_a_channel_asked_for_before_its_sandbox_exists_is_followed_live(fake_modal,
                                                                              tmp_path):
    """The listener asks for a container's records as soon as it is recorded, before the
    launch created its sandbox (a GPU launch can wait minutes). That early "not found" is
    not the sandbox's end: once it runs, its records come live through the tail, not
    only with the volume syncs of its checkpoints."""
    backend = make_backend(fake_modal)
    local = LocalVolume(tmp_path / "local")
    early = await backend.events("c-early", 0)
    assert early.records == [] and early.cursor == 0
    # longer than the tail's retry delay after the early "not found"
    spec = worker_spec(backend, script({"sleep": 9}, {"turn": True}), "c-early")
    await start(backend, local, spec)
    records: list[dict] = []
    cursor, live = 0, False
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while not records or records[-1]["type"] != "worker_exited":
        assert loop.time() < deadline, [r["type"] for r in records]
        batch = await backend.events("c-early", cursor)
        cursor = batch.cursor
        records += batch.records
        # a heartbeat beaten while the agent sleeps, seen before the turn's checkpoint
        # synced the volume: only the live tail carries it
        types = [r["type"] for r in records]
        if "checkpoint_created" in types and "agent_turn_completed" not in types and \
                "heartbeat" in types[types.index("checkpoint_created"):]:
            live = True
        await asyncio.sleep(0.1)
    assert live, ("records arrived only with volume syncs or after the sandbox ended",
                  " ".join(r["type"] for r in records))
    assert seqs(records) == list(range(1, len(records) + 1))
    assert "Sandbox.exec" in fake_modal.calls()
    # the health sweep's view: the live tail carried heartbeats
    assert backend.last_heard("c-early") is not None


@pytest.mark.parametrize(("name", "code", "kind"), [
    ("AuthError", "E400", ParheliaError), ("ResourceExhaustedError", "E500", NoCapacity),
    ("ConnectionError", "E502", BackendUnreachable), ("TimeoutError", "E502", BackendUnreachable),
    ("InternalFailure", "E502", BackendUnreachable), ("NotFoundError", "E203", ParheliaError),
    ("InvalidError", "E503", ParheliaError), ("SnapshotCreationError", "E503", ParheliaError),
])
def test_every_modal_error_maps_to_the_catalogue_with_a_recovery_line(fake_modal, name, code,
                                                                       kind):
    from parheliad.backends.modal.errors import map_error

    errors = fake_modal.sdk.exception
    token = "sk-ant-api03-" + "x" * 40
    err = map_error(getattr(errors, name)(f"modal says no ({token})"), "doing X", errors)
    assert isinstance(err, kind) and err.code == code
    assert "modal says no" in err.message and "while doing X" in err.message or \
        "(doing X)" in err.message
    assert "Recovery" in err.message and token not in err.message


async def test_control_reaches_the_worker_and_checkpoints_are_synced_while_it_runs(
        fake_modal, tmp_path):
    """Control goes through `python -m modal_worker control` exec'd in the sandbox; the
    worker runs `sync /vol` after each checkpoint, so the daemon can pull it before the
    sandbox ends (without it, Modal publishes the sandbox's writes only at its end)."""
    backend = make_backend(fake_modal)
    local = LocalVolume(tmp_path / "local")
    spec = worker_spec(backend, script({"sleep": 60}), "c-ctl")
    assert list(spec.volume_sync_argv) == ["sync", "/vol"]
    sb_id = await start(backend, local, spec)
    records, cursor = await follow(backend, "c-ctl", until="agent_started")
    await backend.control(sb_id, "c-ctl", {"type": "checkpoint", "message": "save now"})
    more, cursor = await follow(backend, "c-ctl", cursor, until="checkpoint_created")
    manual = [r["data"] for r in more if r["type"] == "checkpoint_created"][-1]
    assert manual["trigger"] == "manual" and manual["message"] == "save now"
    assert fake_modal.service.returncode(sb_id) is None  # still running...
    got = await backend.pull(local, [manifest_key("s-1", manual["checkpoint_id"])],
                             session_id="s-1")
    assert got > 0  # ...and the manifest is already on the volume (synced)

    await backend.control(sb_id, "c-ctl", {"type": "stop", "reason": "cancel"})
    rest, _ = await follow(backend, "c-ctl", cursor)
    assert rest[-1]["data"]["status"] == "stopped"
    await backend.terminate(sb_id, grace_seconds=20)  # ends by itself within the grace
    assert fake_modal.wait_ended(sb_id) == 130
    assert "Sandbox.terminate" not in fake_modal.calls()


async def test_a_same_name_sandbox_of_another_owner_is_never_adopted(fake_modal, tmp_path):
    """Another daemon (another owner tag) in the same app already runs a sandbox named like
    our container: launch refuses instead of adopting it (then following, stopping or
    cleaning it as ours), and our channel never follows its spool."""
    backend = make_backend(fake_modal)
    local = LocalVolume(tmp_path / "local")
    app = await backend.app()
    other = fake_modal.sdk.Sandbox.create(
        "sleep", "60", app=app, name="c-taken",
        tags={OWNER_TAG: "someone-else", "parhelia-container": "c-taken"})
    spec = worker_spec(backend, script({"sleep": 1}), "c-taken")
    with pytest.raises(ParheliaError) as refused:
        await start(backend, local, spec)
    assert refused.value.code == "E503" and "another owner" in refused.value.message
    assert other.object_id not in {c.backend_id for c in await backend.list(OWNER)}
    fake_modal.reset_calls()
    batch = await backend.events("c-taken", 0)
    await asyncio.sleep(0.3)
    assert batch.records == [] and "Sandbox.exec" not in fake_modal.calls()
    assert fake_modal.service.returncode(other.object_id) is None  # untouched


async def test_the_live_channel_counts_bytes_through_hostile_spool_lines(fake_modal, tmp_path):
    """The agent can write anything into the sandbox's spool: a line of invalid UTF-8, a
    9 MiB line, a last line without its newline. The live tail skips them byte-exactly
    (the cursor is the spool's byte offset, as the volume catch-up counts it) and the
    records after them still arrive while the sandbox runs."""
    backend = make_backend(fake_modal)
    app = await backend.app()
    sb = fake_modal.sdk.Sandbox.create(
        "sleep", "60", app=app, name="c-hostile",
        tags={OWNER_TAG: OWNER, "parhelia-container": "c-hostile"})
    good = [json.dumps({"seq": n, "type": "heartbeat", "data": {}}).encode() + b"\n"
            for n in (1, 2)]
    spool = fake_modal.sandbox_root(sb.object_id) / "vol" / "spool" / "c-hostile.jsonl"
    spool.parent.mkdir(parents=True, exist_ok=True)
    body = (good[0] + b'{"seq": 7, "type": "\xff\xfe\xfd\xfc"}\n' + b"x" * (9 << 20) + b"\n"
            + good[1])
    spool.write_bytes(body + b'{"seq": 3, "type": "heart')
    records, cursor = await follow(backend, "c-hostile", until="heartbeat", timeout=30)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while len(records) < 2 and loop.time() < deadline:
        batch = await backend.events("c-hostile", cursor)
        records, cursor = records + batch.records, batch.cursor
        await asyncio.sleep(0.05)
    assert seqs(records) == [1, 2]
    assert cursor == len(body)
    sb.terminate()


async def test_the_catch_up_streams_the_spool_from_the_volume(fake_modal, tmp_path):
    """After the sandbox ended, the records past the cursor come from the volume a chunk
    at a time: a spool of 48 MiB is never held in the daemon's memory."""
    import tracemalloc

    backend = make_backend(fake_modal)
    await backend.ensure_volume()
    volume = fake_modal.service.volume_dir("parhelia-data")
    (volume / "specs").mkdir(parents=True)  # the daemon's copy names its session
    (volume / "specs" / "c-long.json").write_text(json.dumps({"session_id": "s-long"}))
    spool = volume / "sessions" / "s-long" / "spool" / "c-long.jsonl"
    spool.parent.mkdir(parents=True, exist_ok=True)
    filler = (b"x" * 1023 + b"\n") * (48 << 10)
    tail = b"".join(json.dumps({"seq": n, "type": t, "data": {}}).encode() + b"\n"
                    for n, t in ((1, "heartbeat"), (2, "worker_exited")))
    with open(spool, "wb") as fh:
        fh.write(filler)
        fh.write(b'{"seq": 9, "type": "heart')  # cut by the cursor: not a record
        fh.write(b'beat"}\n' + tail)
    del filler
    cursor = (48 << 20) + len(b'{"seq": 9, "type": "heartbeat"}\n')
    tracemalloc.start()
    try:
        records, end = await follow(backend, "c-long", cursor=cursor, timeout=60)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seqs(records) == [1, 2] and end == spool.stat().st_size
    assert peak < 8 << 20, f"the catch-up held {peak} bytes"


async def test_compute_costs_are_modals_figures_for_our_containers_in_one_call(
        fake_modal, tmp_path):
    """Modal's own cost of each of our ended sandboxes, from ONE `app.sandboxes.stats`
    call grouped by the container tag (modal 1.6.4); another owner's is never read."""
    import time

    backend = make_backend(fake_modal)
    app = await backend.app()
    sandboxes = {}
    for owner, cid in ((OWNER, "c-cost-1"), (OWNER, "c-cost-2"), ("someone-else", "c-cost-3")):
        sandboxes[cid] = fake_modal.sdk.Sandbox.create(
            "sleep", "60", app=app, name=cid, cpu=2.0, memory=1024,
            tags={OWNER_TAG: owner, "parhelia-container": cid})
    for sb in sandboxes.values():
        fake_modal.worker_pid(sb.get_tags()["parhelia-container"])
    time.sleep(1)
    for sb in sandboxes.values():
        sb.terminate()
        fake_modal.wait_ended(sb.object_id)
    fake_modal.reset_calls()
    costs = await backend.compute_costs([(cid, time.time() - 60) for cid in sandboxes])
    assert sorted(costs) == ["c-cost-1", "c-cost-2"]
    assert [c for c in fake_modal.calls() if "stats" in c] == ["AppSandboxesManager.stats"]
    for cid in costs:
        state = fake_modal.sandbox(cid)["state"]
        seconds = state["finished_at"] - state["started_at"]
        prices = fake_modal.sdk.FAKE_PRICES  # the fake service's price table
        per_second = 2 * Decimal(prices["CPU"]) + Decimal(prices["Memory"])
        assert abs(costs[cid] - per_second * Decimal(str(seconds))) < per_second / 100
    assert await backend.compute_costs([]) == {}
