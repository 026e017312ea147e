"""Helpers for the Modal backend's tests against the fake SDK: a backend, a local volume
standing for the daemon's copy, and a worker spec as the dispatcher writes it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from pathlib import Path
from typing import Any

from parhelia.spec import AgentSpec, CheckpointPolicy, WorkerSpec
from parhelia.volume import LocalVolume
from parheliad.backends.base import ContainerSpec, WorkerPaths
from parheliad.backends.modal import ModalBackend, ModalSettings
from tests.helpers.paths import REPO

FAKE_AGENT = REPO / "tests" / "fake_agent" / "claude"
OWNER = "owner-test-1"
TEST_KEY = "sk-ant-test-not-a-real-key-0123456789"


def script(*steps: dict[str, Any], text: str = "do the thing") -> str:
    return f"{text}\nFAKE_SCRIPT: {json.dumps(list(steps))}"


def make_backend(fake: Any, state_dir: Path | None = None, **settings: Any) -> ModalBackend:
    """A backend on ``fake`` (the SDK-level fake, or the real SDK on the stand-in);
    ``state_dir``: where it records the volume it uses (a daemon's state directory)."""
    settings.setdefault("call_timeout_seconds", 10)
    env = {"ANTHROPIC_API_KEY": TEST_KEY, "MODAL_TOKEN_ID": "ak-x", "MODAL_TOKEN_SECRET": "as-x",
           "HOME": "/nonexistent"}
    return ModalBackend(ModalSettings(**settings), env, sdk=fake.sdk, owner_tag=OWNER,
                        state_dir=state_dir)


def worker_spec(backend: ModalBackend, prompt: str, container_id: str, session_id: str = "s-1",
                **agent: Any) -> WorkerSpec:
    paths = backend.worker_paths(session_id, container_id)
    agent.setdefault("timeout_seconds", 60)
    agent.setdefault("max_turns", 20)
    spec = WorkerSpec(
        container_id=container_id, task_id="t-1", session_id=session_id,
        volume_dir=paths.volume_dir, workspace_dir=paths.workspace_dir,
        claude_config_dir=paths.claude_config_dir, prompt=prompt, backend="modal",
        agent=AgentSpec(session_uuid=agent.pop("session_uuid", str(uuid.uuid4())),
                        command=agent.pop("command", [str(FAKE_AGENT)]), **agent),
        checkpoint=CheckpointPolicy(interval_seconds=300),
        heartbeat_interval_seconds=1,
    )
    return dataclasses.replace(spec, volume_sync_argv=list(paths.sync_argv))


def container_spec(spec: WorkerSpec, *, gpu: str = "", timeout: int = 120,
                   secret_env: dict[str, str] | None = None) -> ContainerSpec:
    return ContainerSpec(
        container_id=spec.container_id, task_id=spec.task_id, session_id=spec.session_id,
        owner_tag=OWNER, worker_spec=spec.to_dict(), cpu=0.5, memory_mb=512, gpu=gpu,
        timeout_seconds=timeout,
        paths=WorkerPaths(spec.volume_dir, spec.workspace_dir, spec.claude_config_dir,
                          tuple(spec.volume_sync_argv)),
        secret_env=dict(secret_env or {}))


async def start(backend: ModalBackend, local: LocalVolume, spec: WorkerSpec,
                **kwargs: Any) -> str:
    """What the dispatcher does: the spec into the local volume, pushed, then launch."""
    key = f"specs/{spec.container_id}.json"
    local.put(key, json.dumps(spec.to_dict()).encode())
    await backend.push(local, [key], session_id=spec.session_id)
    return await backend.launch(container_spec(spec, **kwargs))


async def follow(backend: ModalBackend, container_id: str, cursor: int = 0,
                 until: str = "worker_exited", timeout: float = 60,
                 ) -> tuple[list[dict[str, Any]], int]:
    """Read the channel until a record of type ``until``; return records and cursor."""
    records: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        batch = await backend.events(container_id, cursor)
        assert batch.cursor >= cursor
        cursor = batch.cursor
        records.extend(batch.records)
        if any(r["type"] == until for r in batch.records):
            return records, cursor
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {until} record; got {[r['type'] for r in records]}")


def seqs(records: list[dict[str, Any]]) -> list[int]:
    return [r["seq"] for r in records]
