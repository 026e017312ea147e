"""The REAL Claude Code CLI reads the prompt from stdin when Parhelia's argv has none.

Parhelia never puts the prompt on the agent's command line (other local users can read
it; the OS limits its size): ``modal_worker.agent.build_argv`` has no prompt argument and
``AgentProcess`` feeds the prompt on stdin. This pins that the pinned CLI accepts it,
for a first run and a resume, a 1 MB prompt and one that starts with ``-``.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from modal_worker.agent import AgentProcess, build_argv
from parhelia.spec import AgentSpec
from tests.e2e.claude_env import ClaudeDirs, claude_env
from tests.fake_anthropic import FakeAnthropic, reply

pytestmark = [pytest.mark.claude, pytest.mark.timeout(180)]


def _run(claude_bin: Path, fake: FakeAnthropic, dirs: ClaudeDirs, prompt: str,
         agent: AgentSpec) -> list[dict[str, object]]:
    lines: list[dict[str, object]] = []
    proc = AgentProcess(build_argv(agent, [str(claude_bin)]), cwd=dirs.cwd,
                        env=claude_env(fake.url, config_dir=dirs.config, home=dirs.home),
                        raw_log=dirs.home / "raw.jsonl", on_object=lines.append, prompt=prompt)
    proc.start()
    assert proc.proc is not None
    proc.proc.wait(120)
    proc.join_output()
    assert proc.returncode == 0, json.dumps(lines)[-2000:] + " | ".join(proc.stderr_tail)
    return lines


def test_prompt_on_stdin_first_run_resume_and_one_megabyte(
        claude_bin: Path, fake_anthropic: FakeAnthropic, claude_dirs: ClaudeDirs) -> None:
    fake_anthropic.set_script([reply("first"), reply("second")])
    agent = AgentSpec(session_uuid=str(uuid.uuid4()), permission_mode="acceptEdits",
                      max_turns=3)
    big = "--looks-like-an-option MARKER-ONE " + "a" * 1_000_000
    lines = _run(claude_bin, fake_anthropic, claude_dirs, big, agent)
    assert any(x.get("type") == "result" for x in lines)
    first = fake_anthropic.main_requests[-1].messages_text()
    assert "MARKER-ONE" in first and "--looks-like-an-option" in first
    assert len(first) >= 1_000_000
    agent.resume = True
    _run(claude_bin, fake_anthropic, claude_dirs, "MARKER-TWO go on", agent)
    second = fake_anthropic.main_requests[-1].messages_text()
    assert "MARKER-TWO" in second and "MARKER-ONE" in second  # the resumed conversation
