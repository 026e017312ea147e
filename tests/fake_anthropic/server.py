"""A scripted, recording fake of the Anthropic Messages API for driving the real Claude Code CLI.

Only what the CLI uses is implemented (see docs/adr/0004-real-claude-e2e.md):

- ``POST /v1/messages[?beta=true]``: a streamed SSE reply (``stream: true``) or a JSON message;
- ``POST /v1/messages/count_tokens[?beta=true]``: ``{"input_tokens": N}``;
- ``HEAD|GET /api/hello``: 200;
- anything else: 404 with an Anthropic-shaped JSON error.

Replies are *scripted*: each "main turn" request (a ``/v1/messages`` request whose body carries
a non-empty ``tools`` list - the agent loop always sends its tools, side requests such as title
generation do not) consumes the next :class:`Reply` of the script. When the script is exhausted
a default ``end_turn`` text reply is served. Side requests get a short text reply and never
consume the script.

As the real API does, a streamed reply carries ``ping`` events, ``message_start`` says
``output_tokens: 1`` and only ``message_delta`` the billed output count; a reply may carry
cache tokens (``cache_creation_input_tokens`` / ``cache_read_input_tokens``) or break off
mid-stream with an SSE ``error`` event (``stream_error``), and ``fail_with(529)`` answers
``overloaded_error``.

Every request is recorded (method, path, parsed JSON body, headers). The credentials headers
(``x-api-key``, ``authorization``) are redacted in the recorded headers; only a SHA-256 digest of
their value is kept in memory (never written anywhere) so tests can assert which key was sent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, TypeAlias
from urllib.parse import urlsplit

__all__ = [
    "Block",
    "FakeAnthropic",
    "RecordedRequest",
    "Reply",
    "ReplyLike",
    "RequestKind",
    "TextBlock",
    "ToolUseBlock",
    "reply",
    "text",
    "tool_use",
]

SECRET_HEADERS = frozenset({"x-api-key", "authorization"})

RequestKind: TypeAlias = Literal["main", "side", "count_tokens", "hello", "other"]


# --------------------------------------------------------------------------------------------
# Script


@dataclass(frozen=True)
class TextBlock:
    text: str


@dataclass(frozen=True)
class ToolUseBlock:
    name: str
    input: Mapping[str, Any]
    id: str | None = None  # generated (toolu_...) when None


Block: TypeAlias = TextBlock | ToolUseBlock


@dataclass(frozen=True)
class Reply:
    """One assistant message. ``stop_reason`` defaults to ``tool_use`` if any block is a tool
    call, else ``end_turn``."""

    blocks: tuple[Block, ...]
    stop_reason: str | None = None
    output_tokens: int | None = None
    delay_s: float = 0.0  # sleep before answering (e.g. to test timeouts)
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    # A streamed reply that breaks off after its first content block with an SSE ``error``
    # event of this type (e.g. "overloaded_error"), as the real API may mid-stream.
    stream_error: str | None = None

    @property
    def effective_stop_reason(self) -> str:
        if self.stop_reason:
            return self.stop_reason
        if any(isinstance(b, ToolUseBlock) for b in self.blocks):
            return "tool_use"
        return "end_turn"


ReplyLike: TypeAlias = Reply | str | Block | Iterable[Block | str]


def text(value: str) -> TextBlock:
    return TextBlock(value)


def tool_use(name: str, input: Mapping[str, Any], id: str | None = None) -> ToolUseBlock:  # noqa: A002
    return ToolUseBlock(name=name, input=dict(input), id=id)


def reply(
    *blocks: Block | str,
    stop_reason: str | None = None,
    output_tokens: int | None = None,
    delay_s: float = 0.0,
    cache_creation_input_tokens: int = 0,
    cache_read_input_tokens: int = 0,
    stream_error: str | None = None,
) -> Reply:
    return Reply(
        blocks=tuple(TextBlock(b) if isinstance(b, str) else b for b in blocks),
        stop_reason=stop_reason,
        output_tokens=output_tokens,
        delay_s=delay_s,
        cache_creation_input_tokens=cache_creation_input_tokens,
        cache_read_input_tokens=cache_read_input_tokens,
        stream_error=stream_error,
    )


def as_reply(item: ReplyLike) -> Reply:
    if isinstance(item, Reply):
        return item
    if isinstance(item, str):
        return reply(item)
    if isinstance(item, TextBlock | ToolUseBlock):
        return reply(item)
    return reply(*item)


# --------------------------------------------------------------------------------------------
# Recording


def _content_text(content: Any) -> str:
    """Flatten Messages API content (a string or a list of blocks) to text, recursively."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    if isinstance(content, list):
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict):
                if isinstance(block.get("text"), str):
                    parts.append(block["text"])
                if "input" in block:
                    parts.append(json.dumps(block["input"]))
                if "content" in block:
                    parts.append(_content_text(block["content"]))
    return "\n".join(parts)


