"""Failures as the CLI words them: a tool's or a resource's error carries the E-code
(``E201 TASK_NOT_FOUND: ...``), a request handler's the JSON-RPC error of it."""

from __future__ import annotations

from typing import Any

import anyio
from mcp import types as mcp_types
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.shared.exceptions import MCPError as McpError
from pydantic import ValidationError

from parhelia.errors import Code
from parhelia_cli.errors import CliError


def tool_error(exc: BaseException) -> ToolError | None:
    """The ToolError a client should see for ``exc`` (None: leave it to the SDK)."""
    if isinstance(exc, CliError):
        text = str(exc) + (f" ({exc.hint})" if exc.hint else "")
        return ToolError(text)
    if isinstance(exc, ValidationError):
        problems = []
        code: Code = "E101"
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "arguments"
            if err["type"] == "missing":
                code = "E102"
                problems.append(f"{where}: required")
            else:
                problems.append(f"{where}: {err['msg']}")
        return ToolError(str(CliError(code, "; ".join(problems))))
    return None


class ParheliaMCP(MCPServer):
    """MCPServer whose tool (and resource) failures read like the CLI's:
    ``E### NAME: message``."""

    on_read: Any = None
    """Told each URI a client reads (resource subscriptions count that as use)."""

    async def read_resource(self, uri: Any, context: Any = None) -> Any:
        try:
            result = await super().read_resource(uri, context)
        except ResourceError as exc:
            cause = exc.__cause__
            if isinstance(cause, CliError):
                kind = ResourceNotFoundError if cause.code.startswith("E2") else ResourceError
                raise kind(str(cause)) from cause
            raise
        if self.on_read is not None:
            self.on_read(str(uri))
        return result

    async def call_tool(self, name: str, arguments: dict[str, Any],
                        context: Any = None) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            mapped = tool_error(exc.__cause__) if exc.__cause__ is not None else None
            if mapped is None:
                raise
            raise mapped from exc.__cause__



async def as_mcp_error(fn: Any) -> Any:
    """``fn()`` in a worker thread; a CliError becomes the JSON-RPC error a request
    handler answers with (the code's text, as tool errors carry it)."""
    try:
        return await anyio.to_thread.run_sync(fn)
    except CliError as exc:
        code = mcp_types.INVALID_PARAMS if exc.code.startswith(("E1", "E2")) else \
            mcp_types.INTERNAL_ERROR
        raise McpError(code, str(exc)) from None

