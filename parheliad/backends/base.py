"""The backend contract (docs/adr/0017-backend-contract-volume-sync.md, ADR 0025).

A backend launches one worker incarnation per ``ContainerSpec`` and reports on it;
it knows nothing about tasks, budgets or the database. The daemon's core drives it.
Everything a worker tells the daemon travels through the backend's channel
(``events``); everything the daemon tells a running worker through ``control``.

:class:`Backend` is what every backend does. What only some do is a capability, a
``runtime_checkable`` protocol the core asks with ``isinstance``: :class:`ArgvAttach`
(the user's terminal attaches by running an argv), :class:`DaemonTerminal` (the daemon
opens the terminal), :class:`SshTunnel` (``session attach --ssh``), :class:`OwnCredential`
(a credential of the backend's own, E400 without it), :class:`ComputeBilling` (the
backend's own compute figures), :class:`SelfCheck` (``parhelia doctor``'s checks) and
:class:`LaunchWait` (a launch that waits for capacity, shown while it waits) and
:class:`SecretCloner` (a private repository fetched in a sandbox of its own with a named
secret of the backend's, ADR 0055).
What the core may rely on before a backend is built (its limits, what its compute costs)
is the class's :class:`Terms`, read through :func:`parheliad.backends.registry.terms`.
No core module names a backend.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from parhelia.clonejob import CloneRequest, CloneResult
from parhelia.errors import ParheliaError
from parhelia.sandbox import SandboxSpec
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
    sandbox: SandboxSpec | None = None
    """The container the worker puts its agent in (local: bubblewrap, ADR 0030); None
    where the backend's own sandbox is the container (Modal) or the user turned it off."""


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


END_OOM = "oom"
"""The container was killed for using more memory than it has (``--memory``)."""
END_EVICTED = "evicted"
"""The backend reclaimed the container's machine, or failed itself: not the worker's doing
(recovered without counting a restart)."""
END_INIT_FAILURE = "init_failure"
"""The container never started its command (its image or mounts failed): E505."""
ENDS = (END_OOM, END_EVICTED, END_INIT_FAILURE)


@dataclass(frozen=True)
class ContainerStatus:
    """``running`` is False once the container is gone; ``exit_code`` when known.
    ``end``: why the backend says it ended beyond its exit code (one of ``ENDS``, "" for
    an ordinary end), with the backend's own words in ``detail``."""

    running: bool
    exit_code: int | None = None
    detail: str = ""
    end: str = ""


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


@dataclass(frozen=True)
class Terms:
    """What a backend promises a task, known from its class without building it: the
    core validates options and prices compute with it, whatever the backend is."""

    max_task_timeout_seconds: int | None = None
    """The longest task timeout it can hold (None: only the daemon's own limit)."""
    timeout_limit: str = ""
    """Why, for the refusal of a longer one."""
    compute_priced: bool = True
    """Whether its compute costs money: priced at the configured ``[rates]`` while it
    runs (and corrected by :class:`ComputeBilling` where the backend offers it). False:
    its compute is free, for the reason ``free_compute`` gives in estimates."""
    free_compute: str = ""
    worker_reports_isolation: bool = False
    """Whether its worker says how it contains its agent (the ``worker_isolation``
    record, first one only). Otherwise the daemon decides at launch
    (``Backend.isolation``) and such a record, written where the agent runs, is ignored."""


@runtime_checkable
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
    terms: Terms
    """The class's :class:`Terms` (the same for every instance)."""

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

    async def push(self, local: Volume, keys: Sequence[str], *, session_id: str) -> int:
        """Copy ``keys`` from the daemon's volume to where the workers of ``session_id``
        see them on this backend's volume (Modal: that session's area only); blobs
        (``cas/``) the backend already holds are not sent again. Returns the bytes sent
        (0 when both volumes are one)."""
        ...

    async def pull(self, local: Volume, keys: Sequence[str], *, session_id: str) -> int:
        """Copy ``keys`` as the workers of ``session_id`` wrote them (Modal: from that
        session's area only) to the daemon's volume; blobs the daemon holds are not
        fetched, keys absent on the backend are skipped. Returns bytes fetched."""
        ...

    def isolation(self, container_id: str) -> tuple[str, str] | None:
        """``(isolation, credential)`` (``parhelia.sandbox`` words) when the backend
        decided them at launch (Modal: its sandbox, and the outbound policy or a secret);
        None when the worker reports them (local: ``worker_isolation``)."""
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

    async def aclose(self) -> None:
        """At the daemon's shutdown: stop what the backend runs in the daemon (live
        channel readers); the workers themselves keep running."""
        ...


