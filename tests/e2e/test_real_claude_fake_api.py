"""The REAL Claude Code CLI (pinned, .ci/claude-version) against the local fake Anthropic API.

No Parhelia code is involved: these tests pin down the CLI behaviour Parhelia relies on
(stream-json shape, transcripts and resume, where CLAUDE.md goes, how a 401 is retried).
Findings are recorded in docs/adr/0004-real-claude-e2e.md.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.e2e.claude_env import (
    TEST_API_KEY,
    ClaudeDirs,
    ClaudeRun,
    claude_argv,
    claude_env,
    parse_stream,
    run_claude,
    transcript_path,
)
from tests.fake_anthropic import FakeAnthropic, reply, tool_use

pytestmark = [pytest.mark.claude, pytest.mark.timeout(120)]

RUN_TIMEOUT = 60  # seconds, per CLI run (a healthy run takes about a second)


def _write_script(cwd: Path, name: str, content: str) -> list:
    return [
        reply(
            "I'll create the file.",
            tool_use("Write", {"file_path": str(cwd / name), "content": content}),
        ),
        reply("Created the file."),
    ]


def _run(
    claude_bin: Path,
    fake: FakeAnthropic,
    dirs: ClaudeDirs,
    prompt: str,
    session_id: str,
    *,
    config: Path | None = None,
    resume: bool = False,
    max_turns: int = 5,
    **env_kw: object,
) -> ClaudeRun:
    env = claude_env(
        fake.url,
        config_dir=config or dirs.config,
        home=dirs.home,
        **env_kw,  # type: ignore[arg-type]
    )
    argv = claude_argv(
        claude_bin, prompt, session_id=session_id, resume=resume, max_turns=max_turns
    )
    return run_claude(argv, env=env, cwd=dirs.cwd, timeout=RUN_TIMEOUT)


# ---------------------------------------------------------------------------------------------
# (a) a tool call that writes a file, then end_turn


def test_write_tool_creates_file_and_stream_has_expected_shape(
    claude_bin: Path, fake_anthropic: FakeAnthropic, claude_dirs: ClaudeDirs
) -> None:
    fake_anthropic.set_script(_write_script(claude_dirs.cwd, "hello.txt", "hello from fake\n"))
    sid = str(uuid.uuid4())
    run = _run(claude_bin, fake_anthropic, claude_dirs, "Create hello.txt please", sid)

    assert run.returncode == 0, run.describe() + "\n" + fake_anthropic.summary()
    assert (claude_dirs.cwd / "hello.txt").read_text() == "hello from fake\n"
    assert not run.non_json_lines, run.non_json_lines

    init = run.init
    assert init is not None, run.describe()
    assert init["session_id"] == sid
    assert init["cwd"] == str(claude_dirs.cwd)
    assert init["permissionMode"] == "acceptEdits"
    assert "Write" in init["tools"]
    assert init["apiKeySource"] == "ANTHROPIC_API_KEY"

    uses = run.content_blocks("assistant", "tool_use")
    assert [u["name"] for u in uses] == ["Write"]
    results = run.content_blocks("user", "tool_result")
    assert [r["tool_use_id"] for r in results] == [uses[0]["id"]]
    assert not results[0].get("is_error")

    result = run.result
    assert result is not None, run.describe()
    assert result["subtype"] == "success"
    assert result["is_error"] is False
    assert result["session_id"] == sid
    assert result["num_turns"] == 2
    assert result["result"] == "Created the file."
    assert result["usage"]["input_tokens"] > 0 and result["usage"]["output_tokens"] > 0
    assert result["total_cost_usd"] > 0
    assert result["permission_denials"] == []

    # The fake saw two agent-loop requests and the key, and the second carried the tool result.
    main = fake_anthropic.main_requests
    assert len(main) == 2, fake_anthropic.summary()
    assert all(r.api_key_is(TEST_API_KEY) for r in main)
    assert all(r.json.get("stream") is True for r in main)
    assert "Write" in main[0].tool_names
    last = main[1].last_user_content()
    assert any(
        b.get("type") == "tool_result" and b.get("tool_use_id") == uses[0]["id"] for b in last
    ), last
    assert fake_anthropic.remaining_replies == 0
    # With CLAUDE_CONFIG_DIR set nothing is written to HOME, and no side request was made.
    assert list(claude_dirs.home.iterdir()) == []
    assert fake_anthropic.requests_of("side", "count_tokens", "hello", "other") == []


# ---------------------------------------------------------------------------------------------
# (b) transcript location and resume from a fresh config dir


def test_transcript_location_and_resume_in_fresh_config_dir(
    claude_bin: Path, fake_anthropic: FakeAnthropic, claude_dirs: ClaudeDirs
) -> None:
    first_prompt = f"First prompt {uuid.uuid4().hex[:8]}: create a.txt"
    fake_anthropic.set_script(_write_script(claude_dirs.cwd, "a.txt", "A\n"))
    sid = str(uuid.uuid4())
    run1 = _run(claude_bin, fake_anthropic, claude_dirs, first_prompt, sid)
    assert run1.returncode == 0, run1.describe()

    transcript = transcript_path(claude_dirs.config, claude_dirs.cwd, sid)
    assert transcript.is_file(), sorted(p.name for p in claude_dirs.config.rglob("*"))
    assert transcript.stat().st_mode & 0o777 == 0o600
    entries = [json.loads(line) for line in transcript.read_text().splitlines() if line]
    assert any(e.get("sessionId") == sid for e in entries)
    assert first_prompt in transcript.read_text()

    # A new incarnation: an empty config dir holding only the restored transcript.
    config2 = claude_dirs.fresh_config("cfg2")
    restored = transcript_path(config2, claude_dirs.cwd, sid)
    restored.parent.mkdir(parents=True)
    shutil.copy2(transcript, restored)

    fake_anthropic.clear_requests()
    fake_anthropic.set_script([reply("Resumed and done.")])
    second_prompt = "Second prompt: carry on"
    run2 = _run(
        claude_bin, fake_anthropic, claude_dirs, second_prompt, sid, config=config2, resume=True
    )
    assert run2.returncode == 0, run2.describe() + "\n" + fake_anthropic.summary()
    assert run2.result is not None and run2.result["subtype"] == "success"
    assert run2.result["session_id"] == sid  # --resume without --fork-session keeps the id

    first = fake_anthropic.main_requests[0]
    text = first.messages_text()
    assert first_prompt in text, text[-3000:]
    assert second_prompt in text
    assert text.index(first_prompt) < text.index(second_prompt)
    roles = [m.get("role") for m in first.messages]
    assert "assistant" in roles  # the earlier assistant turn (with its tool_use) is replayed
    replayed = [
        b
        for m in first.messages
        if m.get("role") == "assistant" and isinstance(m.get("content"), list)
        for b in m["content"]
    ]
    assert any(b.get("type") == "tool_use" and b.get("name") == "Write" for b in replayed)
    # The resumed run appended to the restored transcript.
    assert second_prompt in restored.read_text()


# ---------------------------------------------------------------------------------------------
# (c) where the user's CLAUDE.md (and a project CLAUDE.md) reach the model


def test_claude_md_marker_reaches_the_first_user_message(
    claude_bin: Path, fake_anthropic: FakeAnthropic, claude_dirs: ClaudeDirs
) -> None:
    user_marker = f"PARHELIA-USER-MARKER-{uuid.uuid4().hex}"
    project_marker = f"PARHELIA-PROJECT-MARKER-{uuid.uuid4().hex}"
    (claude_dirs.config / "CLAUDE.md").write_text(f"# memory\n{user_marker}\n")
    (claude_dirs.cwd / "CLAUDE.md").write_text(f"# project\n{project_marker}\n")

    run = _run(claude_bin, fake_anthropic, claude_dirs, "Say hi", str(uuid.uuid4()))
    assert run.returncode == 0, run.describe()

    first = fake_anthropic.main_requests[0]
    # Not in the system prompt: CLAUDE.md content travels in the first user message as a
    # <system-reminder> text block that names the file it came from.
    assert user_marker not in first.system_text()
    assert project_marker not in first.system_text()
    msg0 = first.messages[0]
    assert msg0["role"] == "user"
    blocks = [b["text"] for b in msg0["content"] if b.get("type") == "text"]
    reminder = next(b for b in blocks if user_marker in b)
    assert reminder.startswith("<system-reminder>")
    assert f"Contents of {claude_dirs.config / 'CLAUDE.md'}" in reminder
    assert any(project_marker in b for b in blocks)
    assert blocks[-1] == "Say hi"  # the prompt comes last


# ---------------------------------------------------------------------------------------------
# (d) credentials refused: retries and how to cut them short


def _api_retries(run: ClaudeRun) -> list[dict]:
    return run.of_type("system", "api_retry")


def test_401_with_default_retries_keeps_retrying(
    claude_bin: Path, fake_anthropic: FakeAnthropic, claude_dirs: ClaudeDirs
) -> None:
    """By default a refused key is retried 10 times with exponential backoff (~3 minutes in
    total, measured): watch the first few retries, then stop the CLI ourselves."""
    fake_anthropic.fail_with(401)
    env = claude_env(fake_anthropic.url, config_dir=claude_dirs.config, home=claude_dirs.home)
    argv = claude_argv(claude_bin, "hi", session_id=str(uuid.uuid4()))
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=claude_dirs.cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        # The first three requests come at ~0, ~0.5 and ~1.6 s; allow plenty of slack.
        ok = fake_anthropic.wait_for(lambda reqs: len(reqs) >= 3, timeout=30)
        assert proc.poll() is None, "the CLI gave up on a 401 without retrying"
    finally:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
    assert ok, fake_anthropic.summary()
    events, _ = parse_stream(out.decode())
    retries = [e for e in events if e.get("subtype") == "api_retry"]
    assert len(retries) >= 2
    assert {(e["error_status"], e["max_retries"], e["error"]) for e in retries} == {
        (401, 10, "authentication_failed")
    }
    assert [e["attempt"] for e in retries] == list(range(1, len(retries) + 1))


@pytest.mark.parametrize("max_retries", [0, 1])
def test_401_with_claude_code_max_retries_fails_fast(
    claude_bin: Path, fake_anthropic: FakeAnthropic, claude_dirs: ClaudeDirs, max_retries: int
) -> None:
    fake_anthropic.fail_with(401)
    started = time.monotonic()
    run = _run(
        claude_bin, fake_anthropic, claude_dirs, "hi", str(uuid.uuid4()), max_retries=max_retries
    )
    elapsed = time.monotonic() - started
    assert run.returncode == 1, run.describe()
    assert len(fake_anthropic.message_requests) == max_retries + 1
    assert len(_api_retries(run)) == max_retries
    result = run.result
    assert result is not None, run.describe()
    # Note: subtype stays "success"; is_error and api_error_status carry the failure.
    assert result["is_error"] is True
    assert result["api_error_status"] == 401
    assert "401" in result["result"]
    print(f"CLAUDE_CODE_MAX_RETRIES={max_retries}: gave up after {elapsed:.2f}s")


def test_401_with_x_should_retry_false_fails_at_once(
    claude_bin: Path, fake_anthropic: FakeAnthropic, claude_dirs: ClaudeDirs
) -> None:
    fake_anthropic.fail_with(401, headers={"x-should-retry": "false"})
    run = _run(claude_bin, fake_anthropic, claude_dirs, "hi", str(uuid.uuid4()))
    assert run.returncode == 1, run.describe()
    assert len(fake_anthropic.message_requests) == 1
    assert _api_retries(run) == []
    assert run.result is not None and run.result["api_error_status"] == 401


def test_500_is_retried_then_reported(
    claude_bin: Path, fake_anthropic: FakeAnthropic, claude_dirs: ClaudeDirs
) -> None:
    fake_anthropic.fail_with(500, times=1)
    run = _run(claude_bin, fake_anthropic, claude_dirs, "hi", str(uuid.uuid4()), max_retries=2)
    assert run.returncode == 0, run.describe()
    assert [e["error_status"] for e in _api_retries(run)] == [500]
    assert run.result is not None and run.result["is_error"] is False
    assert run.result["result"] == fake_anthropic.default_text


def test_missing_api_key_fails_at_once_without_any_request(
    claude_bin: Path, fake_anthropic: FakeAnthropic, claude_dirs: ClaudeDirs
) -> None:
    run = _run(claude_bin, fake_anthropic, claude_dirs, "hi", str(uuid.uuid4()), api_key=None)
    assert run.returncode == 1, run.describe()
    assert fake_anthropic.requests == []
    result = run.result
    assert result is not None, run.describe()
    assert result["is_error"] is True
    assert result["terminal_reason"] == "api_error"
    assert "Not logged in" in result["result"]


def test_max_turns_stops_an_agent_that_keeps_calling_tools(
    claude_bin: Path, fake_anthropic: FakeAnthropic, claude_dirs: ClaudeDirs
) -> None:
    (claude_dirs.cwd / "f.txt").write_text("x\n")
    read = tool_use("Read", {"file_path": str(claude_dirs.cwd / "f.txt")})
    fake_anthropic.set_script([reply(read)] * 10)
    run = _run(claude_bin, fake_anthropic, claude_dirs, "loop", str(uuid.uuid4()), max_turns=2)
    assert run.returncode == 1, run.describe()
    assert run.result is not None
    assert run.result["subtype"] == "error_max_turns"
    assert run.result["terminal_reason"] == "max_turns"
    assert run.result["is_error"] is True
    assert len(fake_anthropic.main_requests) == 2


def test_overloaded_529_is_retried_with_an_api_retry_line(
    claude_bin: Path, fake_anthropic: FakeAnthropic, claude_dirs: ClaudeDirs
) -> None:
    fake_anthropic.fail_with(529, times=1)
    run = _run(claude_bin, fake_anthropic, claude_dirs, "hi", str(uuid.uuid4()), max_retries=2)
    assert run.returncode == 0, run.describe()
    assert [e["error_status"] for e in _api_retries(run)] == [529]
    assert run.result is not None and run.result["result"] == fake_anthropic.default_text


def test_a_mid_stream_error_falls_back_to_one_unstreamed_request(
    claude_bin: Path, fake_anthropic: FakeAnthropic, claude_dirs: ClaudeDirs
) -> None:
    """An SSE ``error`` event mid-reply: the CLI asks again without streaming; its result
    counts the tokens of both requests but its cost only the one that completed."""
    fake_anthropic.set_script([reply("broken", "off", stream_error="overloaded_error"),
                               reply("recovered", output_tokens=10)])
    env = claude_env(fake_anthropic.url, config_dir=claude_dirs.config, home=claude_dirs.home,
                     max_retries=2)
    argv = claude_argv(claude_bin, "hi", session_id=str(uuid.uuid4()),
                       extra=["--model", "claude-sonnet-4-5", "--include-partial-messages"])
    run = run_claude(argv, env=env, cwd=claude_dirs.cwd, timeout=RUN_TIMEOUT)
    assert run.returncode == 0 and run.result is not None, run.describe()
    main = fake_anthropic.main_requests
    assert [r.json.get("stream") for r in main] == [True, False]
    assert run.result["result"] == "recovered"
    assert [b["text"] for b in run.content_blocks("assistant", "text")] == ["recovered"]
    # Priced from its usage ($3/$15), the run is dearer than the CLI's own figure: the
    # worker's in-flight pricing of usage stays at or above what the CLI reports.
    usage = run.result["usage"]
    priced = (usage["input_tokens"] * 3 + usage["output_tokens"] * 15) / 1e6
    assert priced > run.result["total_cost_usd"] > 0


def test_cache_tokens_are_priced_at_1_25_and_0_1_times_input(
    claude_bin: Path, fake_anthropic: FakeAnthropic, claude_dirs: ClaudeDirs
) -> None:
    """The CLI's cost for claude-sonnet-4-5 at $3/$15 per million: cache writes 1.25x and
    reads 0.1x the input price - what the daemon's budget assumes (parheliad.core.budget)."""
    fake_anthropic.set_script([reply("cached", output_tokens=100,
                                     cache_creation_input_tokens=2000,
                                     cache_read_input_tokens=10000)])
    env = claude_env(fake_anthropic.url, config_dir=claude_dirs.config, home=claude_dirs.home)
    argv = claude_argv(claude_bin, "hi", session_id=str(uuid.uuid4()),
                       extra=["--model", "claude-sonnet-4-5"])
    run = run_claude(argv, env=env, cwd=claude_dirs.cwd, timeout=RUN_TIMEOUT)
    assert run.returncode == 0 and run.result is not None, run.describe()
    usage = run.result["usage"]
    assert (usage["cache_creation_input_tokens"], usage["cache_read_input_tokens"]) == (
        2000, 10000)
    expected = (usage["input_tokens"] * 3 + 2000 * 3.75 + 10000 * 0.3 + 100 * 15) / 1e6
    assert abs(run.result["total_cost_usd"] - expected) < 1e-9
