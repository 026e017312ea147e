"""The tools, by group: each module's ``register`` adds its tools to the server through a
:class:`Registrar` (``parhelia_cli.mcp_server.server`` calls them in the order clients list
the tools in)."""

from __future__ import annotations

from typing import Any

from mcp.types import ToolAnnotations

from parhelia_cli.mcp_server.bridge import Bridge
from parhelia_cli.mcp_server.errors import ParheliaMCP


class Registrar:
    """What a group of tools registers itself with: the server, the daemon's API and the
    bridge's event subscriptions."""

    def __init__(self, mcp: ParheliaMCP, bridge: Bridge) -> None:
        self.mcp = mcp
        self.api = bridge.api
        self.subscriptions = bridge.subscriptions

    def tool(self, name: str, annotations: ToolAnnotations, description: str | None = None
             ) -> Any:
        """A decorator adding ``fn`` as the tool ``name``; its docstring (on one line) is
        the description the model reads, unless ``description`` is given."""
        def register(fn: Any) -> Any:
            text = description if description is not None else fn.__doc__ or ""
            self.mcp.add_tool(fn, name=name, description=" ".join(text.split()),
                              annotations=annotations, structured_output=True)
            return fn
        return register
