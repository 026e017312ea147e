"""The backend seams, in-process with a scripted backend whose volume is a directory
of its own: the spec's paths and credentials come from the backend, the volume sync
points copy what they must (and only that), launches run outside the dispatcher's lock,
and a launch that finds no capacity leaves the task queued."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from parhelia.checkpoint import blob_key, load_manifest, snapshot
from parhelia.paths import Paths
from parhelia.spec import load_spec
from parhelia.volume import spec_key
from parheliad.backends.base import BackendUnreachable, Credentials, NoCapacity
from parheliad.backends.registry import build_backends
from parheliad.config import Config
from parheliad.core.runtime import Runtime
from parheliad.store import Store
from parheliad.wiring import build_runtime
from tests.helpers.scripted_backend import ScriptedBackend, make_task, task_status


async def _dispatched(runtime: Runtime, store: Store) -> tuple[str, str]:
    task = await make_task(store)
    report = await runtime.dispatcher.run_pass()
    assert report.dispatched == [task.id], report
    row = await store.tasks.get(task.id)
    assert row.container_id is not None
    return task.id, row.container_id


async def test_spec_paths_come_from_the_backend_and_the_spec_is_pushed(
        runtime: Runtime, store: Store, backend: ScriptedBackend) -> None:
    _, cid = await _dispatched(runtime, store)
    # Written in the daemon's volume, copied to the backend's before the launch.
    assert runtime.volume.exists(spec_key(cid)) and backend.volume.exists(spec_key(cid))
    spec = load_spec(backend.volume.path_for(spec_key(cid)))
    assert (spec.volume_dir, spec.workspace_dir, spec.claude_config_dir) == \
        ("/vol", "/workspace", "/root/.claude")
    assert spec.volume_sync_argv == ["sync", "/vol"]
    assert str(runtime.paths.data_dir) not in json.dumps(spec.to_dict())


async def test_checkpoint_zero_blobs_go_to_the_backend_once(
        runtime: Runtime, store: Store, backend: ScriptedBackend, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("alpha")
    (src / "b.txt").write_text("beta")
    up = await runtime.upload(src)
    zero = load_manifest(runtime.volume, up.workspace_id, up.checkpoint_id)
    blobs = sorted({blob_key(e.blob) for e in zero.tree.values() if e.blob})
    # One blob is already on the backend's side: it must not be sent again.
    backend.volume.put(blobs[0], runtime.volume.get(blobs[0]))
    task = await store.write(lambda tx: tx.tasks.insert(dict(
        prompt="p", cpu=1.0, memory_mb=1024, timeout_seconds=600, max_turns=5,
        permission_mode="acceptEdits", backend="modal", max_cost_micros=1_000_000,
        source_workspace_id=up.workspace_id)))
    assert (await runtime.dispatcher.run_pass()).dispatched == [task.id]
    row = await store.tasks.get(task.id)
    spec = load_spec(backend.volume.path_for(spec_key(row.container_id or "")))
    assert spec.restore_checkpoint_id is not None
    restored = load_manifest(backend.volume, spec.session_id, spec.restore_checkpoint_id)
    assert all(backend.volume.exists(k) for k in blobs)
    assert restored.tree == zero.tree
    assert blobs[0] not in backend.pushed and blobs[1] in backend.pushed
    assert backend.pushed[-1] == spec_key(row.container_id or "")  # the spec last


def _checkpoint_on_backend(backend: ScriptedBackend, session_id: str, tmp_path: Path,
                           content: str) -> dict[str, object]:
    ws = tmp_path / f"ws-{content}"
    ws.mkdir()
    (ws / "f.txt").write_text(content)
    manifest = snapshot(ws, volume=backend.volume, session_id=session_id, parent_id=None,
                        trigger="turn")
    return manifest.summary().to_dict()


async def test_a_reported_checkpoint_is_copied_before_it_is_indexed(
        runtime: Runtime, store: Store, backend: ScriptedBackend, tmp_path: Path) -> None:
    task_id, cid = await _dispatched(runtime, store)
    session_id = (await store.tasks.get(task_id)).session_id or ""
    summary = _checkpoint_on_backend(backend, session_id, tmp_path, "work done")
    backend.emit(cid, "checkpoint_created", **summary)
    await runtime.listener.drain_all()
    cp = str(summary["checkpoint_id"])
    local = load_manifest(runtime.volume, session_id, cp)
    digest = local.tree["f.txt"].blob
    assert digest and runtime.volume.get(blob_key(digest)) == b"work done"
    assert (await store.sessions.get(session_id)).latest_checkpoint_id == cp


async def test_a_blob_that_does_not_match_its_hash_is_not_kept(
        runtime: Runtime, store: Store, backend: ScriptedBackend, tmp_path: Path) -> None:
    """The sandbox's agent can write the volume: a blob whose bytes do not hash to its
    name must not enter the daemon's store (diff and pull read it)."""
    task_id, cid = await _dispatched(runtime, store)
    session_id = (await store.tasks.get(task_id)).session_id or ""
    summary = _checkpoint_on_backend(backend, session_id, tmp_path, "honest")
    manifest = load_manifest(backend.volume, session_id, str(summary["checkpoint_id"]))
    key = blob_key(manifest.tree["f.txt"].blob or "")
    backend.volume.put(key, b"tampered")
    backend.emit(cid, "checkpoint_created", **summary)
    await runtime.listener.drain_all()
    assert not runtime.volume.exists(key)


