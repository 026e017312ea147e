"""A kill at any moment is safe: a seeded run SIGKILLs the worker of one multi-turn task 20
times at random moments (during turns, checkpoint writes, start-up restores); the task
still completes, no turn the agent had finished is done again, and every checkpoint the
daemon would list verifies.

The daemon's part is played here as it plays it (parheliad.core.dispatcher): a checkpoint
is listed when its ``checkpoint_created`` record is in the spool; the next worker restores
the latest listed one, resuming the conversation when that checkpoint holds one. Every
fifth incarnation the machine is lost (workspace and config dir deleted, as a Modal
sandbox's), so the next worker must restore from the checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from parhelia.checkpoint import BlobStore, load_manifest, project_dir, verify
from parhelia.checkpoint.lineage import lineage_path
from parhelia.checkpoint.statcache import stat_cache_path
from parhelia.prompts import continuation_prompt
from parhelia.spec import load_result
from parhelia.volume import LocalVolume
from tests.helpers.worker import log_text, make_spec, script, spool, start_worker

SEED = 20261130
KILLS = 20
TURNS = 30
STEP = 3  # write, turn, sleep: the write of turn i is script step 3 * i


def _steps() -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    for i in range(TURNS):
        steps += [{"write": f"out/s{i:02d}.txt", "content": f"turn {i}\n" * 20_000},
                  {"turn": True}, {"sleep": 0.3}]
    return steps


def _listed(base: Path, containers: list[str]) -> list[dict[str, Any]]:
    return [r["data"] for c in containers for r in spool(base, c)
            if r["type"] == "checkpoint_created"]


def _steps_in(transcript: bytes) -> set[int]:
    """Script steps whose tool results are in a transcript (the fake agent's marks)."""
    done = set()
    for line in transcript.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("type") == "user" and isinstance(entry.get("fake_step"), int):
            done.add(entry["fake_step"])
    return done


def _wait_gone(pid: int | None, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while pid is not None and time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().split(") ", 1)[1].startswith("Z"):
                    return
        except (FileNotFoundError, IndexError):
            return
        time.sleep(0.01)


def test_twenty_random_kills_lose_no_finished_turn(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    volume = LocalVolume(tmp_path / "vol")
    workspace, config = tmp_path / "ws", tmp_path / "claude"
    workspace.mkdir()
    for i in range(300):  # something for checkpoints to walk
        (workspace / f"src{i % 10}").mkdir(exist_ok=True)
        (workspace / f"src{i % 10}" / f"f{i}.py").write_text(f"x = {i}\n" * 50)
    task_prompt = script(*_steps(), text="MARKER-TASK")
    first = make_spec(tmp_path, task_prompt, max_turns=100, timeout_seconds=120)
    uuid = first.agent.session_uuid
    containers: list[str] = []
    # After each kill: [first container after it, first container it no longer binds (a lost
    # machine takes what only its disk held), the last step done]
    durable: list[list[Any]] = []
    moments: list[str] = []

    for n in range(KILLS + 1):
        listed = _listed(tmp_path, containers)
        latest = listed[-1]["checkpoint_id"] if listed else None
        has_conv = bool(latest and load_manifest(volume, "s-1", latest).conversation)
        spec = dataclasses.replace(
            first, container_id=f"c-{n + 1}", incarnation=n + 1,
            restore_checkpoint_id=latest, task_prompt=task_prompt,
            prompt=continuation_prompt(latest, "killed") if has_conv else task_prompt,
            agent=dataclasses.replace(first.agent, resume=has_conv))
        containers.append(spec.container_id)
        proc = start_worker(spec, tmp_path)
        if n == KILLS:
            assert proc.wait(120) == 0, log_text(tmp_path, spec.container_id)
            break
        # A random moment: often early (start-up: restore or salvage, the start
        # checkpoint), else anywhere in the turns and their checkpoints.
        delay = rng.uniform(0.1, 0.8) if rng.random() < 0.4 else rng.uniform(0.8, 1.6)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        records = spool(tmp_path, spec.container_id)
        agents = [r["data"]["pid"] for r in records if r["type"] == "agent_started"]
        _wait_gone(agents[-1] if agents else None)
        kinds = [r["type"] for r in records if r["type"] not in ("heartbeat", "agent_message")]
        moments.append(kinds[-1] if kinds else "start-up")
        lost = n % 5 == 4
        if lost:  # the machine is gone: only the listed checkpoints remain
            for claim in durable:
                claim[1] = claim[1] or n + 1
            for path in (workspace, config):
                shutil.rmtree(path, ignore_errors=True)
            for path in (lineage_path(workspace), stat_cache_path(workspace)):
                path.unlink(missing_ok=True)
            listed = _listed(tmp_path, containers)
            done: set[int] = set()
            if listed:
                manifest = load_manifest(volume, "s-1", listed[-1]["checkpoint_id"])
                ref = manifest.conversation.get(f"{uuid}.jsonl")
                if ref is not None:
                    done = _steps_in(ref.read(BlobStore(volume)))
        else:  # what the agent had written down when it died
            transcript = project_dir(config, workspace) / f"{uuid}.jsonl"
            done = _steps_in(transcript.read_bytes()) if transcript.exists() else set()
        durable.append([n + 1, None, max(done, default=-1)])

    result = load_result(tmp_path / "vol" / "results" / f"{containers[-1]}.json")
    assert result.status == "completed"
    for i in range(TURNS):
        assert (workspace / "out" / f"s{i:02d}.txt").read_text() == f"turn {i}\n" * 20_000
    # No finished turn redone: after a kill, no later worker's agent writes a file whose
    # turn was already in the conversation that survived the kill.
    for start, end, done_step in durable:
        for c in containers[start:end]:
            redone = [r["data"]["summary"] for r in spool(tmp_path, c)
                      if r["type"] == "agent_tool_use"
                      and int(r["data"]["summary"].split("/s")[-1][:2]) * STEP <= done_step]
            assert not redone, (start, done_step, c, redone, moments)
    for c in containers:
        assert not [r for r in spool(tmp_path, c) if r["type"] == "resume_degraded"], c
    # Every checkpoint the daemon would list verifies.
    listed_ids = [d["checkpoint_id"] for d in _listed(tmp_path, containers)]
    assert len(listed_ids) >= KILLS
    for cp in listed_ids:
        report = verify(load_manifest(volume, "s-1", cp), volume=volume)
        assert report.ok, (cp, report)
    # The kills landed in different phases, and mostly before the task was done.
    assert len(set(moments)) >= 3, moments
    assert moments.count("worker_exited") <= 2, moments
    assert os.path.isdir(workspace)
