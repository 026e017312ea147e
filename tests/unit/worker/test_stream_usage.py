"""The worker's reading of the real CLI's usage: lines shaped as Claude Code 2.1.332 writes
them with ``--include-partial-messages`` (recorded against the fake Messages API; see
docs/contracts.md, "Usage and cost in stream-json")."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from modal_worker.agent import AgentProcess
from modal_worker.channel import MemoryChannel
from modal_worker.stream import CHARS_PER_TOKEN_LOW, StreamParser, transcript_cost

SID = "3b241101-e2bb-4255-8caf-4136c566a962"


def _usage(input_tokens: int, output_tokens: int, cache_write: int = 0,
           cache_read: int = 0) -> dict[str, Any]:
    return {"input_tokens": input_tokens, "cache_creation_input_tokens": cache_write,
            "cache_read_input_tokens": cache_read, "output_tokens": output_tokens,
            "service_tier": "standard"}


def _event(event: dict[str, Any], mid: str) -> dict[str, Any]:
    return {"type": "stream_event", "event": event, "session_id": SID,
            "parent_tool_use_id": None, "uuid": "u", "api_message_id": mid}


def _start(mid: str, input_tokens: int, cache_write: int = 0, cache_read: int = 0
           ) -> dict[str, Any]:
    return _event({"type": "message_start", "message": {
        "id": mid, "type": "message", "role": "assistant", "content": [],
        "usage": _usage(input_tokens, 1, cache_write, cache_read)}}, mid)


def _delta_text(mid: str, text: str) -> dict[str, Any]:
    return _event({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "text_delta", "text": text}}, mid)


def _message_delta(mid: str, output_tokens: int, stop: str) -> dict[str, Any]:
    return _event({"type": "message_delta", "delta": {"stop_reason": stop},
                   "usage": {"output_tokens": output_tokens}}, mid)


def _assistant(mid: str, block: dict[str, Any], input_tokens: int, cache_write: int = 0,
               cache_read: int = 0) -> dict[str, Any]:
    # The real CLI: every assistant line says output_tokens 1, whatever the reply cost.
    return {"type": "assistant", "message": {
        "id": mid, "content": [block], "usage": _usage(input_tokens, 1, cache_write,
                                                       cache_read)},
            "parent_tool_use_id": None, "session_id": SID}


def _tool_result(tool_id: str) -> dict[str, Any]:
    return {"type": "user", "parent_tool_use_id": None, "message": {
        "role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id,
                                     "content": "ok"}]}}


def _bash(tool_id: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": "Bash", "input": {"command": "ls"}}


def test_output_spend_is_counted_when_the_message_ends_not_at_the_result() -> None:
    """Two parallel tool calls, 500 output tokens; then a reply of 800: the running figure
    has 500 before the second request and 1300 before the result, as billed."""
    channel = MemoryChannel()
    parser = StreamParser(emit=channel.emit)
    seen: list[dict[str, Any]] = []
    stream = [
        _start("m1", 12344),
        _delta_text("m1", "Let me look."),
        _assistant("m1", {"type": "text", "text": "Let me look."}, 12344),
        _assistant("m1", _bash("t1"), 12344),
        _assistant("m1", _bash("t2"), 12344),
        _message_delta("m1", 500, "tool_use"),
        _tool_result("t1"),
        _tool_result("t2"),
        _start("m2", 12465, cache_read=12000),
        _assistant("m2", {"type": "text", "text": "Done now."}, 12465, cache_read=12000),
        _message_delta("m2", 800, "end_turn"),
    ]
    for obj in stream:
        parser.feed(obj)
        seen.append(parser.stats.snapshot())
    assert seen[5]["output_tokens"] == 500  # at m1's message_delta, before any result
    assert seen[5]["input_tokens"] == 12344
    assert seen[-1]["output_tokens"] == 1300
    assert seen[-1]["input_tokens"] == 12344 + 12465
    assert seen[-1]["cache_read_input_tokens"] == 12000
    # Never below what has been billed so far, at any line.
    billed = [0, 0, 0, 0, 0, 500, 500, 500, 500, 500, 1300]
    assert all(s["output_tokens"] >= b for s, b in zip(seen, billed, strict=True))
    # The CLI's num_turns: one, plus one per tool result -> 3 after two parallel calls.
    assert seen[-1]["turns"] == 3
    turn_events = [r["data"] for r in channel.records if r["type"] == "agent_turn_completed"]
    assert [t["output_tokens"] for t in turn_events] == [500]
    parser.feed({"type": "result", "subtype": "success", "is_error": False, "num_turns": 3,
                 "total_cost_usd": 0.125236, "usage": _usage(24809, 1300, 0, 12000)})
    result = channel.records[-1]["data"]
    assert result["turns"] == 3 and result["output_tokens"] == 1300
    assert result["cost_usd"] == result["total_cost_usd"] == 0.125236


def test_a_long_message_counts_its_streamed_text_before_its_end() -> None:
    parser = StreamParser(emit=MemoryChannel().emit)
    parser.feed(_start("m1", 100))
    for _ in range(10):
        parser.feed(_delta_text("m1", "x" * 300))
    assert parser.stats.usage().output_tokens == 3000 // CHARS_PER_TOKEN_LOW
    parser.feed(_message_delta("m1", 700, "end_turn"))  # the billed figure replaces it
    assert parser.stats.usage().output_tokens == 700


def test_subagent_tool_results_do_not_count_as_turns() -> None:
    parser = StreamParser(emit=MemoryChannel().emit)
    parser.feed(_assistant("m1", _bash("t1"), 10))
    parser.feed(dict(_tool_result("s1"), parent_tool_use_id="t1"))
    parser.feed(_tool_result("t1"))
    assert parser.stats.usage().turns == 2


def test_a_resumed_run_reports_its_own_share_of_the_session_cost() -> None:
    """The CLI restores the session's cost on --resume: its total includes earlier runs."""
    channel = MemoryChannel()
    parser = StreamParser(emit=channel.emit, cost_baseline_usd=0.069372)
    parser.feed(_assistant("m1", {"type": "text", "text": "second"}, 12368))
    parser.feed({"type": "result", "subtype": "success", "is_error": False, "num_turns": 1,
                 "total_cost_usd": 0.119044, "usage": _usage(12368, 10)})
    result = channel.records[-1]["data"]
    assert result["total_cost_usd"] == 0.119044
    assert abs(result["cost_usd"] - 0.049672) < 1e-9
    assert parser.stats.snapshot()["cost_usd"] == result["cost_usd"]


