"""The stdio transport: ``MCPServer.run(\"stdio\")`` with a JSON-RPC error for a
malformed line and every request received answered before the server ends at EOF."""

from __future__ import annotations

import logging
import sys
from typing import Any

import anyio
from mcp import types as mcp_types
from mcp.shared.dispatcher import coerce_request_id
from mcp.shared.jsonrpc_dispatcher import cancelled_request_id_from_params
from pydantic import ValidationError

from parhelia_cli.mcp_server import live
from parhelia_cli.mcp_server.bridge import Bridge
from parhelia_cli.mcp_server.errors import ParheliaMCP
from parhelia_cli.mcp_server.server import build


def serve(socket: str | None, autostart: bool, log_level: str = "warning") -> None:
    """Run the stdio server until the client closes stdin."""
    logging.basicConfig(stream=sys.stderr, level=log_level.upper(),
                        format="parhelia mcp-server %(levelname)s %(name)s: %(message)s")
    bridge = Bridge(socket, autostart)
    server = build(bridge)
    if sys.stdin.isatty():
        print("parhelia mcp-server speaks MCP on stdin/stdout; start it from an MCP client "
              "(e.g. `claude mcp add parhelia -- parhelia mcp-server`). Ctrl-D ends it.",
              file=sys.stderr)
    try:
        anyio.run(_serve_stdio, server, bridge.notifier)
    finally:
        bridge.close()


def malformed_reply(exc: Exception) -> Any:
    """The JSON-RPC error answering a line that is not a JSON-RPC message: -32700 (parse
    error, id null) when it is not JSON, -32600 (invalid request, with its id when it has
    a usable one) when it is JSON of the wrong shape."""
    import mcp_types as t

    errors = exc.errors() if isinstance(exc, ValidationError) else []
    if not errors or any(e.get("type") == "json_invalid" for e in errors):
        return t.JSONRPCError(jsonrpc="2.0", id=None, error=t.ErrorData(
            code=t.PARSE_ERROR, message="Parse error: the line is not valid JSON"))
    given = next((e["input"] for e in errors if isinstance(e.get("input"), dict)), None)
    rid = given.get("id") if given is not None else None
    if isinstance(rid, bool) or not isinstance(rid, int | str):
        rid = None
    return t.JSONRPCError(jsonrpc="2.0", id=rid, error=t.ErrorData(
        code=t.INVALID_REQUEST,
        message="Invalid Request: not a JSON-RPC 2.0 request, notification or response "
                "(batches are not supported)"))


ENDLESS_METHODS = frozenset({"subscriptions/listen"})
"""Requests that never end on their own: at stdin's EOF they are stopped, not awaited."""


class Unanswered:
    """The requests a client sent that have no answer yet (the ids, as the SDK correlates
    them), so that at stdin's EOF the server finishes them instead of cancelling them."""

    def __init__(self) -> None:
        self._ids: set[mcp_types.RequestId] = set()
        self._drained: anyio.Event | None = None

    def received(self, message: mcp_types.JSONRPCMessage) -> None:
        if isinstance(message, mcp_types.JSONRPCRequest):
            if message.method not in ENDLESS_METHODS:
                self._ids.add(coerce_request_id(message.id))
        elif (isinstance(message, mcp_types.JSONRPCNotification)
              and message.method == "notifications/cancelled"):
            # The client stopped waiting: a cancelled request gets no answer.
            cancelled = cancelled_request_id_from_params(message.params)
            if cancelled is not None:
                self._settle(cancelled)

    def answered(self, message: mcp_types.JSONRPCMessage) -> None:
        if isinstance(message, mcp_types.JSONRPCResponse | mcp_types.JSONRPCError) and \
                message.id is not None:
            self._settle(message.id)

    def _settle(self, request_id: mcp_types.RequestId) -> None:
        self._ids.discard(coerce_request_id(request_id))
        if not self._ids and self._drained is not None:
            self._drained.set()

    async def drain(self) -> None:
        """Wait until every request received so far is answered (at EOF: no more come)."""
        if self._ids:
            self._drained = anyio.Event()
            await self._drained.wait()


async def _serve_stdio(server: ParheliaMCP, notifier: live.Notifier | None = None) -> None:
    """``MCPServer.run("stdio")``, except that a malformed line gets its JSON-RPC error
    (the SDK drops it silently, leaving the client waiting), and that at stdin's EOF the
    requests already received are finished and answered before the server ends (the
    SDK would cancel them): each within its own timeout; a subscriptions/listen stream
    is stopped."""

    from mcp.server.stdio import stdio_server
    from mcp.shared.message import SessionMessage

    lowlevel = server._lowlevel_server
    unanswered = Unanswered()
    async with stdio_server() as (read_stream, write_stream):
        send, receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        answer, answers = anyio.create_memory_object_stream[SessionMessage](0)

        async def pump() -> None:
            async with send:
                async for item in read_stream:
                    if isinstance(item, Exception):
                        await write_stream.send(SessionMessage(malformed_reply(item)))
                    else:
                        unanswered.received(item.message)
                        await send.send(item)
                # EOF. Closing `send` makes the SDK cancel what is still in flight:
                # first let every request received finish and be answered.
                await unanswered.drain()

        async def write() -> None:
            async with write_stream, answers:
                async for item in answers:
                    await write_stream.send(item)
                    unanswered.answered(item.message)

        async with anyio.create_task_group() as tg:
            tg.start_soon(pump)
            if notifier is not None:
                tg.start_soon(notifier.run)
            async with anyio.create_task_group() as writing:
                writing.start_soon(write)
                async with answer:  # closed, the writer ends once every answer is out
                    await lowlevel.run(receive, answer,
                                       lowlevel.create_initialization_options())
            tg.cancel_scope.cancel()
