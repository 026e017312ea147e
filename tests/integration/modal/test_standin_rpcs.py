"""The guard of the stand-in's reach: Parhelia's whole Modal surface, driven through the
backend and the REAL installed SDK, calls only RPCs the stand-in answers.

An SDK upgrade that moves a call to an RPC the stand-in does not know fails THIS test,
naming the RPC (``test_an_rpc_the_standin_does_not_answer_fails_loudly_by_name`` shows
the guard failing on a planted call); the stand-in's RPCs must exist in the installed
SDK's generated server bases (a renamed or dropped RPC fails too).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from modal_proto import api_grpc, task_command_router_grpc

from parhelia.volume import LocalVolume, result_key
from tests.helpers.modal_backend import follow, make_backend, script, start, worker_spec
from tests.modal_standin.control import ControlPlane
from tests.modal_standin.fixture import StandIn
from tests.modal_standin.router import Router
from tests.modal_standin.rpc import implemented


def test_every_rpc_the_standin_answers_exists_in_the_installed_sdk() -> None:
    control = implemented(ControlPlane, api_grpc.ModalClientBase)
    router = implemented(Router, task_command_router_grpc.TaskCommandRouterBase)
    assert len(control) >= 30 and len(router) >= 6
    for name in control:
        assert name in api_grpc.ModalClientBase.__abstractmethods__
    for name in router:
        assert name in task_command_router_grpc.TaskCommandRouterBase.__abstractmethods__


async def test_the_installed_sdk_calls_only_rpcs_the_standin_answers(
        modal_standin: StandIn, tmp_path: Path) -> None:
    modal_standin.create_secret("anthropic-api-key", {"ANTHROPIC_API_KEY": "sk-ant-test-key"})
    backend = make_backend(modal_standin)
    local = LocalVolume(tmp_path / "local")
    assert (await backend.credentials()).ok
    spec = worker_spec(backend, script({"write": "a.txt", "content": "a"}, {"turn": True},
                                       {"sleep": 30}), "c-rpcs-1")
    spec.ssh_authorized_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheTunnelOnly x"
    sb_id = await start(backend, local, spec)
    await follow(backend, "c-rpcs-1", until="checkpoint_created", timeout=120)
    assert (await backend.statuses([(sb_id, "c-rpcs-1")]))[0].running
    assert [c.container_id for c in await backend.list(backend.owner_tag)] == ["c-rpcs-1"]
    await backend.control(sb_id, "c-rpcs-1", {"type": "checkpoint", "reason": "manual"})
    terminal = await backend.open_terminal(sb_id, "c-rpcs-1", ["sh", "-c", "echo attached"],
                                           24, 80, "xterm")
    assert b"attached" in b"".join([chunk async for chunk in terminal.output()])
    await terminal.wait()
    await asyncio.wait_for(backend.ssh_endpoint(sb_id), 60)
    await backend.compute_costs([("c-rpcs-1", 0.0)])
    await backend.terminate(sb_id, grace_seconds=0)
    modal_standin.wait_ended(sb_id)
    await backend.pull(local, [result_key("c-rpcs-1")], session_id="s-1")
    await backend.aclose()
    assert modal_standin.unimplemented() == [], "RPCs the stand-in does not answer"
    called = set(modal_standin.calls())
    assert {"SandboxCreateV2", "TaskExecStart", "VolumePutFiles2", "VolumeGetFile2",
            "VolumeCopyFiles2", "ImageGetOrCreate", "MountGetOrCreate",
            "SandboxGetTimeRangeStats"} <= called