async def test_the_end_copies_the_result_and_log(
        runtime: Runtime, store: Store, backend: ScriptedBackend) -> None:
    _, cid = await _dispatched(runtime, store)
    backend.volume.put(f"logs/{cid}/agent.jsonl", b'{"type":"result"}\n')
    backend.volume.put(f"results/{cid}.json", json.dumps({
        "container_id": cid, "task_id": "t", "session_id": "s", "incarnation": 1,
        "exit_code": 0, "status": "completed", "started_at": "", "finished_at": ""}).encode())
    backend.running[backend.by_container[cid]] = False
    await runtime.listener.check_exits()
    assert runtime.volume.get(f"logs/{cid}/agent.jsonl") == b'{"type":"result"}\n'
    assert (await store.containers.get(cid)).state == "exited"


async def test_credentials_come_from_the_backend(
        runtime: Runtime, store: Store, backend: ScriptedBackend) -> None:
    async def none() -> Credentials:
        return Credentials(False, "secret 'anthropic-api-key' not found: create it", {})

    backend.credentials = none  # type: ignore[method-assign]
    task = await make_task(store)
    report = await runtime.dispatcher.run_pass()
    assert report.dispatched == []
    row = await store.tasks.get(task.id)
    assert row.status == "failed" and row.result_error_code == "E400"
    assert "secret 'anthropic-api-key' not found" in row.result_error_message
    assert backend.running == {}


async def test_no_capacity_leaves_the_task_queued_with_its_reason(
        runtime: Runtime, store: Store, backend: ScriptedBackend) -> None:
    calls = 0
    launch = backend.launch

    async def scarce(spec):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 1:
            raise NoCapacity("No H100 available in any region right now")
        return await launch(spec)

    backend.launch = scarce  # type: ignore[method-assign]
    task = await make_task(store)
    await runtime.dispatcher.run_pass()
    row = await store.tasks.get(task.id)
    assert row.status == "pending" and row.restarts == 0 and row.result_error_code == ""
    assert "No H100 available" in row.status_reason
    assert "waiting for capacity" in row.status_reason
    assert row.status_code == "E500" and not row.needs_user
    assert row.dispatch_after is not None
    # Backoff: the next pass does not try again at once...
    assert (await runtime.dispatcher.run_pass()).dispatched == []
    assert calls == 1
    # ... and when the wait is over it does, on the same session, as a new incarnation.
    await store.write(lambda tx: tx.tasks.update(task.id, dispatch_after=None))
    assert (await runtime.dispatcher.run_pass()).dispatched == [task.id]
    row = await store.tasks.get(task.id)
    assert row.status == "running" and row.restarts == 0
    containers = await store.containers.list(task_id=task.id, limit=10)
    assert sorted(c.state for c in containers) == ["failed", "starting"]


async def test_a_slow_launch_does_not_hold_the_dispatcher(
        runtime: Runtime, store: Store, backend: ScriptedBackend) -> None:
    """A Modal GPU launch can wait ~20 minutes for capacity: claims of other tasks go on."""
    gate = asyncio.Event()
    launch = backend.launch
    first = True

    async def slow_first(spec):  # type: ignore[no-untyped-def]
        nonlocal first
        if first:
            first = False
            await gate.wait()
        return await launch(spec)

    backend.launch = slow_first  # type: ignore[method-assign]
    a = await make_task(store)
    slow = asyncio.create_task(runtime.dispatcher.run_pass())
    for _ in range(200):
        if runtime.dispatcher.launching:
            break
        await asyncio.sleep(0.01)
    b = await make_task(store)
    report = await asyncio.wait_for(runtime.dispatcher.run_pass(), 5)
    assert report.dispatched == [b.id]
    assert await task_status(store, b.id) == "running"
    gate.set()
    assert (await slow).dispatched == [a.id]


