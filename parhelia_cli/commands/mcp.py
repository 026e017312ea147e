"""``parhelia mcp-server``: serve Parhelia's tools to MCP clients over stdio.

The bridge itself is :mod:`parhelia_cli.mcp_server`; it (and the ``mcp`` SDK) is
imported only when this command runs, so the rest of the CLI stays fast.
"""

from __future__ import annotations

import click

from parhelia_cli.context import settings


@click.command("mcp-server")
@click.option("--no-autostart", is_flag=True,
              help="Do not start parheliad when it is not running (tools then fail with "
                   "E504). PARHELIA_NO_AUTOSTART=1 does the same.")
@click.option("--log-level", type=click.Choice(("debug", "info", "warning", "error")),
              default="warning", show_default=True, help="What the server logs (on stderr).")
def mcp_server(no_autostart: bool, log_level: str) -> None:
    """Serve Parhelia's tools to an MCP client over stdin/stdout.

    Each tool makes the same call to parheliad as the matching command and returns
    the same JSON as its --json: tasks (create, list, show, cancel, retry, diff,
    logs), containers, events (list, and events_since to pull new ones), checkpoints
    (create, list, restore), sessions (list, resume), budget (status, estimate),
    health, reconciler status and doctor. Errors carry the E-code.

    \b
    Claude Code:     claude mcp add -s user parhelia -- parhelia mcp-server
    Other clients:   {"command": "parhelia", "args": ["mcp-server"]}

    `parhelia help mcp` lists the tools.
    """
    from parhelia_cli import mcp_server as bridge

    bridge.serve(settings().socket, autostart=not no_autostart, log_level=log_level)
