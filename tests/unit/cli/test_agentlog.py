"""The agent's stream-json as people read it (parhelia_cli.agentlog): lines cut across
chunks, incarnations, turns counted across them, escapes made visible."""

from __future__ import annotations

import json

from parhelia_cli.agentlog import AgentLog


def _line(obj: dict) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def _assistant(mid: str, *blocks: dict, sub: bool = False) -> bytes:
    return _line({"type": "assistant", "parent_tool_use_id": "toolu_x" if sub else None,
                  "message": {"id": mid, "content": list(blocks)}})


def test_item5_chunks_turns_tools_results_and_escapes() -> None:
    log = AgentLog()
    stream = (_line({"type": "system", "subtype": "init", "model": "claude-sonnet-4-5",
                     "claude_code_version": "2.1.332", "tools": ["Bash", "Read"],
                     "permissionMode": "acceptEdits"})
              + _assistant("m1", {"type": "text", "text": "Looking.\x1b[2J"},
                           {"type": "tool_use", "name": "Bash",
                            "input": {"command": "ls -la"}})
              + _line({"type": "user", "message": {"content": [
                  {"type": "tool_result", "content": "a\nb\nc\nd\ne", "is_error": False},
                  {"type": "tool_result", "content": "key sk-ant-api03-" + "Z" * 40}]}})
              + _assistant("m2", {"type": "tool_use", "name": "Read",
                                  "input": {"file_path": "/w/src/app.py"}}, sub=True))
    half = len(stream) // 2
    lines = list(log.feed("c-1", stream[:half])) + list(log.feed("c-1", stream[half:]))
    assert lines[0] == "== container c-1 " + "=" * 20
    assert "Claude Code 2.1.332, model claude-sonnet-4-5, 2 tools" in lines[1]
    assert "-- turn 1 --" in lines
    assert "  Looking.\\x1b[2J" in lines  # the escape is shown, not run
    assert "  -> Bash: ls -la" in lines
    assert "  <- a" in lines and any("(+2 more lines)" in x for x in lines)
    assert "    | -> Read: /w/src/app.py" in lines  # a subagent's call, no new turn
    assert not any("Z" * 20 in x for x in lines)  # a printed key is redacted
    assert "-- turn 2 --" not in lines
    # A second incarnation: its own header, and turns go on counting.
    more = list(log.feed("c-2", _assistant("m3", {"type": "text", "text": "Resumed."})
                         + _line({"type": "result", "subtype": "success", "num_turns": 3,
                                  "total_cost_usd": 0.0123, "duration_ms": 4200,
                                  "result": "Done."})))
    assert more[0].startswith("\n== container c-2") and "-- turn 2 --" in more
    assert "== result: success after 3 turns in 4s, $0.01" in more and "  Done." in more


def test_a_last_line_without_newline_and_a_non_json_line() -> None:
    log = AgentLog()
    assert list(log.feed("c-1", b"not json\n")) == ["== container c-1 " + "=" * 20,
                                                     "not json"]
    assert list(log.feed("c-1", b'{"type":"result","subtype":"error_max_turns",'
                                b'"is_error":true,"num_turns":2}')) == []
    assert list(log.finish()) == ["== result: error_max_turns (error) after 2 turns"]
