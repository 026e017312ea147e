"""How a task's agent is contained and where its model credential is: the words the
daemon, the worker, ``task show`` and ``doctor`` share (docs/adr/0030-local-sandbox.md).
Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MODE_AUTO = "auto"
"""Contain the local agent when bubblewrap works here; otherwise run it as before and say
so (an event, ``task show``, ``doctor``)."""
MODE_REQUIRED = "required"
"""Contain it, or fail the task (E609) rather than run it uncontained."""
MODE_OFF = "off"
"""Never contain it (the user chose to)."""
MODES = (MODE_AUTO, MODE_REQUIRED, MODE_OFF)
DEFAULT_MODE = MODE_AUTO

ISOLATION_BUBBLEWRAP = "bubblewrap"
"""The local agent runs in a bwrap container (the worker stays outside)."""
ISOLATION_NONE = "none"
"""The local agent runs as the user, with everything the user can reach."""
ISOLATION_MODAL = "modal sandbox"
"""The worker and its agent run in a Modal sandbox that mounts only its session's area."""

CREDENTIAL_PROXY = "local proxy"
"""The local worker holds the credential and forwards the agent's API calls, adding it;
the agent's environment holds a placeholder."""
CREDENTIAL_OUTBOUND = "outbound policy"
"""Modal injects the credential into the sandbox's requests to the API host (its outbound
header policy); the agent's environment holds a placeholder."""
CREDENTIAL_ENVIRONMENT = "environment"
"""The credential is in the agent's environment (local, uncontained)."""
CREDENTIAL_SECRET = "modal secret"  # noqa: S105 - a word, not a secret
"""The credential is in the sandbox's environment through a Modal secret (fallback)."""
CREDENTIAL_OUTSIDE = frozenset({CREDENTIAL_PROXY, CREDENTIAL_OUTBOUND})
"""The modes in which nothing the agent can read holds the credential."""

PLACEHOLDER_PREFIX = "parhelia-placeholder-"
"""Starts every placeholder credential an agent sees (never a real credential's prefix)."""


@dataclass(frozen=True)
class SandboxSpec:
    """The local worker's container, as the daemon asks for it in the worker spec."""

    mode: str = DEFAULT_MODE
    hide: list[str] = field(default_factory=list)
    """Absolute directories the agent must not see (the user's home, ``PARHELIA_HOME``, the
    daemon's config, state, data and socket directories)."""
    read_only: list[str] = field(default_factory=list)
    """Absolute paths below a hidden directory the agent may read (``sandbox.read_only``)."""


def describe(isolation: str, credential: str) -> str:
    """One line for people: how the agent is contained and where its credential is."""
    where = ("outside the sandbox (the agent sees a placeholder)"
             if credential in CREDENTIAL_OUTSIDE else
             "in the agent's environment" if credential else "not reported")
    return f"{isolation or 'not reported'}; model credential {where}"
