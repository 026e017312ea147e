"""The worker as a real process against the fake agent (python -m modal_worker run SPEC)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from parhelia.checkpoint import BlobStore, load_manifest
from parhelia.spec import ChannelSpec, CheckpointPolicy, ExitCode, dump_spec, load_result
from parhelia.spool import append_control, read_spool
from parhelia.volume import LocalVolume
from tests.helpers.waiting import wait_for
from tests.helpers.worker import (
    log_text,
    make_spec,
    run_worker,
    script,
    spool,
    start_worker,
    types,
    worker_env,
)


def checkpoints(records: list[dict]) -> list[dict]:
    return [r["data"] for r in records if r["type"] == "checkpoint_created"]


def test_multi_turn_script_event_sequence(tmp_path: Path) -> None:
    prompt = script({"write": "a.txt", "content": "A"}, {"bash": "ls -la"}, {"turn": True},
                    {"write": "dir/b.txt", "content": "B"}, {"turn": True})
    spec = make_spec(tmp_path, prompt)
    assert run_worker(spec, tmp_path) == 0, log_text(tmp_path)
    records = spool(tmp_path)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    sequence = types(records)
    assert sequence[:5] == ["worker_started", "workspace_restored", "worker_isolation",
                            "checkpoint_created", "agent_started"]
    assert sequence[-2:] == ["checkpoint_created", "worker_exited"]
    assert [t for t in sequence[5:-2] if t != "checkpoint_created"] == [
        "agent_init",
        "agent_tool_use", "agent_tool_use", "agent_turn_completed",
        "agent_tool_use", "agent_turn_completed",
        "agent_message", "agent_turn_completed",
        "agent_result",
    ]
    by_type = {r["type"]: r["data"] for r in records}
    assert by_type["agent_init"]["agent_version"] == "2.1.332-fake"
    tools = [r["data"] for r in records if r["type"] == "agent_tool_use"]
    assert [(t["tool"], t["summary"]) for t in tools] == [
        ("Write", "a.txt"), ("Bash", "ls -la"), ("Write", "dir/b.txt")]
    result = by_type["agent_result"]
    # Three API messages, three tool results: the real CLI's num_turns is 1 + 3.
    assert result["subtype"] == "success" and result["turns"] == 4
    assert result["total_cost_usd"] > 0 and result["input_tokens"] == 300
    triggers = [c["trigger"] for c in checkpoints(records)]
    assert triggers[0] == "start" and triggers[-1] == "completion"
    assert set(triggers[1:-1]) <= {"turn"}  # turn checkpoints run while the agent goes on
    assert by_type["worker_exited"] == {
        "exit_code": 0, "status": "completed", "error_code": None, "error_message": None,
        "last_checkpoint_id": checkpoints(records)[-1]["checkpoint_id"]}
    volume = LocalVolume(tmp_path / "vol")
    final = load_manifest(volume, "s-1", checkpoints(records)[-1]["checkpoint_id"])
    assert {"a.txt", "dir/b.txt"} <= set(final.tree)
    assert f"{spec.agent.session_uuid}.jsonl" in final.conversation
    result_file = load_result(tmp_path / "vol" / "results" / "c-1.json")
    assert result_file.status == "completed" and result_file.agent is not None
    assert result_file.checkpoints == [c["checkpoint_id"] for c in checkpoints(records)]
    raw = (tmp_path / "vol" / "logs" / "c-1" / "agent.jsonl").read_text().splitlines()
    assert json.loads(raw[-1])["type"] == "result"


PROMPTS = [
    "quotes ' \" and $(rm -rf /) `id` ${HOME} \\n; | & > < * ?\nsecond line\n\ttab  ",
    "-starts with a dash --verbose",
]


@pytest.mark.parametrize("text", PROMPTS)
def test_prompt_reaches_the_agent_byte_for_byte(tmp_path: Path, text: str) -> None:
    prompt = script({"echo_prompt": "prompt.txt"}, {"turn": True}, text=text)
    spec = make_spec(tmp_path, prompt)
    assert run_worker(spec, tmp_path) == 0, log_text(tmp_path)
    assert (tmp_path / "ws" / "prompt.txt").read_bytes() == prompt.encode()


def test_missing_credentials_fail_fast_without_starting_the_agent(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, script({"turn": True}))
    env = worker_env()
    del env["ANTHROPIC_API_KEY"]
    env["CLAUDE_CODE_OAUTH_TOKEN"] = "  "
    started = time.monotonic()
    assert run_worker(spec, tmp_path, env) == ExitCode.NO_CREDENTIALS
    elapsed = time.monotonic() - started
    records = spool(tmp_path)
    assert types(records) == ["worker_started", "worker_exited"]
    exited = records[-1]["data"]
    assert exited["error_code"] == "E400" and "ANTHROPIC_API_KEY" in exited["error_message"]
    assert not (tmp_path / "vol" / "logs" / "c-1").exists()
    assert elapsed < 10  # generous for slow CI; typically ~0.2 s


def test_missing_agent_command_is_e500(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "hi", command=["no-such-claude-binary"])
    assert run_worker(spec, tmp_path) == ExitCode.AGENT_NOT_FOUND
    exited = spool(tmp_path)[-1]["data"]
    assert exited["error_code"] == "E500"
    assert "npm install -g @anthropic-ai/claude-code" in exited["error_message"]


def test_forever_is_stopped_by_max_turns(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, script({"forever": True}), max_turns=4)
    assert run_worker(spec, tmp_path) == ExitCode.FAILED
    records = spool(tmp_path)
    result = next(r["data"] for r in records if r["type"] == "agent_result")
    assert result["subtype"] == "error_max_turns" and result["is_error"]
    assert "agent_error" in types(records)
    assert checkpoints(records)[-1]["trigger"] == "error"


def test_agent_failure_is_reported(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, script({"write": "x", "content": "1"}, {"turn": True},
                                      {"fail": "compiler exploded"}))
    assert run_worker(spec, tmp_path) == ExitCode.FAILED
    exited = spool(tmp_path)[-1]["data"]
    assert exited["status"] == "failed"
    assert "error_during_execution" in exited["error_message"]
    assert "compiler exploded" in exited["error_message"]


def _agent_pid(base: Path) -> int:
    return next(r["data"]["pid"] for r in spool(base) if r["type"] == "agent_started")


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_timeout_kills_the_agent_and_exits_124_after_checkpointing(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, script({"write": "a", "content": "1"}, {"turn": True},
                                      {"sleep": 60}), timeout_seconds=1.5)
    assert run_worker(spec, tmp_path) == ExitCode.TIMEOUT
    records = spool(tmp_path)
    assert types(records)[-3:] == ["agent_error", "checkpoint_created", "worker_exited"]
    assert checkpoints(records)[-1]["trigger"] == "timeout"
    assert records[-1]["data"]["error_code"] == "E501"
    assert records[-1]["data"]["status"] == "timeout"
    assert _gone(_agent_pid(tmp_path))


def test_sigterm_checkpoints_then_exits_143(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, script({"write": "a.txt", "content": "A"}, {"turn": True},
                                      {"sleep": 60}))
    proc = start_worker(spec, tmp_path)
    try:
        wait_for(lambda: "agent_turn_completed" in types(spool(tmp_path)))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == ExitCode.TERMINATED
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    records = spool(tmp_path)
    last = checkpoints(records)[-1]
    assert last["trigger"] == "sigterm"
    manifest = load_manifest(LocalVolume(tmp_path / "vol"), "s-1", last["checkpoint_id"])
    assert "a.txt" in manifest.tree
    assert records[-1]["data"]["status"] == "stopped"
    assert _gone(_agent_pid(tmp_path))


def test_control_checkpoint_and_stop(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, script({"write": "a.txt", "content": "A"}, {"turn": True},
                                      {"sleep": 60}))
    proc = start_worker(spec, tmp_path)
    volume = LocalVolume(tmp_path / "vol")
    try:
        wait_for(lambda: "agent_turn_completed" in types(spool(tmp_path)))
        append_control(volume, "c-1", {"type": "checkpoint", "message": "before refactor"})
        proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: any(c["trigger"] == "manual" for c in checkpoints(spool(tmp_path))))
        append_control(volume, "c-1", {"type": "stop", "reason": "pause"})
        assert proc.wait(30) == ExitCode.STOPPED
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    cps = checkpoints(spool(tmp_path))
    manual = [c for c in cps if c["trigger"] == "manual"]
    assert len(manual) == 1 and manual[0]["message"] == "before refactor"
    assert cps[-1]["trigger"] == "stop"
    assert spool(tmp_path)[-1]["data"]["status"] == "stopped"


def test_interval_checkpoints(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, script({"sleep": 1.6}, {"write": "x", "content": "1"}),
                     policy=CheckpointPolicy(interval_seconds=0.5))
    assert run_worker(spec, tmp_path) == 0
    triggers = [c["trigger"] for c in checkpoints(spool(tmp_path))]
    assert triggers.count("interval") >= 2


def test_every_completed_turn_is_checkpointed_with_its_conversation(tmp_path: Path) -> None:
    """No minimum spacing: each turn (a few tenths of a second apart) gets a checkpoint
    that pairs the turn's file with the transcript holding the turn's tool result."""
    steps: list[dict] = []
    for i in range(5):
        steps += [{"write": f"f{i}", "content": str(i)}, {"turn": True}, {"sleep": 0.4}]
    spec = make_spec(tmp_path, script(*steps),
                     policy=CheckpointPolicy(interval_seconds=300))
    assert run_worker(spec, tmp_path) == 0, log_text(tmp_path)
    cps = checkpoints(spool(tmp_path))
    turns = [c for c in cps if c["trigger"] == "turn"]
    assert len(turns) >= 5, [c["trigger"] for c in cps]  # (+ the final answer's turn)
    volume = LocalVolume(tmp_path / "vol")
    for i, cp in enumerate(turns[:5]):
        manifest = load_manifest(volume, "s-1", cp["checkpoint_id"])
        assert f"f{i}" in manifest.tree and f"f{i + 1}" not in manifest.tree
        name = next(p for p in manifest.conversation if p.endswith(".jsonl"))
        transcript = manifest.conversation[name].read(BlobStore(volume)).decode()
        steps_done = [json.loads(line).get("fake_step") for line in transcript.splitlines()]
        assert 3 * i in steps_done  # the write of turn i reached the checkpointed transcript


def test_turns_ending_during_a_checkpoint_are_coalesced(tmp_path: Path) -> None:
    """Turns faster than checkpoints: never more turn checkpoints than turns, one at a
    time, and the last one before completion holds every turn."""
    steps: list[dict] = []
    for i in range(30):
        steps += [{"write": f"f{i}", "content": str(i)}, {"turn": True}]
    spec = make_spec(tmp_path, script(*steps), max_turns=40)
    assert run_worker(spec, tmp_path) == 0, log_text(tmp_path)
    cps = checkpoints(spool(tmp_path))
    turns = [c for c in cps if c["trigger"] == "turn"]
    assert 1 <= len(turns) <= 30
    parents = [c["parent_id"] for c in cps]
    assert parents[1:] == [c["checkpoint_id"] for c in cps[:-1]]  # a chain: never concurrent


def test_resume_restores_workspace_and_conversation_into_a_fresh_config_dir(
        tmp_path: Path) -> None:
    first = make_spec(tmp_path, script({"write": "a.txt", "content": "A"}, {"turn": True},
                                       {"write": "b.txt", "content": "B"}, {"turn": True}))
    assert run_worker(first, tmp_path) == 0, log_text(tmp_path)
    last = checkpoints(spool(tmp_path))[-1]["checkpoint_id"]
    shutil.rmtree(tmp_path / "ws")
    shutil.rmtree(tmp_path / "claude")
    second = make_spec(tmp_path, "please continue", container_id="c-2",
                       session_uuid=first.agent.session_uuid, resume=True,
                       restore_checkpoint_id=last, config=tmp_path / "claude-2")
    assert run_worker(second, tmp_path) == 0, log_text(tmp_path, "c-2")
    records = spool(tmp_path, "c-2")
    restored = next(r["data"] for r in records if r["type"] == "workspace_restored")
    assert restored["checkpoint_id"] == last and restored["conversation_files"] == 1
    earlier = int((tmp_path / "ws" / ".fake_agent_resumed").read_text())
    assert earlier == 6  # prompt, 2 tool uses, 2 results, final text of the first run
    result = next(r["data"] for r in records if r["type"] == "agent_result")
    assert f"Resumed with {earlier} earlier messages" in result["text"]
    assert (tmp_path / "ws" / "a.txt").read_text() == "A"
    assert checkpoints(records)[0]["parent_id"] == last


def test_unknown_checkpoint_exits_5(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "hi", restore_checkpoint_id="cp-00000000deadbeef")
    assert run_worker(spec, tmp_path) == ExitCode.RESTORE_FAILED
    exited = spool(tmp_path)[-1]["data"]
    assert exited["error_code"] == "E202"
    assert load_result(tmp_path / "vol" / "results" / "c-1.json").exit_code == 5


def test_invalid_spec_exits_2_with_a_result(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "hi")
    spec_path = tmp_path / "vol" / "specs" / "c-1.json"
    spec_path.parent.mkdir(parents=True)
    raw = spec.to_dict()
    raw["agent"]["permission_mode"] = "yolo"
    spec_path.write_text(json.dumps(raw))
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "modal_worker", "run", str(spec_path)],
                          env=worker_env(), capture_output=True, text=True, timeout=30)
    assert proc.returncode == ExitCode.INVALID_SPEC
    assert "permission_mode" in proc.stderr
    result = load_result(tmp_path / "vol" / "results" / "c-1.json")
    assert result.error_code == "E100" and result.status == "failed"
    assert spool(tmp_path)[-1]["data"]["error_code"] == "E100"


def test_heartbeats_flow(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, script({"sleep": 1.2}, {"write": "x", "content": "1"}),
                     heartbeat=0.3)
    assert run_worker(spec, tmp_path) == 0
    beats = [r["data"] for r in spool(tmp_path) if r["type"] == "heartbeat"]
    assert len(beats) >= 2
    assert set(beats[0]) >= {"cpu_percent", "memory_bytes", "disk_bytes", "agent_alive",
                             "turns", "input_tokens", "output_tokens", "cost_usd"}
    assert any(b["agent_alive"] for b in beats)
    assert beats[0]["memory_bytes"] > 0


def test_channel_control_and_volume_sync_come_from_the_spec(tmp_path: Path) -> None:
    """A backend whose daemon side sees the volume only after a sync (Modal: ``sync
    /vol``): the worker runs the spec's sync command after each checkpoint, before the
    checkpoint is announced, and after its result; its channel and control files are the
    spec's; ``python -m modal_worker control`` delivers a stop."""
    marker = tmp_path / "syncs.log"
    syncer = tmp_path / "fake-sync"
    syncer.write_text("#!/bin/sh\n"
                      f"n=$(grep -c checkpoint_created {tmp_path}/vol/chan/out.jsonl "
                      "2>/dev/null)\n"
                      f"echo \"${{n:-0}} $(ls {tmp_path}/vol/results 2>/dev/null | wc -l)\" "
                      f">> {marker}\n")
    syncer.chmod(0o755)
    spec = make_spec(tmp_path, script({"write": "a.txt", "content": "A"}, {"turn": True},
                                      {"sleep": 60}))
    spec.channel = ChannelSpec(spool_key="chan/out.jsonl", control_key="chan/in.jsonl")
    spec.volume_sync_argv = [str(syncer)]
    proc = start_worker(spec, tmp_path)
    out = tmp_path / "vol" / "chan" / "out.jsonl"
    try:
        wait_for(lambda: out.exists() and b"agent_turn_completed" in out.read_bytes())
        spec_path = tmp_path / "vol" / "specs" / "c-1.json"
        done = subprocess.run([sys.executable, "-m", "modal_worker", "control", str(spec_path),
                               json.dumps({"type": "stop", "reason": "pause"})],
                              env=worker_env(), capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert proc.wait(30) == ExitCode.STOPPED
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not (tmp_path / "vol" / "spool").exists()  # nothing on the default spool
    assert (tmp_path / "vol" / "chan" / "in.jsonl").exists()
    records, _ = read_spool(out)
    announced = [r for r in records if r["type"] == "checkpoint_created"]
    lines = marker.read_text().split("\n")[:-1]
    # One sync per checkpoint, each before its announcement; one more after the result.
    assert [line.split()[0] for line in lines] == [str(i) for i in range(len(announced) + 1)]
    assert lines[-1].split()[1] == "1" and all(ln.split()[1] == "0" for ln in lines[:-1])


def test_control_subcommand_refuses_a_bad_message(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "x")
    spec_path = tmp_path / "vol" / "specs" / "c-1.json"
    dump_spec(spec, spec_path)
    done = subprocess.run([sys.executable, "-m", "modal_worker", "control", str(spec_path),
                           json.dumps({"type": "rm -rf"})], env=worker_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown control type" in done.stderr
    assert not (tmp_path / "vol" / "control").exists()