def test_transcript_cost_reads_the_last_cost_state_of_the_session(tmp_path: Path) -> None:
    path = tmp_path / f"{SID}.jsonl"
    assert transcript_cost(path, SID).lines == 0
    lines = [{"type": "user", "message": {"content": "cost-state"}},
             {"type": "cost-state", "sessionId": SID, "totalCostUSD": 0.06},
             {"type": "cost-state", "sessionId": "other", "totalCostUSD": 9.0},
             {"type": "cost-state", "sessionId": SID, "totalCostUSD": float("inf")},
             {"type": "cost-state", "sessionId": SID, "totalCostUSD": 0.11}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json \"cost-state\"\n")
    cost = transcript_cost(path, SID)
    assert (cost.lines, cost.total_usd) == (2, 0.11)


@pytest.mark.parametrize(("script", "killed"), [
    ("echo started; exec sleep 30", False),  # ends on SIGTERM
    ("trap '' TERM; echo started; sleep 30", True),  # ignores it
])
def test_the_worker_knows_when_it_had_to_kill_the_agent(tmp_path: Path, script: str,
                                                         killed: bool) -> None:
    """Only an agent that ended on SIGTERM wrote its own cost-state on the way out; for one
    that had to be SIGKILLed, a new cost-state line is not the CLI's and is not trusted."""
    agent = AgentProcess(["sh", "-c", script], cwd=tmp_path, env={"PATH": os.defpath},
                         raw_log=tmp_path / "raw.jsonl", on_object=lambda obj: None,
                         stderr_sink=io.StringIO())
    agent.start()
    deadline = time.monotonic() + 10
    while not (tmp_path / "raw.jsonl").exists() or b"started" not in (
            tmp_path / "raw.jsonl").read_bytes():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    agent.stop(grace=1.0)
    assert agent.killed is killed