@dataclass
class RecordedRequest:
    method: str
    path: str  # without the query string
    query: str
    headers: dict[str, str]  # lower-cased names; secret values redacted
    body: Any  # parsed JSON, the raw text if it was not JSON, or None
    kind: RequestKind
    status: int = 0  # what the fake answered
    reply: Reply | None = None  # the reply served (main and side /v1/messages requests)
    at: float = field(default_factory=time.monotonic)
    _key_digests: dict[str, str] = field(default_factory=dict, repr=False)

    # -- credentials (only digests are held, never the value) --
    def sent_header(self, name: str) -> bool:
        return name.lower() in self.headers

    def api_key_is(self, expected: str) -> bool:
        """True if ``x-api-key`` was sent with exactly ``expected``."""
        return self._digest_matches("x-api-key", expected)

    def bearer_token_is(self, expected: str) -> bool:
        return self._digest_matches("authorization", f"Bearer {expected}")

    def _digest_matches(self, header: str, expected: str) -> bool:
        got = self._key_digests.get(header)
        want = hashlib.sha256(expected.encode()).hexdigest()
        return got is not None and hmac.compare_digest(got, want)

    # -- body helpers --
    @property
    def json(self) -> dict[str, Any]:
        return self.body if isinstance(self.body, dict) else {}

    @property
    def model(self) -> str | None:
        return self.json.get("model")

    @property
    def messages(self) -> list[dict[str, Any]]:
        msgs = self.json.get("messages")
        return msgs if isinstance(msgs, list) else []

    @property
    def tools(self) -> list[dict[str, Any]]:
        tools = self.json.get("tools")
        return tools if isinstance(tools, list) else []

    @property
    def tool_names(self) -> list[str]:
        return [t.get("name", "") for t in self.tools if isinstance(t, dict)]

    def system_text(self) -> str:
        return _content_text(self.json.get("system", ""))

    def messages_text(self) -> str:
        return "\n".join(
            _content_text(m.get("content")) for m in self.messages if isinstance(m, dict)
        )

    def all_text(self) -> str:
        return self.system_text() + "\n" + self.messages_text()

    def last_user_content(self) -> list[dict[str, Any]]:
        for m in reversed(self.messages):
            if isinstance(m, dict) and m.get("role") == "user":
                c = m.get("content")
                if isinstance(c, str):
                    return [{"type": "text", "text": c}]
                return [b for b in c or [] if isinstance(b, dict)]
        return []


# --------------------------------------------------------------------------------------------
# The server


@dataclass
class _Failure:
    status: int
    remaining: int | None  # None: for ever
    body: dict[str, Any]
    headers: dict[str, str]


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    etype = _ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": etype, "message": message or etype}}


