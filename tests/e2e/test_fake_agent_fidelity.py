"""The fake agent (tests/fake_agent) against the REAL pinned CLI, where Parhelia reads it.

Both run the same conversation - one reply with two parallel Bash calls, then a text
reply - the real CLI driven by the fake Messages API, the fake agent by its script; the
same checks run on both streams: per-line usage (``output_tokens: 1`` on assistant lines,
the billed count in ``message_delta``), ``num_turns``, the missing-credentials result and
the session cost kept in the transcript across ``--resume``. A drift of either side fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.claude_env import (
    ClaudeDirs,
    ClaudeRun,
    claude_argv,
    claude_env,
    parse_stream,
    run_claude,
    transcript_path,
)
from tests.fake_anthropic import FakeAnthropic, reply, tool_use
from tests.helpers.paths import FAKE_AGENT

PARTIAL = ["--include-partial-messages"]

pytestmark = [pytest.mark.claude, pytest.mark.timeout(180)]


def _real(claude_bin: Path, fake: FakeAnthropic, dirs: ClaudeDirs, sid: str, *,
          resume: bool = False, api_key: str | None = "test-key") -> ClaudeRun:
    env = claude_env(fake.url, config_dir=dirs.config, home=dirs.home, api_key=api_key,
                     max_retries=0)
    argv = claude_argv(claude_bin, "Run two commands", session_id=sid, resume=resume,
                       extra=["--allowedTools", "Bash", *PARTIAL])
    return run_claude(argv, env=env, cwd=dirs.cwd, timeout=60)


def _fake(dirs: ClaudeDirs, sid: str, *, resume: bool = False,
          api_key: str | None = "test-key") -> ClaudeRun:
    script = [{"bash": "echo a"}, {"bash": "echo b"}, {"turn": True}]
    prompt = "Run two commands\nFAKE_SCRIPT: " + json.dumps(script)
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(dirs.home),
           "CLAUDE_CONFIG_DIR": str(dirs.config)}
    if api_key:
        env["ANTHROPIC_API_KEY"] = api_key
    argv = claude_argv(FAKE_AGENT, prompt, session_id=sid, resume=resume, extra=PARTIAL)
    proc = subprocess.run(argv, env=env, cwd=dirs.cwd, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, check=False)
    events, other = parse_stream(proc.stdout)
    return ClaudeRun(proc.returncode, events, proc.stdout, proc.stderr, other)


def _usage_shape(run: ClaudeRun) -> dict[str, Any]:
    """What Parhelia reads of a run, in a form both sides must share."""
    per_line_output = {e["message"]["usage"]["output_tokens"] for e in run.of_type("assistant")}
    order: list[str] = []
    delta_outputs: list[int] = []
    for e in run.events:
        if e.get("type") == "stream_event" and e["event"]["type"] in ("message_start",
                                                                       "message_delta"):
            order.append(e["event"]["type"])
            if e["event"]["type"] == "message_delta":
                delta_outputs.append(e["event"]["usage"]["output_tokens"])
        elif e.get("type") == "assistant":
            order.append("assistant")
        elif e.get("type") == "user":
            order.append("tool_result")
        elif e.get("type") == "result":
            order.append("result")
    collapsed = [k for i, k in enumerate(order) if i == 0 or order[i - 1] != k]
    result = run.result or {}
    return {
        "returncode": run.returncode,
        "per_line_output_tokens": per_line_output,
        "order": collapsed,
        "billed_output_in_deltas": sum(delta_outputs) == result.get("usage", {}).get(
            "output_tokens"),
        "num_turns": result.get("num_turns"),
        "subtype": result.get("subtype"),
        "is_error": result.get("is_error"),
    }


def test_the_fake_agent_reports_usage_and_turns_as_the_real_cli(
        claude_bin: Path, fake_anthropic: FakeAnthropic, claude_dirs: ClaudeDirs,
        tmp_path: Path) -> None:
    fake_anthropic.set_script([
        reply(tool_use("Bash", {"command": "echo a"}), tool_use("Bash", {"command": "echo b"}),
              output_tokens=500),
        reply("Done.", output_tokens=300)])
    real = _real(claude_bin, fake_anthropic, claude_dirs, str(uuid.uuid4()))
    fake_dirs = ClaudeDirs(tmp_path / "fh", tmp_path / "fc", tmp_path / "fw")
    for d in (fake_dirs.home, fake_dirs.config, fake_dirs.cwd):
        d.mkdir()
    fake = _fake(fake_dirs, str(uuid.uuid4()))
    real_shape, fake_shape = _usage_shape(real), _usage_shape(fake)
    assert real_shape == fake_shape, (real.describe(), fake.describe())
    assert real_shape["per_line_output_tokens"] == {1}
    assert real_shape["num_turns"] == 3
    assert real_shape["order"] == ["message_start", "assistant", "message_delta",
                                   "tool_result", "message_start", "assistant",
                                   "message_delta", "result"]


def test_the_fake_agent_fails_without_credentials_as_the_real_cli(
        claude_bin: Path, fake_anthropic: FakeAnthropic, claude_dirs: ClaudeDirs,
        tmp_path: Path) -> None:
    real = _real(claude_bin, fake_anthropic, claude_dirs, str(uuid.uuid4()), api_key=None)
    fake_dirs = ClaudeDirs(tmp_path / "fh", tmp_path / "fc", tmp_path / "fw")
    for d in (fake_dirs.home, fake_dirs.config, fake_dirs.cwd):
        d.mkdir()
    fake = _fake(fake_dirs, str(uuid.uuid4()), api_key=None)
    assert not fake_anthropic.message_requests

    def shape(run: ClaudeRun) -> tuple[Any, ...]:
        r = run.result or {}
        texts = [b.get("text") for b in run.content_blocks("assistant", "text")]
        return (run.returncode, r.get("subtype"), r.get("is_error"), r.get("num_turns"),
                r.get("total_cost_usd"), r.get("terminal_reason"), r.get("result"), texts)

    assert shape(real) == shape(fake), (real.describe(), fake.describe())
    assert shape(real)[:3] == (1, "success", True)


def test_a_resumed_session_reports_the_cost_of_the_whole_session(
        claude_bin: Path, fake_anthropic: FakeAnthropic, claude_dirs: ClaudeDirs,
        tmp_path: Path) -> None:
    """Both: a cost-state line in the transcript at exit; the resumed run's total_cost_usd
    includes the first run's cost while its usage is its own."""
    fake_dirs = ClaudeDirs(tmp_path / "fh", tmp_path / "fc", tmp_path / "fw")
    for d in (fake_dirs.home, fake_dirs.config, fake_dirs.cwd):
        d.mkdir()
    for name, first, second in (
            ("real", lambda sid: _real(claude_bin, fake_anthropic, claude_dirs, sid),
             lambda sid: _real(claude_bin, fake_anthropic, claude_dirs, sid, resume=True)),
            ("fake", lambda sid: _fake(fake_dirs, sid),
             lambda sid: _fake(fake_dirs, sid, resume=True))):
        sid = str(uuid.uuid4())
        run1 = first(sid)
        run2 = second(sid)
        assert run1.returncode == 0 and run2.returncode == 0, (name, run2.describe())
        r1, r2 = run1.result or {}, run2.result or {}
        dirs = claude_dirs if name == "real" else fake_dirs
        states = [json.loads(line) for line in transcript_path(
            dirs.config, dirs.cwd, sid).read_text().splitlines() if '"cost-state"' in line]
        assert [s["totalCostUSD"] for s in states] == [r1["total_cost_usd"],
                                                       r2["total_cost_usd"]], name
        assert r2["total_cost_usd"] > r1["total_cost_usd"] > 0, name
        own = r2["total_cost_usd"] - r1["total_cost_usd"]
        assert own < r1["total_cost_usd"] * 3, name  # not a second full session
