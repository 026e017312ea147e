"""The MCP server: every tool group and the resources, calling the daemon through one
:class:`~parhelia_cli.mcp_server.bridge.Bridge`."""

from __future__ import annotations

from parhelia import __version__
from parhelia_cli.mcp_server import resources
from parhelia_cli.mcp_server.bridge import Bridge
from parhelia_cli.mcp_server.errors import ParheliaMCP
from parhelia_cli.mcp_server.tools import (
    Registrar,
    checkpoints,
    containers,
    events,
    sessions,
    system,
    tasks,
)

INSTRUCTIONS = """\
Parhelia runs Claude Code tasks in isolated local workers or Modal sandboxes, checkpointed,
resumable and budget-capped; results come back as a branch or patch. These tools talk to
the user's parheliad daemon (started on demand). Ids (t-..., s-..., c-..., cp-...) may be
shortened to any unique prefix. A task runs asynchronously: create it, then poll
parhelia_task_show (or parhelia_events_since with the last event id you saw) until its
status is completed, failed or cancelled; parhelia_task_diff shows what it changed.
Errors carry a Parhelia code such as E201 TASK_NOT_FOUND or E300 BUDGET_EXCEEDED."""

GROUPS = (tasks, containers, events, checkpoints, sessions, system)
"""The tool groups, in the order clients list their tools."""


def build(bridge: Bridge) -> ParheliaMCP:
    """The MCP server with every Parhelia tool, calling the daemon through ``bridge``."""
    mcp = ParheliaMCP("parhelia", title="Parhelia", version=__version__,
                      instructions=INSTRUCTIONS)
    registrar = Registrar(mcp, bridge)
    for group in GROUPS:
        group.register(registrar)
    resources.register(mcp, bridge)
    return mcp
