"""Backend names, defined once.

A backend runs worker containers: ``local`` (isolated worker processes on this machine)
or ``modal`` (Modal sandboxes). The daemon's registry, the configuration key
``orchestrator.default_backend``, task validation, the worker spec, the CLI's
``--backend`` choices and the MCP bridge's input schema all take the names from here.
Standard library only: the worker ships this package into the sandbox image.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

Backend = Literal["local", "modal"]
"""A backend name; a ``Literal`` so that schemas (the MCP bridge's) carry it as an enum."""

BACKENDS: Final[tuple[Backend, ...]] = get_args(Backend)
"""Every backend name, in the order help lists them."""

LOCAL: Final[Backend] = "local"
MODAL: Final[Backend] = "modal"

DEFAULT_BACKEND: Final[Backend] = LOCAL
"""Where a task runs when neither it nor the configuration chooses."""
