"""``parhelia mcp-server``: Parhelia's tools for MCP clients, over stdio.

Every tool makes the same gRPC call(s) as the matching CLI command, through the typed
client :mod:`parhelia_cli.api` over :mod:`parhelia_cli.client` (socket resolution,
autostart, version check, error mapping), and returns the same snake_case dict that
command prints with ``--json`` (:mod:`parhelia_cli.convert`). Expected failures become
``ToolError`` with the E-code (``E201 TASK_NOT_FOUND: ...``): the client sees
``isError``. Nothing is written to stdout but the protocol; logs go to stderr.
See docs/adr/0012-mcp-bridge.md.

The package: :mod:`.bridge` (the daemon connection), :mod:`.schema` (parameter types and
argument checks), :mod:`.errors`, :mod:`.tools` (one module per group, each registering
its tools), :mod:`.resources`, :mod:`.server` (``build``) and :mod:`.stdio` (``serve``).
It imports the ``mcp`` SDK: only the ``mcp-server`` command
(:mod:`parhelia_cli.commands.mcp`) imports it, so the rest of the CLI stays fast.
"""

from parhelia_cli.mcp_server.bridge import Bridge
from parhelia_cli.mcp_server.errors import ParheliaMCP
from parhelia_cli.mcp_server.server import INSTRUCTIONS, build
from parhelia_cli.mcp_server.stdio import ENDLESS_METHODS, Unanswered, malformed_reply, serve

__all__ = ["ENDLESS_METHODS", "INSTRUCTIONS", "Bridge", "ParheliaMCP", "Unanswered", "build",
           "malformed_reply", "serve"]
