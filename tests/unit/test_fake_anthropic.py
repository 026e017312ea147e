"""Self-tests of the fake Anthropic API (stdlib HTTP client; no Claude CLI needed)."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest

from tests.fake_anthropic import FakeAnthropic, reply, text, tool_use

TOOLS = [{"name": "Write", "description": "w", "input_schema": {"type": "object"}}]


def _request(
    fake: FakeAnthropic,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    try:
        payload = None if body is None else json.dumps(body).encode()
        hdrs = {"content-type": "application/json", "x-api-key": "sk-secret", **(headers or {})}
        conn.request(method, path, body=payload, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for chunk in raw.decode().split("\n\n"):
        if not chunk.strip():
            continue
        lines = dict(line.split(": ", 1) for line in chunk.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def _body(stream: bool = True, tools: bool = True, **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "claude-test",
        "max_tokens": 1024,
        "stream": stream,
        "messages": [{"role": "user", "content": "hi"}],
        **kw,
    }
    if tools:
        body["tools"] = TOOLS
    return body


def test_streamed_tool_use_then_default_reply() -> None:
    script = [reply("thinking aloud", tool_use("Write", {"file_path": "/x", "content": "y" * 50}))]
    with FakeAnthropic(script, default_text="All done") as fake:
        status, headers, raw = _request(fake, "POST", "/v1/messages?beta=true", _body())
        assert status == 200
        assert headers["content-type"].startswith("text/event-stream")
        events = _sse(raw)
        names = [n for n, _ in events]
        assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
        assert names.count("content_block_start") == 2 == names.count("content_block_stop")
        assert all(n == d["type"] for n, d in events)
        start = events[0][1]["message"]
        assert start["content"] == [] and start["model"] == "claude-test"
        assert start["usage"]["input_tokens"] > 0
        tool_start = [d for n, d in events if n == "content_block_start"][1]["content_block"]
        assert tool_start["type"] == "tool_use" and tool_start["input"] == {}
        assert tool_start["id"].startswith("toolu_")
        partial = "".join(
            d["delta"]["partial_json"]
            for n, d in events
            if n == "content_block_delta" and d["index"] == 1
        )
        assert json.loads(partial) == {"file_path": "/x", "content": "y" * 50}
        texts = "".join(
            d["delta"]["text"]
            for n, d in events
            if n == "content_block_delta" and d["delta"]["type"] == "text_delta"
        )
        assert texts == "thinking aloud"
        delta = events[-2][1]
        assert delta["delta"]["stop_reason"] == "tool_use"
        assert delta["usage"]["output_tokens"] > 0

        # Script exhausted: default end_turn text.
        _, _, raw2 = _request(fake, "POST", "/v1/messages", _body())
        ev2 = _sse(raw2)
        assert ev2[-2][1]["delta"]["stop_reason"] == "end_turn"
        assert (
            "".join(d["delta"].get("text", "") for n, d in ev2 if n == "content_block_delta")
            == "All done"
        )
        assert [r.kind for r in fake.requests] == ["main", "main"]
        assert fake.requests[0].query == "beta=true"


def test_non_streamed_json_reply() -> None:
    with FakeAnthropic(
        [reply(text("a"), text("b"), stop_reason="max_tokens", output_tokens=7)]
    ) as fake:
        status, headers, raw = _request(fake, "POST", "/v1/messages", _body(stream=False))
        assert status == 200 and headers["content-type"] == "application/json"
        msg = json.loads(raw)
        assert msg["type"] == "message" and msg["role"] == "assistant"
        assert [b["text"] for b in msg["content"]] == ["a", "b"]
        assert msg["stop_reason"] == "max_tokens"
        assert msg["usage"]["output_tokens"] == 7


def test_side_requests_do_not_consume_the_script() -> None:
    with FakeAnthropic(["main reply"], side_text="a title") as fake:
        _, _, raw = _request(fake, "POST", "/v1/messages", _body(stream=False, tools=False))
        assert json.loads(raw)["content"][0]["text"] == "a title"
        assert fake.remaining_replies == 1
        _, _, raw = _request(fake, "POST", "/v1/messages", _body(stream=False))
        assert json.loads(raw)["content"][0]["text"] == "main reply"
        assert [r.kind for r in fake.requests] == ["side", "main"]
        assert len(fake.side_requests) == 1 and len(fake.main_requests) == 1


def test_count_tokens_hello_and_404() -> None:
    with FakeAnthropic(input_tokens=123) as fake:
        status, _, raw = _request(
            fake, "POST", "/v1/messages/count_tokens?beta=true", {"model": "m", "messages": []}
        )
        assert status == 200 and json.loads(raw) == {"input_tokens": 123}
        status, _, raw = _request(fake, "HEAD", "/api/hello")
        assert status == 200 and raw == b""
        status, _, raw = _request(fake, "GET", "/v1/models")
        assert status == 404
        assert json.loads(raw)["error"]["type"] == "not_found_error"
        assert [r.kind for r in fake.requests] == ["count_tokens", "hello", "other"]


def test_failures_are_served_then_cleared() -> None:
    with FakeAnthropic(["ok"]) as fake:
        fake.fail_with(401, times=2, headers={"x-should-retry": "false"})
        for _ in range(2):
            status, headers, raw = _request(fake, "POST", "/v1/messages", _body(stream=False))
            assert status == 401 and headers["x-should-retry"] == "false"
            assert json.loads(raw)["error"]["type"] == "authentication_error"
        status, _, raw = _request(fake, "POST", "/v1/messages", _body(stream=False))
        assert status == 200 and json.loads(raw)["content"][0]["text"] == "ok"
        fake.fail_with(500)
        for _ in range(3):
            assert _request(fake, "POST", "/v1/messages", _body())[0] == 500
        fake.clear_failures()
        assert _request(fake, "POST", "/v1/messages", _body())[0] == 200
        assert [r.status for r in fake.requests] == [401, 401, 200, 500, 500, 500, 200]


def test_records_bodies_and_redacts_credentials() -> None:
    body = _body(
        system=[{"type": "text", "text": "sys MARKER"}],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "hello"}]},
            {"role": "system", "content": "env info"},
        ],
    )
    with FakeAnthropic() as fake:
        _request(fake, "POST", "/v1/messages", body, headers={"authorization": "Bearer tok"})
        (rec,) = fake.requests
        assert rec.json == body
        assert "MARKER" in rec.system_text()
        assert "hello" in rec.messages_text() and "env info" in rec.messages_text()
        assert rec.last_user_content() == [{"type": "text", "text": "hello"}]
        assert rec.tool_names == ["Write"]
        assert rec.headers["x-api-key"] == "<redacted>"
        assert rec.api_key_is("sk-secret") and not rec.api_key_is("other")
        assert rec.bearer_token_is("tok")
        assert "sk-secret" not in repr(rec) and "sk-secret" not in fake.summary()


def test_url_requires_start() -> None:
    fake = FakeAnthropic()
    with pytest.raises(RuntimeError):
        _ = fake.url
    with fake:
        assert fake.url.startswith("http://127.0.0.1:")
    fake.stop()  # idempotent


def test_fixture(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.add_replies("x")
    status, _, raw = _request(fake_anthropic, "POST", "/v1/messages", _body(stream=False))
    assert json.loads(raw)["content"][0]["text"] == "x"


def test_pings_cache_tokens_and_a_mid_stream_error() -> None:
    script = [reply("a", "b", output_tokens=7, cache_creation_input_tokens=200,
                    cache_read_input_tokens=3000),
              reply("x", "y", stream_error="overloaded_error")]
    with FakeAnthropic(script) as fake:
        events = _sse(_request(fake, "POST", "/v1/messages", _body())[2])
        names = [n for n, _ in events]
        assert names[:2] == ["message_start", "ping"] and names.count("ping") == 2
        usage = events[0][1]["message"]["usage"]
        assert (usage["cache_creation_input_tokens"], usage["cache_read_input_tokens"],
                usage["output_tokens"]) == (200, 3000, 1)
        assert events[-2][1]["usage"] == {"output_tokens": 7}
        broken = _sse(_request(fake, "POST", "/v1/messages", _body())[2])
        assert [n for n, _ in broken] == ["message_start", "ping", "content_block_start",
                                          "error"]
        assert broken[-1][1] == {"type": "error", "error": {"type": "overloaded_error",
                                                            "message": "overloaded_error"}}
        fake.fail_with(529, times=1)
        status, _, raw = _request(fake, "POST", "/v1/messages", _body())
        assert status == 529
        assert json.loads(raw)["error"]["type"] == "overloaded_error"
