"""The backend contract (DESIGN.md "The backend contract").

A backend launches one worker incarnation per ``ContainerSpec`` and reports on it;
it knows nothing about tasks, budgets or the database. The daemon's core drives it.
Everything a worker tells the daemon travels through the backend's channel
(``events``); everything the daemon tells a running worker through ``control``.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from modal_worker.volume import Volume


@dataclass(frozen=True)
class ContainerSpec:
    """What to launch: the worker spec (a JSON-able dict, see modal_worker.spec) plus
    the resources and identity the backend itself needs."""

    container_id: str
    task_id: str
    session_id: str
    owner_tag: str
    worker_spec: dict[str, Any]
    cpu: float
    memory_mb: int
    gpu: str
    timeout_seconds: int
    workspace_dir: str
    secret_env: dict[str, str] = field(default_factory=dict, repr=False)
    """Values for the worker's process environment that must never be written anywhere
    (``sync.pass_env``): not in the spec file, the database, events or logs. Local: added
    to the worker's environment; Modal: a ``modal.Secret.from_dict``."""


@dataclass(frozen=True)
class ContainerStatus:
    """``running`` is False once the container is gone; ``exit_code`` when known."""

    running: bool
    exit_code: int | None = None
    detail: str = ""


@dataclass(frozen=True)
class ListedContainer:
    backend_id: str
    container_id: str
    owner_tag: str
    running: bool
    started_at: float | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ChannelBatch:
    records: list[dict[str, Any]]
    cursor: int


class Backend(Protocol):
    name: str

    @property
    def volume(self) -> Volume:
        """Where specs, checkpoints, results and logs of this backend's workers live."""
        ...

    async def launch(self, spec: ContainerSpec) -> str:
        """Start a worker; return the backend id. Raises ParheliaError (E602/E500)."""
        ...

    async def status(self, backend_id: str, container_id: str) -> ContainerStatus: ...

    async def statuses(self, items: Sequence[tuple[str, str]]) -> builtins.list[ContainerStatus]:
        """``status`` of many ``(backend_id, container_id)`` at once, in order (one round
        trip: the listener asks about every live container each second)."""
        ...

    async def list(self, owner_tag: str) -> builtins.list[ListedContainer]:
        """Containers carrying ``owner_tag`` (and only those)."""
        ...

    async def terminate(self, backend_id: str, grace_seconds: float = 0.0) -> None: ...

    async def events(self, container_id: str, cursor: int) -> ChannelBatch:
        """Channel records after ``cursor``; the returned cursor is opaque to callers."""
        ...

    async def control(self, backend_id: str, container_id: str,
                      message: dict[str, Any]) -> None: ...

    def attach_argv(self, backend_id: str, container_id: str) -> builtins.list[str]: ...

    def available(self) -> tuple[bool, str]:
        """Whether this backend can launch now, and why not."""
        ...
