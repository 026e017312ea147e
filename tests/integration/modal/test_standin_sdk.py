"""The Modal stand-in driven by the REAL, unmodified ``modal`` SDK (the version uv.lock
pins): what Parhelia's backend relies on, each fault of the fault model, each end state.

Every test talks to the stand-in the way Parhelia does, through the SDK's public calls;
what the test then checks is either what the SDK returned or raised, or the state of the
local service (``tests.modal_host``) the stand-in keeps.
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
import threading
import tomllib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers.paths import REPO
from tests.helpers.waiting import wait_for
from tests.modal_host import state
from tests.modal_host.host import EVICTION_MESSAGE, OOM_MESSAGE
from tests.modal_standin.fixture import SDK_VERSION, StandIn

APP = "standin-tests"
BLOCK = 8 * 1024 * 1024


@pytest.fixture
def modal(modal_standin: StandIn) -> Any:
    """The real ``modal`` package, its client pointed at the stand-in."""
    return modal_standin.sdk


def app_of(modal: Any) -> Any:
    return modal.App.lookup(APP, create_if_missing=True)


def result(sb: Any) -> Any:
    """Modal's end state as the SDK keeps it behind its wrapper (``poll()`` passes on only
    the exit code)."""
    from modal._utils.async_utils import synchronizer

    return synchronizer._translate_in(sb)._impl.result


def status_name(modal: Any, sb: Any) -> str:
    from modal_proto import api_pb2

    return str(api_pb2.GenericResult.GenericStatus.Name(result(sb).status))


# -- the pin -------------------------------------------------------------------------------


def test_the_standin_follows_the_sdk_version_uv_lock_pins(modal: Any) -> None:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    pinned = [p["version"] for p in lock["package"] if p["name"] == "modal"]
    assert pinned == [SDK_VERSION] and modal.__version__ == SDK_VERSION


# -- sandboxes -------------------------------------------------------------------------------


def test_create_exec_poll_terminate_on_the_v2_path(modal: Any, modal_standin: StandIn) -> None:
    app = app_of(modal)
    sb = modal.Sandbox.create("sleep", "60", app=app, name="c-life-1",
                              tags={"parhelia-owner": "o-1"}, timeout=120, cpu=0.5, memory=512)
    assert sb.poll() is None
    proc = sb.exec("sh", "-c", "echo out; echo err >&2; exit 3")
    assert proc.wait() == 3
    assert (proc.stdout.read(), proc.stderr.read()) == ("out\n", "err\n")
    assert sb.get_tags() == {"parhelia-owner": "o-1"}
    assert modal.Sandbox.from_name(APP, "c-life-1").object_id == sb.object_id
    recorded = modal_standin.sandbox("c-life-1")
    assert (recorded["cpu"], recorded["memory"], recorded["gpu"], recorded["v2"]) == \
        (0.5, 512, None, True)
    sb.terminate()
    sb.wait(raise_on_termination=False)
    assert sb.returncode == 137 and status_name(modal, sb) == "GENERIC_STATUS_TERMINATED"
    assert sb.poll() == 137
    with pytest.raises(modal.exception.NotFoundError):
        modal.Sandbox.from_name(APP, "c-life-1")
    calls = set(modal_standin.calls())
    assert {"SandboxCreateV2", "SandboxGetTaskIdV2", "SandboxGetCommandRouterAccess",
            "TaskExecStart", "TaskExecStdioRead", "TaskExecWait", "SandboxTerminateV2",
            "SandboxWaitV2"} <= calls
    assert "SandboxCreate" not in calls


def test_an_exec_on_an_ended_sandbox_is_a_conflict_or_not_found(modal: Any) -> None:
    app = app_of(modal)
    sb = modal.Sandbox.create("sleep", "60", app=app, timeout=120)
    sb.exec("true").wait()  # this handle now knows the task and its router
    sb.terminate()
    sb.wait(raise_on_termination=False)
    with pytest.raises(modal.exception.NotFoundError):
        sb.exec("true")  # the router no longer knows the task
    fresh = modal.Sandbox.from_id(sb.object_id)
    with pytest.raises(modal.exception.ConflictError, match="already finished"):
        fresh.exec("true")  # the task lookup says the sandbox finished


def test_a_name_is_unique_among_running_sandboxes_of_the_app(modal: Any) -> None:
    app = app_of(modal)
    first = modal.Sandbox.create("sleep", "60", app=app, name="c-twice", timeout=120)
    with pytest.raises(modal.exception.AlreadyExistsError):
        modal.Sandbox.create("sleep", "60", app=app, name="c-twice", timeout=120)
    first.terminate()
    first.wait(raise_on_termination=False)
    again = modal.Sandbox.create("sleep", "60", app=app, name="c-twice", timeout=120)
    assert again.object_id != first.object_id


def test_list_pages_through_running_sandboxes_filtered_by_tags(
        modal: Any, modal_standin: StandIn) -> None:
    from tests.modal_standin.control import LIST_PAGE_SIZE

    app = app_of(modal)
    mine = [modal.Sandbox.create("sleep", "60", app=app, timeout=120, tags={"owner": "me"})
            for _ in range(LIST_PAGE_SIZE + 2)]
    other = modal.Sandbox.create("sleep", "60", app=app, timeout=120, tags={"owner": "else"})
    mine[0].terminate()
    mine[0].wait(raise_on_termination=False)
    modal_standin.reset_calls()
    listed = [sb.object_id for sb in modal.Sandbox.list(app_id=app.app_id, tags={"owner": "me"})]
    assert sorted(listed) == sorted(sb.object_id for sb in mine[1:])
    assert other.object_id not in listed
    assert modal_standin.calls().count("SandboxListV2") == 3  # two pages, then an empty one


def test_a_gpu_sandbox_takes_the_v1_path_and_waits_for_capacity(
        modal: Any, modal_standin: StandIn) -> None:
    app = app_of(modal)
    modal_standin.gpu_capacity(False)
    made: list[Any] = []
    creating = threading.Thread(target=lambda: made.append(modal.Sandbox.create(
        "sleep", "60", app=app, gpu="A100-80GB", name="c-gpu-1", timeout=120)))
    creating.start()
    waiting = wait_for(lambda: [s for s in modal_standin.running() if s["name"] == "c-gpu-1"],
                       10, "the sandbox recorded, waiting for capacity")
    assert waiting[0]["state"].get("pending") and waiting[0]["gpu"] == "A100-80GB"
    wait_for(lambda: "SandboxGetTaskId" in modal_standin.calls(), 10, "the SDK polling")
    assert creating.is_alive()  # create blocks while no GPU is free
    modal_standin.gpu_capacity(True)
    creating.join(30)
    assert made and made[0].poll() is None
    calls = modal_standin.calls()
    assert "SandboxCreate" in calls and "SandboxCreateV2" not in calls
    assert calls.count("SandboxGetTaskId") >= 2  # polled until scheduled
    assert made[0].exec("echo", "on a gpu").stdout.read() == "on a gpu\n"


async def test_a_cancelled_capacity_wait_leaves_no_sandbox(
        modal: Any, modal_standin: StandIn) -> None:
    app = await modal.App.lookup.aio(APP, create_if_missing=True)
    modal_standin.gpu_capacity(False)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(modal.Sandbox.create.aio(
            "sleep", "60", app=app, gpu="H100", name="c-gpu-2", timeout=120), 3)
    # modal 1.6.4 terminates the sandbox it never returned, even on cancellation
    ended = wait_for(lambda: [s for s in modal_standin.sandboxes()
                              if s["name"] == "c-gpu-2" and s["returncode"] is not None],
                     15, "the abandoned sandbox terminated")
    assert ended[0]["result"]["status"] == state.TERMINATED
    assert not ended[0]["state"].get("child")  # it never ran
    modal_standin.gpu_capacity(True)
    await asyncio.sleep(0.5)
    assert not [s for s in modal_standin.running() if s["name"] == "c-gpu-2"]


# -- end states --------------------------------------------------------------------------------


def test_oom_kill_and_eviction_end_with_modals_status_and_message(
        modal: Any, modal_standin: StandIn) -> None:
    app = app_of(modal)
    oom = modal.Sandbox.create("sleep", "60", app=app, timeout=120)
    evicted = modal.Sandbox.create("sleep", "60", app=app, timeout=120)
    oom.exec("true").wait()
    evicted.exec("true").wait()
    modal_standin.oom_kill(oom.object_id)
    modal_standin.evict(evicted.object_id)
    oom.wait(raise_on_termination=False)
    evicted.wait(raise_on_termination=False)
    assert oom.returncode == 137 and status_name(modal, oom) == "GENERIC_STATUS_KERNEL_OOM_KILL"
    assert result(oom).exception == OOM_MESSAGE
    # poll() passes the server's exit code on as it is: 0 for an eviction
    assert evicted.poll() == 0
    assert status_name(modal, evicted) == "GENERIC_STATUS_MEMORY_MANAGER_EVICTION"
    assert result(evicted).exception == EVICTION_MESSAGE


def test_init_failure_is_a_conflict_at_create_on_v1_and_an_end_state_on_v2(
        modal: Any, modal_standin: StandIn) -> None:
    app = app_of(modal)
    modal_standin.init_failure("Image pull failed: manifest unknown", times=2)
    with pytest.raises(modal.exception.ConflictError, match="Image pull failed"):
        modal.Sandbox.create("sleep", "60", app=app, gpu="T4", timeout=120)
    sb = modal.Sandbox.create("sleep", "60", app=app, timeout=120)
    sb.wait(raise_on_termination=False)
    assert sb.returncode == 0 and status_name(modal, sb) == "GENERIC_STATUS_INIT_FAILURE"
    assert "Image pull failed" in result(sb).exception


def test_the_sandbox_timeout_ends_it_with_124(modal: Any) -> None:
    sb = modal.Sandbox.create("sleep", "60", app=app_of(modal), timeout=2)
    with pytest.raises(modal.exception.SandboxTimeoutError):
        sb.wait()
    assert sb.returncode == 124


# -- exec: stdio offsets, stdin, PTY ----------------------------------------------------------


def test_a_broken_output_stream_resumes_at_its_byte_offset(
        modal: Any, modal_standin: StandIn) -> None:
    sb = modal.Sandbox.create("sleep", "60", app=app_of(modal), timeout=120)
    script = "import sys\nfor i in range(20000): sys.stdout.write(f'{i:08d}\\n')"
    modal_standin.drop_reply("TaskExecStdioRead", times=3)
    proc = sb.exec("python", "-c", script, text=False)
    data = b"".join(proc.stdout)
    assert data == b"".join(f"{i:08d}\n".encode() for i in range(20000))
    assert modal_standin.calls().count("TaskExecStdioRead") >= 4


def test_stdin_reaches_the_exec_once_and_eof_ends_it(modal: Any) -> None:
    sb = modal.Sandbox.create("sleep", "60", app=app_of(modal), timeout=120)
    proc = sb.exec("cat")
    proc.stdin.write(b"first ")
    proc.stdin.drain()
    proc.stdin.write(b"second")
    proc.stdin.write_eof()
    proc.stdin.drain()
    assert proc.stdout.read() == "first second"
    assert proc.wait() == 0


def test_a_pty_exec_has_a_terminal_of_the_asked_size(modal: Any, modal_standin: StandIn) -> None:
    from modal_proto import api_pb2

    sb = modal.Sandbox.create("sleep", "60", app=app_of(modal), timeout=120)
    proc = sb.exec("sh", "-c", "stty size; tty -s && echo is-a-tty", pty=True, text=False)
    out = b"".join(proc.stdout)
    assert proc.wait() == 0
    assert b"is-a-tty" in out
    # The SDK copies the caller's terminal (none here: 0 x 0); the router applies it.
    assert out.split()[:2] == [b"0", b"0"]
    assert api_pb2.PTYInfo.PTY_TYPE_SHELL  # the SDK's pty=True sends a shell PTY


# -- volumes -----------------------------------------------------------------------------------


def test_volume_round_trip_in_blocks_only_the_missing_ones_sent(
        modal: Any, modal_standin: StandIn) -> None:
    vol = modal.Volume.from_name("vol-rt", create_if_missing=True, version=2)
    # two blocks, each ending in zero bytes: the SDK leaves those out of what it uploads
    # and the service puts them back (random bytes ended in one now and then, and the file
    # read back came out shifted)
    big = os.urandom(BLOCK - 100) + bytes(100) + os.urandom(12245) + bytes(100)
    with vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(big), "/data/big.bin")
        batch.put_file(io.BytesIO(b""), "/data/empty")
    assert modal_standin.calls().count("BlobPut") == 2
    assert b"".join(vol.read_file("data/big.bin")) == big
    assert b"".join(vol.read_file("data/empty")) == b""
    modal_standin.reset_calls()
    with vol.batch_upload(force=True) as batch:
        batch.put_file(io.BytesIO(big), "/copy/big.bin")
    assert "BlobPut" not in modal_standin.calls()  # the service had both blocks
    with pytest.raises(FileExistsError), vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(b"x"), "/data/empty")
    listed = {e.path: e.size for e in vol.listdir("/", recursive=True)
              if e.type == modal.volume.FileEntryType.FILE}
    assert listed == {"data/big.bin": len(big), "data/empty": 0, "copy/big.bin": len(big)}
    vol.remove_file("copy", recursive=True)
    with pytest.raises(FileNotFoundError):
        b"".join(vol.read_file("copy/big.bin"))


def test_a_deleted_volume_is_not_found_by_a_hydrated_handle(
        modal: Any, modal_standin: StandIn) -> None:
    vol = modal.Volume.from_name("vol-gone", create_if_missing=True, version=2)
    vol.hydrate()
    modal_standin.delete_volume("vol-gone")
    with pytest.raises(modal.exception.NotFoundError):
        vol.listdir("/")
    again = modal.Volume.from_name("vol-gone", create_if_missing=True, version=2)
    again.hydrate()  # a NEW handle that may create one makes an empty volume
    assert again.object_id != vol.object_id and again.listdir("/") == []


def test_sandbox_writes_reach_the_volume_on_sync_or_at_the_end(
        modal: Any, modal_standin: StandIn) -> None:
    vol = modal.Volume.from_name("vol-sync", create_if_missing=True, version=2)
    sb = modal.Sandbox.create("sleep", "60", app=app_of(modal), volumes={"/vol": vol},
                              timeout=120)
    sb.exec("python", "-c", "open('written', 'w').write('from the sandbox')",
            workdir="/vol").wait()
    with pytest.raises(FileNotFoundError):
        b"".join(vol.read_file("written"))  # not before a sync
    assert sb.exec("sync", "/vol").wait() == 0
    assert b"".join(vol.read_file("written")) == b"from the sandbox"
    sb.exec("python", "-c", "open('later', 'w').write('at the end')", workdir="/vol").wait()
    sb.terminate()
    sb.wait(raise_on_termination=False)
    assert b"".join(vol.read_file("later")) == b"at the end"


def test_a_sub_path_mount_shows_and_writes_only_that_directory(
        modal: Any, modal_standin: StandIn) -> None:
    vol = modal.Volume.from_name("vol-sub", create_if_missing=True, version=2)
    with vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(b"mine"), "/sessions/s-1/spec.json")
        batch.put_file(io.BytesIO(b"not mine"), "/sessions/s-2/spec.json")
    shared = modal.Volume.from_name("vol-shared", create_if_missing=True, version=2)
    sb = modal.Sandbox.create(
        "sleep", "60", app=app_of(modal), timeout=120,
        volumes={"/vol": vol.with_mount_options(sub_path="sessions/s-1"),
                 "/shared": shared.with_mount_options(read_only=True)})
    seen = sb.exec("python", "-c", "import os; print(sorted(os.listdir('.')))",
                   workdir="/vol").stdout.read()
    assert seen.strip() == "['spec.json']"
    sb.exec("python", "-c", "open('out', 'w').write('done')", workdir="/vol").wait()
    sb.exec("python", "-c", "open('spill', 'w').write('no')", workdir="/shared").wait()
    sb.terminate()
    sb.wait(raise_on_termination=False)
    assert b"".join(vol.read_file("sessions/s-1/out")) == b"done"
    with pytest.raises(FileNotFoundError):
        b"".join(shared.read_file("spill"))  # a read-only mount commits nothing
    assert modal_standin.sandboxes()[-1]["volumes"]["/vol"]["sub_path"] == "sessions/s-1"


# -- images, mounts, network policy, secrets ---------------------------------------------------


def test_an_image_build_is_recorded_once_and_local_sources_are_mounted(
        modal: Any, modal_standin: StandIn) -> None:
    app = app_of(modal)
    images = (modal_standin.store or modal_standin.root / "store") / "images"
    before = set(images.iterdir()) if images.is_dir() else set()
    image = (modal.Image.debian_slim(python_version="3.11").apt_install("git")
             .env({"IS_SANDBOX": "1", "RUN": os.urandom(4).hex()})
             .add_local_python_source("modal_worker", copy=False))
    image.build(app)
    built = set(images.iterdir()) - before
    image.build(app)  # the same recipe: a lookup
    assert set(images.iterdir()) - before == built
    recorded = [state.read_json(path) for path in built]
    assert any("RUN=" in " ".join(r["dockerfile_commands"]) for r in recorded)
    sb = modal.Sandbox.create("sleep", "60", app=app, image=image, timeout=120)
    out = sb.exec("python", "-c", "import os, modal_worker; print(os.environ['IS_SANDBOX']); "
                  "print(modal_worker.__file__)").stdout.read().split()
    assert out[0] == "1"
    assert out[1].startswith(str(modal_standin.sandbox_root(sb.object_id)))  # the mount's copy


def test_network_access_and_the_outbound_policy_are_recorded_without_secret_values(
        modal: Any, modal_standin: StandIn) -> None:
    import modal.experimental

    modal_standin.create_secret("anthropic-api-key", {"ANTHROPIC_API_KEY": "sk-ant-secret-1"})
    policy = modal.experimental.OutboundPolicy().with_header_replacement(
        domain="api.anthropic.com", headers={"x-api-key": "$ANTHROPIC_API_KEY"},
        secret=modal.Secret.from_name("anthropic-api-key"))
    with pytest.raises(modal.exception.InvalidError, match="outbound_domain_allowlist"):
        modal.Sandbox.create("sleep", "60", app=app_of(modal), timeout=120,
                             outbound_domain_allowlist=["api.anthropic.com"],
                             _experimental_outbound_policy=policy)  # modal 1.6.4 refuses both
    allowlisted = modal.Sandbox.create(
        "sleep", "60", app=app_of(modal), timeout=120,
        outbound_domain_allowlist=["api.anthropic.com", "*.pypi.org"])
    sb = modal.Sandbox.create("sleep", "60", app=app_of(modal), timeout=120,
                              _experimental_outbound_policy=policy)
    network = state.sandbox_meta(allowlisted.object_id)["network"]  # type: ignore[index]
    assert network["type"] == "ALLOWLIST"
    assert network["allowed_domains"] == ["api.anthropic.com", "*.pypi.org"]
    recorded = state.sandbox_meta(sb.object_id) or {}
    assert recorded["network"]["type"] == "OPEN"
    assert recorded["outbound_policy"] == [{"domain": "api.anthropic.com",
                                            "headers": {"x-api-key": "$ANTHROPIC_API_KEY"},
                                            "secret": "anthropic-api-key"}]
    env = sb.exec("env").stdout.read()
    assert "sk-ant-secret-1" not in env  # resolved outside the sandbox, never inside
    assert b"sk-ant-secret-1" not in (state.sandbox_dir(sb.object_id) / "meta.json").read_bytes()


def test_secrets_reach_the_sandbox_and_required_keys_are_checked(
        modal: Any, modal_standin: StandIn) -> None:
    modal_standin.create_secret("named", {"TOKEN_A": "a-value"})
    modal.Secret.from_name("named", required_keys=["TOKEN_A"]).hydrate()
    with pytest.raises(modal.exception.NotFoundError):
        modal.Secret.from_name("named", required_keys=["TOKEN_B"]).hydrate()
    with pytest.raises(modal.exception.NotFoundError):
        modal.Secret.from_name("absent").hydrate()
    for gpu in (None, "T4"):  # V2 sends the dict inline, V1 as an ephemeral secret
        sb = modal.Sandbox.create(
            "sh", "-c", "echo $TOKEN_A $TOKEN_C; sleep 60", app=app_of(modal), timeout=120,
            gpu=gpu, secrets=[modal.Secret.from_name("named"),
                              modal.Secret.from_dict({"TOKEN_C": "c-value"})])
        out = sb.exec("sh", "-c", "cat /proc/$PPID/environ | tr '\\0' '\\n' | grep TOKEN_ || "
                      "true").stdout.read()
        log = state.sandbox_dir(sb.object_id) / "output.log"
        wait_for(lambda: log.exists() and log.read_text().strip(), 10, "the command's output")
        assert log.read_text().split() == ["a-value", "c-value"], out


# -- tunnels and statistics ----------------------------------------------------------------------


def test_tunnels_report_the_port_once_something_listens(modal: Any) -> None:
    sb = modal.Sandbox.create("sleep", "60", app=app_of(modal), timeout=120,
                              unencrypted_ports=[22])
    with pytest.raises(modal.exception.SandboxTimeoutError):
        sb.tunnels(timeout=1)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        # what the sandbox's sshd does once it listens (tests.modal_host.sshd)
        where = state.sandbox_dir(sb.object_id) / "tunnels"
        where.mkdir(exist_ok=True)
        (where / "22").write_text(str(listener.getsockname()[1]))
        tunnel = sb.tunnels(timeout=10)[22]
        assert tunnel.unencrypted_host == "127.0.0.1"
        with socket.create_connection((tunnel.unencrypted_host, tunnel.unencrypted_port), 5):
            pass


def test_time_range_stats_group_the_cost_by_tag(modal: Any, modal_standin: StandIn) -> None:
    state.write_json(modal_standin.root / "billing.json", {"CPU": "0.001", "Memory": "0"})
    app = app_of(modal)
    for container in ("c-a", "c-b"):
        sb = modal.Sandbox.create("sleep", "60", app=app, timeout=120, cpu=1.0,
                                  tags={"parhelia-container": container, "owner": "me"})
        sb.terminate()
        sb.wait(raise_on_termination=False)
    since = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    groups = list(app.sandboxes.stats(since=since, group_by_tags=["parhelia-container"],
                                      tags={"owner": "me"}))
    assert sorted(g.tags["parhelia-container"] for g in groups) == ["c-a", "c-b"]
    assert all(g.cost > 0 and g.cost == sum(g.cost_by_resource.values()) for g in groups)
    with pytest.raises(modal.exception.InvalidError, match="hour boundary"):
        list(app.sandboxes.stats(since=since + timedelta(minutes=1) - timedelta(hours=1)))
    with pytest.raises(modal.exception.InvalidError, match="7 days"):
        list(app.sandboxes.stats(since=since - timedelta(days=8)))


# -- faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "error"), [
    ("UNAVAILABLE", "ServiceError"), ("DEADLINE_EXCEEDED", "ServiceError"),
    ("INTERNAL", "InternalError"), ("PERMISSION_DENIED", "PermissionDeniedError"),
    ("UNAUTHENTICATED", "AuthError"), ("RESOURCE_EXHAUSTED", "ResourceExhaustedError"),
    ("NOT_FOUND", "NotFoundError"),
])
def test_each_status_fault_surfaces_as_the_sdks_exception(
        modal: Any, modal_standin: StandIn, status: str, error: str) -> None:
    modal_standin.fail("AppGetOrCreate", status, message=f"injected {status}")
    with pytest.raises(getattr(modal.exception, error), match=f"injected {status}"):
        modal.App.lookup(APP, create_if_missing=True)
    retried = status in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL")
    assert (modal_standin.calls().count("AppGetOrCreate") > 1) == retried
    modal_standin.clear()
    assert modal.App.lookup(APP, create_if_missing=True).app_id


def test_a_transient_fault_within_the_sdks_retries_is_not_seen(
        modal: Any, modal_standin: StandIn) -> None:
    modal_standin.fail("AppGetOrCreate", "UNAVAILABLE", times=2)
    assert modal.App.lookup(APP, create_if_missing=True).app_id
    assert modal_standin.calls().count("AppGetOrCreate") == 3


async def test_a_hang_has_no_sdk_deadline_latency_slows_every_call_and_a_delay_the_next(
        modal: Any, modal_standin: StandIn) -> None:
    rule = modal_standin.hang("AppGetOrCreate")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(modal.App.lookup.aio(APP, create_if_missing=True), 3)
    modal_standin.remove(rule)
    modal_standin.latency(2.0, "AppGetOrCreate")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(modal.App.lookup.aio(APP, create_if_missing=True), 1)
    app = await asyncio.wait_for(modal.App.lookup.aio(APP, create_if_missing=True), 30)
    assert app.app_id
    modal_standin.latency(0, "AppGetOrCreate")
    modal_standin.delay("AppGetOrCreate", 60.0, times=1)  # one slow call, then none
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(modal.App.lookup.aio(APP, create_if_missing=True), 1)
    app = await asyncio.wait_for(modal.App.lookup.aio(APP, create_if_missing=True), 30)
    assert app.app_id
    assert modal_standin.calls().count("delayed:AppGetOrCreate") == 1


async def test_a_refused_port_cuts_connections_and_a_new_client_keeps_trying(
        modal: Any, modal_standin: StandIn) -> None:
    from tests.modal_standin.fixture import reset_sdk_client

    await modal.App.lookup.aio(APP, create_if_missing=True)  # connected before
    modal_standin.refuse()
    wait_for(lambda: _refused(modal_standin.port), 10, "the port to refuse")
    # A cut connection: the SDK's reconnect is refused at once.
    with pytest.raises(modal.exception.ConnectionError):
        await asyncio.wait_for(modal.App.lookup.aio(APP, create_if_missing=True), 30)
    # A client that never connected retries for about a minute (no answer in 3 s).
    reset_sdk_client()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(modal.App.lookup.aio(APP, create_if_missing=True), 3)
    modal_standin.refuse(False)
    reset_sdk_client()
    app = await asyncio.wait_for(modal.App.lookup.aio(APP, create_if_missing=True), 60)
    assert app.app_id


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_a_lost_create_reply_is_retried_into_a_name_clash(
        modal: Any, modal_standin: StandIn) -> None:
    modal_standin.drop_reply("SandboxCreateV2")
    with pytest.raises(modal.exception.AlreadyExistsError):
        modal.Sandbox.create("sleep", "60", app=app_of(modal), name="c-lost", timeout=120)
    assert [s["name"] for s in modal_standin.running()] == ["c-lost"]  # one sandbox only
    assert modal.Sandbox.from_name(APP, "c-lost").poll() is None


def test_a_wrong_token_is_refused(modal: Any, modal_standin: StandIn,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.modal_standin.fixture import reset_sdk_client

    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-not-the-secret")
    reset_sdk_client()
    with pytest.raises(modal.exception.AuthError, match="invalid"):
        modal.App.lookup(APP, create_if_missing=True)


def test_an_rpc_the_standin_does_not_answer_fails_loudly_by_name(
        modal: Any, modal_standin: StandIn) -> None:
    """The guard the fixture applies to every test, seen failing on a planted call."""
    with pytest.raises(modal.exception.UnimplementedError, match="QueueGetOrCreate"):
        modal.Queue.from_name("planted", create_if_missing=True).hydrate()
    assert modal_standin.unimplemented() == ["QueueGetOrCreate"]
    (modal_standin.root / "unimplemented.log").unlink()  # planted: not a failure of the test

