"""Claude Code permission modes (Claude Code 2.1.332 ``--permission-mode``), defined once.

Used by the configuration (``agent.permission_mode`` and the narrowing of a project
file), task validation, the worker spec, the CLI's ``--permission-mode`` choices and the
MCP bridge's input schema. Claude Code also knows ``default`` (ask for everything): a
headless task has nobody to ask, so Parhelia does not offer it. Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal, get_args

PermissionMode = Literal["acceptEdits", "auto", "bypassPermissions", "manual", "dontAsk", "plan"]
"""A permission mode; a ``Literal`` so that schemas (the MCP bridge's) carry it as an enum."""

PERMISSION_MODES: Final[tuple[PermissionMode, ...]] = get_args(PermissionMode)
"""Every mode, in the order help lists them."""

DEFAULT_PERMISSION_MODE: Final[PermissionMode] = "acceptEdits"
"""The mode of a task when neither it nor the configuration chooses."""

PERMISSION_RANK: Final[Mapping[str, int]] = MappingProxyType({
    "plan": 0, "dontAsk": 1, "manual": 1, "acceptEdits": 2, "auto": 3, "bypassPermissions": 4,
})
"""How much a mode lets the agent do without asking (higher = more); one entry per
:data:`PERMISSION_MODES`."""


def wider(mode: str, than: str) -> bool:
    """Whether ``mode`` lets the agent do more without asking than ``than``: a project
    file (perhaps from a cloned repository) may choose a mode of the same or a lower
    rank than the user's own configuration, never a wider one. An unknown name counts
    as the widest."""
    top = max(PERMISSION_RANK.values()) + 1
    return PERMISSION_RANK.get(mode, top) > PERMISSION_RANK.get(than, top)
