"""Shared helpers for the worker tests: tree fingerprints, specs, running workers."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from parhelia.spec import AgentSpec, CheckpointPolicy, WorkerSpec, dump_spec
from parhelia.spool import read_spool
from tests.helpers.paths import REPO

FAKE_AGENT_DIR = REPO / "tests" / "fake_agent"


def tree_state(root: Path) -> dict[str, tuple[Any, ...]]:
    """Path -> (type, mode, content | target) for everything under ``root``."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), path.read_bytes())
    return out


def worker_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")}
    env["PATH"] = f"{FAKE_AGENT_DIR}{os.pathsep}{env.get('PATH', os.defpath)}"
    env["FAKE_CLAUDE_PYTHON"] = sys.executable
    env["ANTHROPIC_API_KEY"] = "sk-ant-test-not-a-real-key"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "proto")])
    env.update(extra)
    return env


def make_spec(base: Path, prompt: str, *, container_id: str = "c-1", session_id: str = "s-1",
              session_uuid: str | None = None, **agent: Any) -> WorkerSpec:
    policy = agent.pop("policy", CheckpointPolicy(interval_seconds=300))
    restore = agent.pop("restore_checkpoint_id", None)
    workspace = agent.pop("workspace", base / "ws")
    config = agent.pop("config", base / "claude")
    heartbeat = agent.pop("heartbeat", 60)
    agent.setdefault("max_turns", 20)
    agent.setdefault("timeout_seconds", 60)
    spec = WorkerSpec(
        container_id=container_id, task_id="t-1", session_id=session_id,
        volume_dir=str(base / "vol"), workspace_dir=str(workspace),
        claude_config_dir=str(config), prompt=prompt,
        agent=AgentSpec(session_uuid=session_uuid or str(uuid.uuid4()), **agent),
        checkpoint=policy, heartbeat_interval_seconds=heartbeat,
        restore_checkpoint_id=restore,
    )
    return spec


def script(*steps: dict[str, Any], text: str = "do the thing") -> str:
    return f"{text}\nFAKE_SCRIPT: {json.dumps(list(steps))}"


def start_worker(spec: WorkerSpec, base: Path, env: dict[str, str] | None = None
                 ) -> subprocess.Popen[bytes]:
    spec_path = base / "vol" / "specs" / f"{spec.container_id}.json"
    dump_spec(spec, spec_path)
    Path(spec.workspace_dir).mkdir(parents=True, exist_ok=True)
    log = open(base / f"{spec.container_id}.log", "ab")  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "modal_worker", "run", str(spec_path)],
        cwd=spec.workspace_dir, env=env or worker_env(), stdout=log, stderr=log,
        start_new_session=True,
    )


def run_worker(spec: WorkerSpec, base: Path, env: dict[str, str] | None = None,
               timeout: float = 60) -> int:
    proc = start_worker(spec, base, env)
    try:
        return proc.wait(timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def spool(base: Path, container_id: str = "c-1") -> list[dict[str, Any]]:
    records, _ = read_spool(base / "vol" / "spool" / f"{container_id}.jsonl")
    return records


def types(records: list[dict[str, Any]], *, heartbeats: bool = False) -> list[str]:
    return [r["type"] for r in records if heartbeats or r["type"] != "heartbeat"]




def log_text(base: Path, container_id: str = "c-1") -> str:
    path = base / f"{container_id}.log"
    return path.read_text(errors="replace") if path.exists() else ""