class FakeAnthropic:
    """Scripted fake Anthropic API on 127.0.0.1 (ephemeral port).

    Use as a context manager (``with FakeAnthropic([...]) as fake: fake.url``) or through the
    ``fake_anthropic`` pytest fixture (``tests.fake_anthropic.pytest_plugin``).
    """

    def __init__(
        self,
        script: Iterable[ReplyLike] = (),
        *,
        default_text: str = "Done.",
        side_text: str = "Fake reply",
        input_tokens: int | None = None,
        is_main_turn: Callable[[dict[str, Any]], bool] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self._lock = threading.Lock()
        self._script: list[Reply] = [as_reply(r) for r in script]
        self.default_text = default_text
        self.side_text = side_text
        self.input_tokens = input_tokens  # None: estimated from the body size
        self._is_main_turn = is_main_turn or _has_tools
        self._failures: list[_Failure] = []
        self._requests: list[RecordedRequest] = []
        self._cond = threading.Condition(self._lock)
        self._host = host
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --
    def start(self) -> FakeAnthropic:
        if self._server is not None:
            return self
        handler = _make_handler(self)
        server = ThreadingHTTPServer((self._host, 0), handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-anthropic",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeAnthropic is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The base URL to put in ``ANTHROPIC_BASE_URL``."""
        return f"http://{self._host}:{self.port}"

    # -- configuration --
    def set_script(self, replies: Iterable[ReplyLike]) -> None:
        with self._lock:
            self._script = [as_reply(r) for r in replies]

    def add_replies(self, *replies: ReplyLike) -> None:
        with self._lock:
            self._script.extend(as_reply(r) for r in replies)

    @property
    def remaining_replies(self) -> int:
        with self._lock:
            return len(self._script)

    def fail_with(
        self,
        status: int,
        *,
        times: int | None = None,
        message: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` model requests (``/v1/messages`` and count_tokens; all of
        them when None) with ``status`` and an Anthropic-shaped error body."""
        with self._lock:
            self._failures.append(
                _Failure(status, times, error_body(status, message), dict(headers or {}))
            )

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    # -- inspection --
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_of(self, *kinds: RequestKind) -> list[RecordedRequest]:
        return [r for r in self.requests if r.kind in kinds]

    @property
    def main_requests(self) -> list[RecordedRequest]:
        """Agent-loop requests (those that carry ``tools``), in arrival order."""
        return self.requests_of("main")

    @property
    def side_requests(self) -> list[RecordedRequest]:
        return self.requests_of("side")

    @property
    def message_requests(self) -> list[RecordedRequest]:
        """Every ``/v1/messages`` request, main and side."""
        return self.requests_of("main", "side")

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def wait_for(
        self, predicate: Callable[[list[RecordedRequest]], bool], timeout: float = 10.0
    ) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(list(self._requests)):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def summary(self) -> str:
        """One line per recorded request, for assertion messages and debugging."""
        lines = []
        for r in self.requests:
            extra = ""
            if r.kind in ("main", "side"):
                extra = (
                    f" model={r.model} max_tokens={r.json.get('max_tokens')}"
                    f" stream={r.json.get('stream')} msgs={len(r.messages)}"
                    f" tools={len(r.tools)}"
                )
            lines.append(
                f"{r.method} {r.path}{'?' + r.query if r.query else ''}"
                f" kind={r.kind} -> {r.status}{extra}"
            )
        return "\n".join(lines)

    # -- called by the handler --
    def _classify(self, method: str, path: str, body: Any) -> RequestKind:
        if path == "/api/hello" and method in ("HEAD", "GET"):
            return "hello"
        if method == "POST" and path == "/v1/messages/count_tokens":
            return "count_tokens"
        if method == "POST" and path == "/v1/messages":
            return "main" if isinstance(body, dict) and self._is_main_turn(body) else "side"
        return "other"

    def _record(self, req: RecordedRequest) -> None:
        with self._cond:
            self._requests.append(req)
            self._cond.notify_all()

    def _take_failure(self) -> _Failure | None:
        with self._lock:
            while self._failures:
                f = self._failures[0]
                if f.remaining is None:
                    return f
                if f.remaining > 0:
                    f.remaining -= 1
                    if f.remaining == 0:
                        self._failures.pop(0)
                    return f
                self._failures.pop(0)
            return None

    def _next_reply(self, kind: RequestKind) -> Reply:
        if kind == "side":
            return reply(self.side_text)
        with self._lock:
            if self._script:
                return self._script.pop(0)
        return reply(self.default_text)

    def _estimate_input_tokens(self, raw_len: int) -> int:
        return self.input_tokens if self.input_tokens is not None else max(1, raw_len // 4)


def _has_tools(body: dict[str, Any]) -> bool:
    tools = body.get("tools")
    return isinstance(tools, list) and len(tools) > 0


# --------------------------------------------------------------------------------------------
# Wire format


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def _content_blocks(r: Reply) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for b in r.blocks:
        if isinstance(b, TextBlock):
            out.append({"type": "text", "text": b.text})
        else:
            out.append(
                {
                    "type": "tool_use",
                    "id": b.id or _new_id("toolu_"),
                    "name": b.name,
                    "input": dict(b.input),
                }
            )
    return out


def _output_tokens(r: Reply, blocks: list[dict[str, Any]]) -> int:
    if r.output_tokens is not None:
        return r.output_tokens
    return max(1, len(json.dumps(blocks)) // 4)


def _usage(r: Reply, input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": r.cache_creation_input_tokens,
        "cache_read_input_tokens": r.cache_read_input_tokens,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def message_json(r: Reply, model: str, input_tokens: int) -> dict[str, Any]:
    blocks = _content_blocks(r)
    return {
        "id": _new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": r.effective_stop_reason,
        "stop_sequence": None,
        "usage": _usage(r, input_tokens, _output_tokens(r, blocks)),
    }


def _chunks(s: str, n: int = 3) -> Iterator[str]:
    """Split ``s`` into up to ``n`` non-empty pieces (to exercise partial_json)."""
    if not s:
        return
    size = max(1, -(-len(s) // n))
    for i in range(0, len(s), size):
        yield s[i : i + size]


PING: tuple[str, dict[str, Any]] = ("ping", {"type": "ping"})


def sse_events(r: Reply, model: str, input_tokens: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """The real API's order: ``message_start`` (usage with ``output_tokens: 1``), a ``ping``,
    per block start/deltas/stop (pings may come between them), ``message_delta`` (the
    billed output count), ``message_stop``; or, mid-stream, an ``error`` event and the end."""
    msg = message_json(r, model, input_tokens)
    blocks = msg["content"]
    start = dict(msg, content=[], stop_reason=None, usage=_usage(r, input_tokens, 1))
    yield "message_start", {"type": "message_start", "message": start}
    yield PING
    for i, b in enumerate(blocks):
        if i > 0:
            yield PING
        if r.stream_error:  # the first block starts, then the stream breaks off
            yield ("content_block_start", {"type": "content_block_start", "index": i,
                                           "content_block": {"type": "text", "text": ""}})
            yield "error", {"type": "error", "error": {"type": r.stream_error,
                                                       "message": r.stream_error}}
            return
        if b["type"] == "text":
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": i,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            for piece in _chunks(b["text"], 2):
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": i,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                )
        else:
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": i,
                    "content_block": {
                        "type": "tool_use",
                        "id": b["id"],
                        "name": b["name"],
                        "input": {},
                    },
                },
            )
            for piece in _chunks(json.dumps(b["input"]), 3):
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": i,
                        "delta": {"type": "input_json_delta", "partial_json": piece},
                    },
                )
        yield "content_block_stop", {"type": "content_block_stop", "index": i}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": msg["usage"]["output_tokens"]},
        },
    )
    yield "message_stop", {"type": "message_stop"}


def _make_handler(fake: FakeAnthropic) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "fake-anthropic/1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # keep test output clean; use fake.summary()

        # -- plumbing --
        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = bytearray()
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    data += self.rfile.read(size)
                    self.rfile.readline()
                return bytes(data)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length > 0 else b""

        def _send(
            self,
            status: int,
            payload: bytes,
            content_type: str,
            headers: Mapping[str, str] | None = None,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("request-id", _new_id("req_"))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
                self.wfile.flush()

        def _send_json(
            self, status: int, obj: Any, headers: Mapping[str, str] | None = None
        ) -> None:
            self._send(status, json.dumps(obj).encode(), "application/json", headers)

        def _handle(self) -> None:
            raw = self._read_body()
            split = urlsplit(self.path)
            body: Any = None
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode("utf-8", "replace")
            headers: dict[str, str] = {}
            digests: dict[str, str] = {}
            for name, value in self.headers.items():
                lname = name.lower()
                if lname in SECRET_HEADERS:
                    digests[lname] = hashlib.sha256(value.encode()).hexdigest()
                    headers[lname] = "<redacted>"
                else:
                    headers[lname] = value
            kind = fake._classify(self.command, split.path, body)
            rec = RecordedRequest(
                method=self.command,
                path=split.path,
                query=split.query,
                headers=headers,
                body=body,
                kind=kind,
                _key_digests=digests,
            )
            # Recorded before the answer is written: a client that has its response can rely
            # on finding its request in ``fake.requests`` (status is set before sending).
            fake._record(rec)
            self._respond(rec, len(raw))

        def _respond(self, rec: RecordedRequest, raw_len: int) -> None:
            if rec.kind == "hello":
                rec.status = 200
                self._send(200, b"", "text/plain")
                return
            if rec.kind == "other":
                rec.status = 404
                self._send_json(404, error_body(404, f"no route for {rec.method} {rec.path}"))
                return
            failure = fake._take_failure()
            if failure is not None:
                rec.status = failure.status
                self._send_json(failure.status, failure.body, failure.headers)
                return
            input_tokens = fake._estimate_input_tokens(raw_len)
            if rec.kind == "count_tokens":
                rec.status = 200
                self._send_json(200, {"input_tokens": input_tokens})
                return
            r = fake._next_reply(rec.kind)
            rec.reply = r
            if r.delay_s > 0:
                time.sleep(r.delay_s)
            model = str(rec.json.get("model") or "claude-sonnet-4-5")
            rec.status = 200
            if rec.json.get("stream"):
                out = "".join(
                    f"event: {name}\ndata: {json.dumps(data)}\n\n"
                    for name, data in sse_events(r, model, input_tokens)
                )
                self._send(
                    200,
                    out.encode(),
                    "text/event-stream; charset=utf-8",
                    {"Cache-Control": "no-cache"},
                )
            else:
                self._send_json(200, message_json(r, model, input_tokens))

        def do_POST(self) -> None:
            self._handle()

        def do_GET(self) -> None:
            self._handle()

        def do_HEAD(self) -> None:
            self._handle()

        def do_PUT(self) -> None:
            self._handle()

        def do_DELETE(self) -> None:
            self._handle()

    return Handler