def test_the_registry_says_why_a_backend_is_missing(tmp_path: Path) -> None:
    paths = Paths(home=tmp_path, config_file=tmp_path / "c.toml", state_dir=tmp_path,
                  data_dir=tmp_path, socket=tmp_path / "s")

    def broken(config: Config, paths: Paths, environ: object, owner: str) -> object:
        import parheliad.backends.nonexistent  # type: ignore[import-not-found]  # noqa: F401
        raise AssertionError

    from parheliad.backends import registry

    built = build_backends(Config(), paths, {}, "owner", {"local": registry.FACTORIES["local"],
                                                 "modal": broken})  # type: ignore[dict-item]
    states = {s.name: s for s in built.states()}
    assert states["local"].available
    assert not states["modal"].available and "not included" in states["modal"].detail
    why = built.unavailable_reason("modal")
    assert why is not None and "not included" in why
    assert built.unavailable_reason("local") is None


async def test_an_unreachable_backend_is_not_worker_silence(
        runtime: Runtime, store: Store, backend: ScriptedBackend) -> None:
    """Modal's API unreachable for a long while: the container shows ``unreachable``,
    nothing is killed, settled or relaunched; when Modal answers again, silence counts
    from then, and the next heartbeat makes it healthy."""
    task_id, cid = await _dispatched(runtime, store)
    backend.emit(cid, "heartbeat", agent_alive=True)
    await runtime.listener.drain_all()
    assert (await store.containers.get(cid)).health == "healthy"

    statuses, events = backend.statuses, backend.events

    async def down(*args: object, **kwargs: object) -> object:
        raise BackendUnreachable("Modal could not be reached while listing sandboxes")

    backend.statuses = down  # type: ignore[method-assign,assignment]
    backend.events = down  # type: ignore[method-assign,assignment]
    await runtime.listener.check_exits()
    await runtime.listener.drain_all()
    # Ten minutes without a heartbeat, all of it while Modal could not be asked.
    await store.write(lambda tx: tx.conn.execute(
        "UPDATE containers SET last_heartbeat_at = last_heartbeat_at - 600000000 WHERE id = ?",
        (cid,)))
    for _ in range(3):
        await runtime.health.sweep()
    c = await store.containers.get(cid)
    assert c.health == "unreachable" and c.state in ("starting", "running")
    assert backend.terminated == [] and await task_status(store, task_id) == "running"
    assert (await store.tasks.get(task_id)).restarts == 0

    backend.statuses, backend.events = statuses, events  # type: ignore[method-assign]
    await runtime.listener.check_exits()
    await runtime.health.sweep()
    c = await store.containers.get(cid)
    assert c.health == "unreachable" and backend.terminated == []  # silence counts from now
    backend.emit(cid, "heartbeat", agent_alive=True)
    await runtime.listener.drain_all()
    assert (await store.containers.get(cid)).health == "healthy"


async def test_the_reconciler_never_asks_a_backend_that_is_not_configured(
        store: Store, tmp_path: Path) -> None:
    """No Modal token here: the sweep (one runs at every daemon start) must not import
    or call the SDK -- that cost seconds per start and logged a warning per sweep."""
    from parheliad.backends.modal import ModalBackend, ModalSettings
    from parheliad.core.events import EventBus

    touched: list[str] = []

    class RecordingSdk:
        def __getattr__(self, name: str) -> object:
            touched.append(name)
            raise AttributeError(name)

    modal = ModalBackend(ModalSettings(), environ={"HOME": str(tmp_path)},
                         sdk=RecordingSdk(), owner_tag="owner")
    assert modal.available()[0] is False
    paths = Paths(home=tmp_path, config_file=tmp_path / "config.toml",
                  state_dir=tmp_path / "state", data_dir=tmp_path / "data",
                  socket=tmp_path / "s")
    rt = build_runtime(store, paths, Config, "owner", EventBus(), backends={"modal": modal})
    report = await rt.reconciler.run()
    assert report.findings == []
    assert touched == []


async def test_a_delta_checkpoint_is_copied_with_its_base(
        runtime: Runtime, store: Store, backend: ScriptedBackend, tmp_path: Path) -> None:
    """A turn checkpoint's manifest is a delta: the daemon's copy needs its base manifest
    (and the base's blobs) too, even when the base's own record was never read."""
    task_id, cid = await _dispatched(runtime, store)
    session_id = (await store.tasks.get(task_id)).session_id or ""
    ws = tmp_path / "ws-delta"
    ws.mkdir()
    for i in range(20):
        (ws / f"f{i}.txt").write_text(f"file {i}")
    base = snapshot(ws, volume=backend.volume, session_id=session_id, parent_id=None,
                    trigger="start")
    (ws / "f0.txt").write_text("changed")
    delta = snapshot(ws, volume=backend.volume, session_id=session_id, parent_id=base.id,
                     trigger="turn", previous=base)
    assert delta.delta is not None
    backend.emit(cid, "checkpoint_created", **delta.summary().to_dict())
    await runtime.listener.drain_all()
    local = load_manifest(runtime.volume, session_id, delta.id)
    assert local.tree == delta.tree
    assert all(runtime.volume.exists(blob_key(d)) for d in local.blobs())
    assert (await store.sessions.get(session_id)).latest_checkpoint_id == delta.id
