"""The backend contract (docs/adr/0017-backend-contract-volume-sync.md).

A backend launches one worker incarnation per ``ContainerSpec`` and reports on it;
it knows nothing about tasks, budgets or the database. The daemon's core drives it.
Everything a worker tells the daemon travels through the backend's channel
(``events``); everything the daemon tells a running worker through ``control``.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from parhelia.errors import ParheliaError
from parhelia.volume import Volume
from parheliad.environments.model import ImageRecipe


class NoCapacity(ParheliaError):
    """``launch`` found no capacity now (Modal's ``ResourceExhaustedError``): the task
    stays queued with this message as its reason and is retried with backoff; it is
    neither a failure nor a restart."""

    def __init__(self, message: str, *, retry_after_seconds: float | None = None) -> None:
        super().__init__("E500", message)
        self.retry_after_seconds = retry_after_seconds


class BackendUnreachable(ParheliaError):
    """The backend's service could not be asked (connection error, timeout). Says
    nothing about the containers: they show ``unreachable``, nothing is terminated or
    relaunched, heartbeat silence is not counted; a launch stays queued."""

    def __init__(self, message: str) -> None:
        super().__init__("E502", message)


@dataclass(frozen=True)
class WorkerPaths:
    """Where the worker sees things, as the backend lays them out (written in its spec).

    ``sync_argv`` is run by the worker after each checkpoint and after its result so
    the daemon's side of the volume sees them (``["sync", "/vol"]`` on Modal; none
    locally, where both sides are one directory)."""

    volume_dir: str
    workspace_dir: str
    claude_config_dir: str
    sync_argv: tuple[str, ...] = ()
    tmux_socket: str = ""
    """Where an interactive TUI of this container listens ("" = the worker's default,
    :func:`parhelia.tuisocket.socket_path` where it runs)."""


@dataclass(frozen=True)
class Credentials:
    """Whether the worker will have the agent's credentials, and from where.

    ``env`` is where ``sync.pass_env`` values are read from (the daemon's environment);
    it is never written anywhere. ``detail`` says where the credential comes from, or,
    when ``ok`` is False, what to do about it."""

    ok: bool
    detail: str
    env: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class EnvironmentLaunch:
    """What a backend with images (Modal) needs of a task's environment, besides the
    worker spec's ``environment`` block (docs/adr/0052-environments-on-modal.md)."""

    hash: str
    image_hash: str
    image_id: str
    """The environment's built image (``parheliad.environments.builds``)."""
    setup: bool
    """Setup commands to run in a sandbox of their own first, unless ``warm_image_id``."""
    setup_secrets: tuple[str, ...] = ()
    """Modal secret names, given to the setup sandbox only."""
    agent_hosts: tuple[str, ...] | None = None
    """The domains the agent's sandbox may reach; None: any (network ``full``)."""
    cache_volume: str = ""
    """The repository's dependency cache volume ("" = none), mounted in the setup sandbox
    only (ADR 0052)."""
    warm_image_id: str = ""
    """A prepared filesystem (a snapshot after this environment's setup, same base) to
    start the agent's sandbox from: no setup sandbox then."""
    setup_timeout_seconds: float = 1800.0
    snapshot_ttl_seconds: int = 72 * 3600
    on_snapshot: Callable[[str], Awaitable[None]] | None = field(default=None, repr=False,
                                                                 compare=False)
    """Records a new prepared filesystem (its image id) for the next task's warm start."""


@dataclass(frozen=True)
class ContainerSpec:
    """What to launch: the worker spec (a JSON-able dict, see parhelia.spec) plus
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
    paths: WorkerPaths
    secret_env: dict[str, str] = field(default_factory=dict, repr=False)
    """Values for the worker's process environment that must never be written anywhere
    (``sync.pass_env``; a local worker's setup secrets): not in the spec file, the
    database, events or logs. Local: added to the worker's environment; Modal: a
    ``modal.Secret.from_dict``."""
    environment: EnvironmentLaunch | None = None
    """The task's environment, for a backend that builds images (None elsewhere)."""


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


class ImageBackend(Protocol):
    """A backend whose workers run in images it builds (Modal): environments give it a
    recipe to build once per image hash (docs/adr/0052-environments-on-modal.md)."""

    name: str
    builds_images: bool

    async def build_image(self, recipe: ImageRecipe, context_dir: Path | None) -> str:
        """Build (or find built) the image of ``recipe``; its image id. ``context_dir``
        holds a Dockerfile base's build context (and the Dockerfile as ``Dockerfile``)."""
        ...

    async def delete_cache(self, name: str) -> bool:
        """Remove a dependency cache volume; whether it existed."""
        ...


class Backend(Protocol):
    name: str

    @property
    def volume(self) -> Volume:
        """This backend's own volume: where its workers' specs, checkpoints, results and
        logs live. The daemon reads its local copy (``parheliad.core.volsync``)."""
        ...

    def available(self) -> tuple[bool, str]:
        """Whether this backend can launch now, and why not (no network call)."""
        ...

    def worker_paths(self, session_id: str, container_id: str) -> WorkerPaths:
        """The paths the worker of this container sees (its spec carries them)."""
        ...

    async def credentials(self) -> Credentials:
        """Whether a worker would have the agent's credentials (checked before launch)."""
        ...

    async def push(self, local: Volume, keys: Sequence[str]) -> int:
        """Copy ``keys`` from the daemon's volume to this backend's; blobs (``cas/``) the
        backend already holds are not sent. Returns the bytes sent (0 when both are one)."""
        ...

    async def pull(self, local: Volume, keys: Sequence[str]) -> int:
        """Copy ``keys`` from this backend's volume to the daemon's; blobs the daemon holds
        are not fetched, keys absent on the backend are skipped. Returns bytes fetched."""
        ...

    async def launch(self, spec: ContainerSpec) -> str:
        """Start a worker from the spec the daemon pushed to ``specs/<container>.json``;
        return the backend id. A retry of the same container must not start a second
        worker. Raises NoCapacity, BackendUnreachable or ParheliaError (E602/E500...)."""
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

    async def compute_costs(self, containers: Sequence[tuple[str, float]]) -> dict[str, Decimal]:
        """The backend's own figure (USD) of what each ``(container_id, started_at)``
        (epoch seconds) cost over its life, for those it has one for; ``{}`` when it keeps
        none (a local worker's compute is free). The budget replaces its estimates with it."""
        ...

    async def events(self, container_id: str, cursor: int) -> ChannelBatch:
        """Channel records after ``cursor``; the returned cursor is opaque to callers."""
        ...

    def last_heard(self, container_id: str) -> int | None:
        """When (µs since the epoch) this backend's live channel last carried a heartbeat
        of the container, as it arrived and before the listener applied it (the listener
        holds a batch back while it copies the checkpoints the batch announces, which can
        take longer than several heartbeat intervals); now, once the channel carried the
        worker's exit or the backend saw the container end (nothing more is due: the exit
        check settles it). None when the listener reads the channel itself, so that
        nothing can hold a heartbeat back."""
        ...

    async def control(self, backend_id: str, container_id: str,
                      message: dict[str, Any]) -> None: ...

    def attach_argv(self, backend_id: str, container_id: str) -> builtins.list[str]:
        """What the user's terminal runs to attach to the container's TUI; empty when the
        backend attaches through the daemon (``SessionService.AttachTerminal``)."""
        ...

    async def aclose(self) -> None:
        """At the daemon's shutdown: stop what the backend runs in the daemon (live
        channel readers); the workers themselves keep running."""
        ...