# -- capabilities: what only some backends do ------------------------------------------


@runtime_checkable
class ArgvAttach(Protocol):
    """The user's own terminal attaches to a container's TUI by running an argv (the
    local backend: ``tmux attach`` on the TUI's private socket)."""

    def attach_argv(self, backend_id: str, container_id: str) -> builtins.list[str]:
        """The argv; E601 when nothing can be attached to now."""
        ...


class Terminal(Protocol):
    """One terminal the daemon holds open on a container's TUI."""

    def output(self) -> AsyncIterator[bytes]: ...

    async def write(self, data: bytes) -> None: ...

    async def resize(self, rows: int, cols: int) -> None: ...

    async def close(self) -> None:
        """The user is gone: hang the attached client up."""
        ...

    async def wait(self) -> int: ...


@runtime_checkable
class DaemonTerminal(Protocol):
    """The daemon opens the terminal on a container's TUI and relays it
    (``SessionService.AttachTerminal``; Modal: an exec with a PTY)."""

    def terminal_argv(self, container_id: str) -> builtins.list[str]:
        """What runs in the container to attach to its TUI."""
        ...

    async def open_terminal(self, backend_id: str, container_id: str, argv: Sequence[str],
                            rows: int, cols: int, term: str) -> Terminal: ...


@runtime_checkable
class SshTunnel(Protocol):
    """``session attach --ssh``: an interactive worker runs sshd behind a tunnel, and its
    spec carries the session's public key."""

    def terminal_argv(self, container_id: str) -> builtins.list[str]: ...

    async def ssh_endpoint(self, backend_id: str) -> tuple[str, int]:
        """(host, port) of the tunnel to the container's sshd."""
        ...


@runtime_checkable
class OwnCredential(Protocol):
    """The backend needs a credential of its own besides the agent's (Modal: its token):
    a task refused for want of it is refused with E400, not E500."""

    def has_own_credential(self) -> bool:
        """Whether it is configured (no network call)."""
        ...


@runtime_checkable
class ComputeBilling(Protocol):
    """The backend keeps its own figure of what compute cost; the budget replaces its
    estimates at the configured rates with it once a container ended."""

    async def compute_costs(self, containers: Sequence[tuple[str, float]]) -> dict[str, Decimal]:
        """The figure (USD) of what each ``(container_id, started_at)`` (epoch seconds)
        cost over its life, for those it has one for."""
        ...


CheckStatus = Literal["ok", "warn", "fail"]
OK: CheckStatus = "ok"
WARN: CheckStatus = "warn"
FAIL: CheckStatus = "fail"


@dataclass(frozen=True)
class Check:
    """One finding of ``parhelia doctor``, with how to fix it."""

    name: str
    status: CheckStatus
    detail: str
    fix: str = ""


@runtime_checkable
class SelfCheck(Protocol):
    """The backend checks its own setup for ``parhelia doctor`` (no network call)."""

    def doctor(self, *, default: bool) -> builtins.list[Check]:
        """``default``: it is the configured default backend (a problem then fails)."""
        ...


@runtime_checkable
class LaunchWait(Protocol):
    """A launch may wait a long time for the backend (a GPU's capacity), in plain sight."""

    def launch_wait(self, container_id: str) -> str | None:
        """What a launch in flight waits for, once it has waited a while, else None."""
        ...


@runtime_checkable
class SecretCloner(Protocol):
    """The backend can fetch a repository in a sandbox of its own with a named secret of
    its own, whose value never reaches the daemon (Modal: the secret ``github-token``;
    :mod:`parheliad.core.repo_source`, ADR 0055)."""

    async def has_secret(self, name: str, key: str = ...) -> bool:
        """Whether the named secret exists and holds ``key`` (never its value)."""
        ...

    async def clone_with_secret(self, clone_id: str, request: CloneRequest, secret: str,
                                local: Volume) -> CloneResult:
        """Run the clone; its result, with the commit's pack copied into ``local``."""
        ...
