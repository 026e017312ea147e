"""The Modal backend: one Modal Sandbox per container incarnation.

This is the only module that imports ``modal``, and only when a Modal backend is built
(``load_sdk``): the CLI and the daemon's start never pay for it. The SDK is an object
passed in, so tests give a fake at the SDK boundary. From the daemon only the ``.aio``
calls are used, each under ``asyncio.wait_for`` (a Modal call without network retries for
about a minute; a GPU ``create`` can wait ~21 minutes for capacity).

- Identity: the backend id is the sandbox's ``object_id``; its name is the container id,
  so a retried ``create`` that finds the name taken adopts that sandbox instead of starting
  a second one. Tags: owner (this daemon's instance id), task, session, container.
- Resources: cpu, memory, gpu (``TYPE[:N]``, validated by ``parheliad.core.tasks``), and
  a timeout = the task's + a margin (the worker stops itself at the task's timeout and
  checkpoints first; Modal's own limit only catches a worker that cannot).
- Volume: the ``modal.Volume`` (v2) at ``/vol``; ``push``/``pull`` copy keys between it and
  the daemon's local volume, content-addressed blobs only when the other side lacks them.
- Channel: the spool file on the volume is the truth. Live records come from a long-lived
  ``tail`` exec'd in the sandbox from the daemon's cursor; after the sandbox ended (or the
  daemon was away) the spool is read from the volume (``read_file``). Control: an exec of
  ``python -m modal_worker control``.
- Status and listing: ONE ``Sandbox.list`` per sweep (app + owner tag), whatever the number
  of containers; ``poll`` only for those not listed (ended: their returncode).
- Credentials: the named Modal secret (``modal.secret_name``) if it holds an Anthropic
  credential, else an ephemeral secret from the daemon's environment; never in the spec,
  argv, ``env=`` or a log. Config sync's pass-through values ride in an ephemeral secret.
- Errors: ``modal_errors.map_error`` (catalogue code + recovery line); an unreachable API
  raises ``BackendUnreachable`` and a full GPU pool ``NoCapacity``.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import structlog

from parhelia import envfile, tuisocket
from parhelia.backends import MODAL
from parhelia.credentials import CREDENTIAL_VARS
from parhelia.errors import ParheliaError
from parhelia.events import HEARTBEAT
from parhelia.volume import (
    BLOBS,
    Volume,
    blob_digest,
    in_cas,
    spec_key,
    spool_key,
    validate_key,
)
from parheliad.store.clock import now_us

from .base import (
    ChannelBatch,
    ContainerSpec,
    ContainerStatus,
    Credentials,
    ListedContainer,
    WorkerPaths,
)
from .modal_errors import BackendUnreachable, NoCapacity, map_error
from .modal_image import CLAUDE_CODE_VERSION, worker_image

log = structlog.get_logger(__name__)
T = TypeVar("T")

OWNER_TAG = "parhelia-owner"
TASK_TAG = "parhelia-task"
SESSION_TAG = "parhelia-session"
CONTAINER_TAG = "parhelia-container"
VOLUME_MOUNT = "/vol"
TUNNEL_TIMEOUT_S = 50
SSH_PORT = 22  # the sandbox's sshd (modal_worker.sshd), behind a raw TCP tunnel
SANDBOX_TMP = "/tmp"  # the sandbox's own temp dir, where the worker's TUI listens
WORKSPACE_DIR = "/workspace"
CLAUDE_CONFIG_DIR = "/root/.claude"
SYNC_ARGV = ("sync", VOLUME_MOUNT)
TIMEOUT_MARGIN_S = 600
MODAL_MAX_TIMEOUT_S = 86_400
TASK_TIMEOUT_MAX_S = MODAL_MAX_TIMEOUT_S - TIMEOUT_MARGIN_S
"""The longest task a sandbox can hold with the margin for the worker's final checkpoint."""
_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
CATCHUP_INTERVAL_S = 2.0
CATCHUP_AFTER_END = 15
TAIL_RETRY_S = 5.0
PULL_CONCURRENCY = 8
USAGE_WINDOW_DAYS = 7
"""The longest range ``app.sandboxes.stats`` accepts (modal 1.6.4): an older container's
compute stays an estimate."""


def load_sdk() -> Any:
    """Import the real SDK (only here, only when a Modal backend is built)."""
    import modal

    return modal


@dataclass(frozen=True)
class ModalSettings:
    app_name: str = "parhelia"
    volume_name: str = "parhelia-data"
    secret_name: str = "anthropic-api-key"  # noqa: S105 - a name, not a secret
    call_timeout_seconds: float = 60.0
    launch_timeout_seconds: float = 1500.0
    claude_version: str = CLAUDE_CODE_VERSION


def sandbox_name(container_id: str) -> str:
    """The sandbox name for a container: its id when Modal accepts it, else a stable hash."""
    if _NAME_RE.match(container_id):
        return container_id
    return "c-" + hashlib.sha256(container_id.encode()).hexdigest()[:40]


def sandbox_timeout(task_timeout_seconds: int) -> int:
    return max(60, min(MODAL_MAX_TIMEOUT_S, int(task_timeout_seconds) + TIMEOUT_MARGIN_S))


def token_configured(environ: Mapping[str, str]) -> bool:
    if environ.get("MODAL_TOKEN_ID") and environ.get("MODAL_TOKEN_SECRET"):
        return True
    home = environ.get("HOME") or str(Path.home())
    return (Path(home) / ".modal.toml").is_file()


def _parse_lines(data: bytes) -> tuple[list[tuple[int, dict[str, Any]]], int]:
    """Whole JSON lines of ``data`` as (end offset, record) and the bytes consumed."""
    out: list[tuple[int, dict[str, Any]]] = []
    pos = 0
    while (nl := data.find(b"\n", pos)) >= 0:
        line = data[pos:nl]
        pos = nl + 1
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("seq"), int):
            out.append((pos, record))
    return out, pos


MAX_SPOOL_LINE = 8 << 20
"""A spool line longer than this is skipped by the live tail (the worker's records are
far smaller; the sandbox may write anything into its spool)."""


class _LineBuffer:
    """Whole lines out of a byte stream: ``(size, line)`` per newline, ``line`` None for a
    line over ``MAX_SPOOL_LINE`` (skipped, never held in memory; its size still counts)."""

    def __init__(self) -> None:
        self.parts: builtins.list[bytes] = []
        self.size = 0

    def feed(self, chunk: bytes) -> builtins.list[tuple[int, bytes | None]]:
        out: builtins.list[tuple[int, bytes | None]] = []
        pos = 0
        while (nl := chunk.find(b"\n", pos)) >= 0:
            self._take(chunk[pos:nl + 1])
            out.append((self.size, None if self.size > MAX_SPOOL_LINE
                        else b"".join(self.parts)))
            self.parts, self.size = [], 0
            pos = nl + 1
        self._take(chunk[pos:])
        return out

    def _take(self, piece: bytes) -> None:
        self.size += len(piece)
        if self.size > MAX_SPOOL_LINE:
            self.parts = []
        elif piece:
            self.parts.append(piece)


@dataclass
class _Channel:
    """The daemon's side of one container's spool: the records of bytes ``floor`` to
    ``offset`` not yet consumed, each with the offset where it ends."""

    container_id: str
    offset: int
    floor: int
    records: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    tail: asyncio.Task[None] | None = None
    tail_failed_at: float = 0.0
    ended: bool = False
    catchups_after_end: int = 0
    last_catchup: float = 0.0
    exited: bool = False
    heard_at_us: int | None = None
    """When the live tail last carried a heartbeat (the volume's catch-up, which reads
    what a sandbox wrote who knows when, never sets it)."""

    def add(self, end: int, record: dict[str, Any]) -> None:
        self.records.append((end, record))
        if record.get("type") == "worker_exited":
            self.exited = True

    def consume(self, line: _LineBuffer, chunk: bytes, *, live: bool = False) -> None:
        """The spool's next bytes (from ``offset`` on, live or from the volume): each whole
        line's records, the cursor moved past it."""
        for size, data in line.feed(chunk):
            end = self.offset + size
            if data is None:
                log.warning("modal.spool_line_too_long", container_id=self.container_id,
                            bytes=size)
            else:
                for _, record in _parse_lines(data)[0]:
                    self.add(end, record)
                    if live and record.get("type") == HEARTBEAT:
                        self.heard_at_us = now_us()
            self.offset = end


class ModalBackend:
    """Workers in Modal sandboxes; see the module docstring."""

    name: str = MODAL

    def __init__(self, settings: ModalSettings, environ: Mapping[str, str],
                 sdk: Any = None, owner_tag: str = "", env_path: Path | None = None) -> None:
        self.settings = settings
        self._base_environ = dict(environ)
        self._environ = dict(environ)
        self._env_path = env_path
        """The daemon's env file, re-read by :meth:`credentials` (``parhelia auth set``)."""
        self._sdk_obj = sdk
        self.owner_tag = owner_tag
        self._app: Any = None
        self._image: Any = None
        self._image_lock = asyncio.Lock()
        self._handles: dict[str, Any] = {}
        self._container_of: dict[str, str] = {}
        self._tags_of: dict[str, dict[str, str]] = {}
        self._ended: dict[str, int | None] = {}
        self._channels: dict[str, _Channel] = {}
        self._remote_blobs: set[str] | None = None
        self._secret_key: tuple[str | None, float] | None = None
        self.volume: Volume = _NoVolume(settings.volume_name)

    # -- the SDK ------------------------------------------------------------------------

    @property
    def sdk(self) -> Any:
        if self._sdk_obj is None:
            self._sdk_obj = load_sdk()
        return self._sdk_obj

    async def _call(self, action: str, make: Callable[[], Awaitable[T]],
                    timeout: float | None = None, keep: tuple[type[BaseException], ...] = ()) -> T:
        """One SDK call under a timeout; Modal's errors mapped to the catalogue (except the
        classes in ``keep``, re-raised as they are for the caller to handle)."""
        limit = timeout if timeout is not None else self.settings.call_timeout_seconds
        try:
            return await asyncio.wait_for(make(), limit)
        except TimeoutError:
            raise BackendUnreachable(f"Modal did not answer within {limit:g} s while {action}. "
                                     "Recovery: nothing is stopped meanwhile; check the "
                                     "network and https://status.modal.com.") from None
        except keep:
            raise
        except self.sdk.exception.Error as exc:
            raise map_error(exc, action, self.sdk.exception) from None

    async def _collect(self, action: str, make: Callable[[], Any]) -> builtins.list[Any]:
        async def gather() -> builtins.list[Any]:
            return [item async for item in make()]
        return await self._call(action, gather)

    def available(self) -> tuple[bool, str]:
        """No network: is the SDK importable and is a Modal token configured?"""
        if self._sdk_obj is None:
            import importlib.util

            if importlib.util.find_spec("modal") is None:
                return False, "the modal package is not installed (pip install 'modal>=1.6,<1.7')"
        if not token_configured(self._environ):
            return False, ("no Modal token (MODAL_TOKEN_ID/MODAL_TOKEN_SECRET or ~/.modal.toml): "
                           "run `modal token new`, then `parhelia modal setup`")
        return True, (f"app {self.settings.app_name!r}, volume {self.settings.volume_name!r}, "
                      f"secret {self.settings.secret_name!r}")

    def worker_paths(self, session_id: str, container_id: str) -> WorkerPaths:
        return WorkerPaths(VOLUME_MOUNT, WORKSPACE_DIR, CLAUDE_CONFIG_DIR, tuple(SYNC_ARGV))

    # -- app, volume, image, secrets ------------------------------------------------------

    async def app(self, create: bool = True) -> Any:
        if self._app is None:
            name = self.settings.app_name
            self._app = await self._call(
                f"looking up the app {name!r}",
                lambda: self.sdk.App.lookup.aio(name, create_if_missing=create))
        return self._app

    def modal_volume(self, create: bool = True) -> Any:
        """The volume handle (lazy: no call until used)."""
        return self.sdk.Volume.from_name(self.settings.volume_name, create_if_missing=create,
                                         version=2)

    async def ensure_volume(self, create: bool = True) -> Any:
        vol = self.modal_volume(create)
        await self._call(f"opening the volume {self.settings.volume_name!r}",
                         lambda: vol.hydrate.aio())
        return vol

    async def image(self) -> Any:
        """The worker image, built once per daemon (Modal caches its layers)."""
        async with self._image_lock:
            if self._image is None:
                app = await self.app()
                image = worker_image(self.sdk, self.settings.claude_version)
                self._image = await self._call("building the worker image",
                                               lambda: image.build.aio(app),
                                               timeout=self.settings.launch_timeout_seconds)
        return self._image

    async def named_secret_key(self) -> str | None:
        """The credential variable the named Modal secret holds (None: no such secret, or
        none of ours in it). Cached: a hit for the daemon's life, a miss for a minute."""
        cached = self._secret_key
        if cached is not None and (cached[0] is not None or time.monotonic() - cached[1] < 60):
            return cached[0]
        name = self.settings.secret_name
        found: str | None = None
        errors = self.sdk.exception
        try:
            await self._call(f"looking up the secret {name!r}",
                             lambda: self.sdk.Secret.from_name(name).hydrate.aio(),
                             keep=(errors.NotFoundError,))
        except errors.NotFoundError:
            pass
        else:
            for key in CREDENTIAL_VARS:
                secret = self.sdk.Secret.from_name(name, required_keys=[key])
                try:
                    await self._call(f"checking the secret {name!r}",
                                     secret.hydrate.aio,
                                     keep=(errors.NotFoundError, errors.InvalidError))
                except (errors.NotFoundError, errors.InvalidError):
                    continue
                found = key
                break
        self._secret_key = (found, time.monotonic())
        return found

    async def credentials(self) -> Credentials:
        if self._env_path is not None:
            try:
                self._environ = envfile.effective(self._env_path, self._base_environ)
            except ParheliaError as exc:
                return Credentials(False, exc.message, self._environ)
        key = await self.named_secret_key()
        if key is not None:
            return Credentials(True, f"Modal secret {self.settings.secret_name!r} ({key})",
                               self._environ)
        present = [k for k in CREDENTIAL_VARS if self._environ.get(k)]
        if present:
            return Credentials(True, f"{present[0]} from the daemon's environment, sent as an "
                               "ephemeral Modal secret", self._environ)
        return Credentials(False, (
            f"no Anthropic credential for Modal workers: create the secret with `modal secret "
            f"create {self.settings.secret_name} ANTHROPIC_API_KEY=...` (or export "
            "ANTHROPIC_API_KEY where the daemon runs)"), self._environ)

    async def _secrets(self, secret_env: Mapping[str, str]) -> builtins.list[Any]:
        key = await self.named_secret_key()
        values = {k: v for k, v in secret_env.items() if k not in CREDENTIAL_VARS}
        secrets: builtins.list[Any] = []
        if key is not None:
            secrets.append(self.sdk.Secret.from_name(self.settings.secret_name))
        else:
            creds = {k: self._environ[k] for k in CREDENTIAL_VARS if self._environ.get(k)}
            if not creds:
                raise ParheliaError("E400", (await self.credentials()).detail)
            values.update(creds)
        if values:
            secrets.append(self.sdk.Secret.from_dict(values))
        return secrets

    # -- lifecycle ------------------------------------------------------------------------

    def _tags(self, spec: ContainerSpec) -> dict[str, str]:
        return {OWNER_TAG: spec.owner_tag, TASK_TAG: spec.task_id,
                SESSION_TAG: spec.session_id, CONTAINER_TAG: spec.container_id}

    async def launch(self, spec: ContainerSpec) -> str:
        """Start the sandbox (the spec and checkpoint are already on the volume).
        Idempotent: a retry after a lost reply adopts the sandbox of the same name."""
        self.owner_tag = self.owner_tag or spec.owner_tag
        app = await self.app()
        image = await self.image()
        secrets = await self._secrets(spec.secret_env)
        volume = self.modal_volume()
        name = sandbox_name(spec.container_id)
        paths = self.worker_paths(spec.session_id, spec.container_id)
        argv = ("python", "-m", "modal_worker", "run",
                f"{paths.volume_dir}/{spec_key(spec.container_id)}")
        errors = self.sdk.exception
        tags = self._tags(spec)
        try:
            sb = await self._call(
                f"creating the sandbox for {spec.container_id}",
                lambda: self.sdk.Sandbox.create.aio(
                    *argv, app=app, name=name, tags=tags, image=image, secrets=secrets,
                    timeout=sandbox_timeout(spec.timeout_seconds), cpu=float(spec.cpu),
                    memory=int(spec.memory_mb), gpu=spec.gpu or None,
                    volumes={VOLUME_MOUNT: volume},
                    unencrypted_ports=[SSH_PORT] if spec.worker_spec.get(
                        "ssh_authorized_key") else []),
                timeout=self.settings.launch_timeout_seconds, keep=(errors.AlreadyExistsError,))
        except errors.AlreadyExistsError:
            sb = await self._call(
                f"adopting the existing sandbox {name}",
                lambda: self.sdk.Sandbox.from_name.aio(self.settings.app_name, name))
            if not await self._ours(sb):
                raise ParheliaError(
                    "E503", f"a sandbox named {name} already runs in the Modal app "
                    f"{self.settings.app_name!r} under another owner (another daemon): it is "
                    "neither adopted nor touched. Recovery: `parhelia task retry ID` starts "
                    "a new container; give each daemon its own `modal.app_name`.") from None
            log.info("modal.sandbox_adopted", container_id=spec.container_id,
                     sandbox_id=sb.object_id)
        self._remember(sb, tags)
        return str(sb.object_id)

    async def _ours(self, sb: Any) -> bool:
        """Whether a sandbox found by name carries this daemon's owner tag (a name is
        unique within the app only: another daemon sharing the app may hold it)."""
        tags = await self._call(f"reading the tags of {sb.object_id}", lambda: sb.get_tags.aio())
        return bool(self.owner_tag) and dict(tags).get(OWNER_TAG) == self.owner_tag

    def _remember(self, sb: Any, tags: dict[str, str]) -> None:
        self._handles[sb.object_id] = sb
        self._tags_of[sb.object_id] = dict(tags)
        if tags.get(CONTAINER_TAG):
            self._container_of[sb.object_id] = tags[CONTAINER_TAG]

    async def _handle(self, backend_id: str) -> Any:
        sb = self._handles.get(backend_id)
        if sb is None:
            sb = await self._call(f"looking up the sandbox {backend_id}",
                                  lambda: self.sdk.Sandbox.from_id.aio(backend_id))
            self._handles[backend_id] = sb
        return sb

    async def _poll(self, backend_id: str) -> ContainerStatus:
        if backend_id in self._ended:
            return _ended_status(self._ended[backend_id])
        try:
            sb = await self._handle(backend_id)
            code = await self._call(f"polling the sandbox {backend_id}", lambda: sb.poll.aio())
        except ParheliaError as exc:
            if exc.code != "E203":
                raise
            self._ended[backend_id] = None
            return ContainerStatus(running=False, exit_code=None,
                                   detail="the sandbox is not known to Modal")
        if code is None:
            return ContainerStatus(running=True)
        self._ended[backend_id] = int(code)
        return _ended_status(int(code))

    async def status(self, backend_id: str, container_id: str) -> ContainerStatus:
        return await self._poll(backend_id)

    async def _running(self) -> set[str]:
        """Ids of this app's running sandboxes (ours when the owner is known): ONE call."""
        app = await self.app()
        tags = {OWNER_TAG: self.owner_tag} if self.owner_tag else None
        listed = await self._collect("listing sandboxes", lambda: self.sdk.Sandbox.list.aio(
            app_id=app.app_id, tags=tags))
        for sb in listed:
            self._handles.setdefault(sb.object_id, sb)
        return {str(sb.object_id) for sb in listed}

    async def statuses(self, items: Sequence[tuple[str, str]]) -> builtins.list[ContainerStatus]:
        if not items:
            return []
        pending = [b for b, _ in items if b not in self._ended]
        running = await self._running() if pending else set()
        unlisted = [b for b in pending if b not in running]
        polled = dict(zip(unlisted, await asyncio.gather(*(self._poll(b) for b in unlisted)),
                          strict=True))
        out = []
        for backend_id, _ in items:
            if backend_id in self._ended:
                out.append(_ended_status(self._ended[backend_id]))
            elif backend_id in running:
                out.append(ContainerStatus(running=True))
            else:
                out.append(polled[backend_id])
        return out

    async def list(self, owner_tag: str) -> builtins.list[ListedContainer]:
        """Running sandboxes carrying ``owner_tag`` (one list call; tags fetched only for
        sandboxes this daemon has not seen yet)."""
        app = await self.app()
        listed = await self._collect("listing sandboxes", lambda: self.sdk.Sandbox.list.aio(
            app_id=app.app_id, tags={OWNER_TAG: owner_tag}))
        unknown = [sb for sb in listed if sb.object_id not in self._tags_of]

        async def fetch(sb: Any) -> None:
            tags = await self._call(f"reading the tags of {sb.object_id}",
                                    lambda: sb.get_tags.aio())
            self._remember(sb, dict(tags))

        await asyncio.gather(*(fetch(sb) for sb in unknown))
        found = []
        for sb in listed:
            tags = self._tags_of.get(sb.object_id, {})
            if tags.get(OWNER_TAG) != owner_tag:
                continue  # never report (so never touch) another owner's sandbox
            found.append(ListedContainer(
                backend_id=str(sb.object_id), container_id=tags.get(CONTAINER_TAG, ""),
                owner_tag=owner_tag, running=True,
                extra={"task_id": tags.get(TASK_TAG, ""),
                       "session_id": tags.get(SESSION_TAG, "")}))
        return found

    async def compute_costs(self, containers: Sequence[tuple[str, float]]) -> dict[str, Decimal]:
        """Modal's own cost figure (USD) for each ``(container_id, started_at)`` (epoch
        seconds) it has one for: ONE ``app.sandboxes.stats`` call (modal 1.6.4) for this
        owner's sandboxes grouped by the container tag, from the UTC hour of the earliest
        start (the range Modal accepts: an hour boundary, at most 7 days). Modal computes
        it from sampled usage at the workspace's prices; it may lag a few minutes."""
        wanted = {cid: start for cid, start in containers if cid}
        if not wanted or not self.owner_tag:
            return {}
        now = datetime.now(UTC)
        floor = (now - timedelta(days=USAGE_WINDOW_DAYS)).replace(
            minute=0, second=0, microsecond=0) + timedelta(hours=1)
        earliest = datetime.fromtimestamp(min(wanted.values()), UTC)
        since = max(floor, earliest.replace(minute=0, second=0, microsecond=0))
        if since >= now:
            return {}
        app = await self.app()
        groups = await self._collect("reading Modal's usage statistics", lambda:
                                     app.sandboxes.stats.aio(
                                         since=since, group_by_tags=[CONTAINER_TAG],
                                         tags={OWNER_TAG: self.owner_tag}))
        out: dict[str, Decimal] = {}
        for group in groups:
            cid = (group.tags or {}).get(CONTAINER_TAG)
            if cid in wanted and datetime.fromtimestamp(wanted[cid], UTC) >= since \
                    and group.cost is not None:
                out[cid] = Decimal(group.cost)
        return out

    async def terminate(self, backend_id: str, grace_seconds: float = 0.0) -> None:
        """Wait up to ``grace_seconds`` for the sandbox to end by itself (the caller sent
        a stop through the control path), then ``terminate()`` it."""
        deadline = time.monotonic() + grace_seconds
        while True:
            status = await self._poll(backend_id)
            if not status.running:
                return
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        sb = await self._handle(backend_id)
        try:
            await self._call(f"terminating the sandbox {backend_id}", lambda: sb.terminate.aio())
        except ParheliaError as exc:
            if exc.code != "E203":
                raise

    def attach_argv(self, backend_id: str, container_id: str) -> builtins.list[str]:
        """Nothing for the user's terminal to run: a Modal session is attached through the
        daemon (``AttachTerminal``, :meth:`open_terminal`), or over SSH."""
        return []

    async def aclose(self) -> None:
        """Stop following channels (daemon shutdown). The tails exec'd in the sandboxes
        end with them; the spool stays the truth for the next daemon."""
        tails = [ch.tail for ch in self._channels.values() if ch.tail is not None]
        for task in tails:
            task.cancel()
        await asyncio.gather(*tails, return_exceptions=True)
        self._channels.clear()

    # -- terminal (session attach through the SDK) ----------------------------------------

    offers_ssh = True
    """`session attach --ssh`: interactive workers run sshd behind a raw TCP tunnel."""

    async def ssh_endpoint(self, backend_id: str) -> tuple[str, int]:
        """(host, port) of the raw TCP tunnel to the sandbox's port 22."""
        sb = await self._handle(backend_id)
        tunnels = await self._call(f"looking up the tunnels of {backend_id}",
                                   lambda: sb.tunnels.aio(timeout=TUNNEL_TIMEOUT_S))
        tunnel = dict(tunnels).get(SSH_PORT)
        if tunnel is None or not tunnel.unencrypted_host:
            raise ParheliaError("E601", f"sandbox {backend_id} has no SSH tunnel (it was started "
                                        "without one: `parhelia session attach` works without "
                                        "--ssh)")
        return str(tunnel.unencrypted_host), int(tunnel.unencrypted_port)

    def terminal_argv(self, container_id: str) -> builtins.list[str]:
        """``tmux attach`` on the interactive TUI's private socket inside the sandbox (the
        worker runs as root there; its temp dir is /tmp)."""
        return tuisocket.attach_argv(tuisocket.socket_path(container_id, tmp=SANDBOX_TMP, uid=0))

    async def open_terminal(self, backend_id: str, container_id: str, argv: Sequence[str],
                            rows: int, cols: int, term: str) -> ModalTerminal:
        """Run ``argv`` (``tmux attach`` on the TUI's socket) in an exec with a PTY, sized
        ``rows`` x ``cols`` by :mod:`modal_worker.ttyctl` (ADR 0022)."""
        sb = await self._handle(backend_id)
        attach_id = f"a-{secrets.token_hex(8)}"
        proc = await self._call(
            f"attaching to {container_id}",
            lambda: sb.exec.aio("python", "-m", "modal_worker", "tty", "attach", attach_id,
                                str(rows), str(cols), "--", *argv, pty=True, text=False,
                                env={"TERM": term}))
        return ModalTerminal(self, sb, proc, attach_id, container_id)

    # -- control --------------------------------------------------------------------------

    async def control(self, backend_id: str, container_id: str,
                      message: dict[str, Any]) -> None:
        sb = await self._handle(backend_id)
        spec_path = f"{VOLUME_MOUNT}/{spec_key(container_id)}"
        payload = json.dumps(message, separators=(",", ":"))
        proc = await self._call(
            f"sending {message.get('type')!r} to {container_id}",
            lambda: sb.exec.aio("python", "-m", "modal_worker", "control", spec_path, payload))
        code = await self._call(f"waiting for the control of {container_id}",
                                lambda: proc.wait.aio())
        if code != 0:
            raise ParheliaError("E503", f"the worker of {container_id} did not take the control "
                                f"message (exit {code}). Recovery: `parhelia task show` says "
                                "whether it still runs; a stop falls back to terminate.")

    # -- channel --------------------------------------------------------------------------

    def last_heard(self, container_id: str) -> int | None:
        ch = self._channels.get(container_id)
        if ch is None:
            return None
        if ch.exited or self._known_ended(container_id):
            return now_us()  # its last word said, or its sandbox ended: the exit check settles it
        return ch.heard_at_us

    async def events(self, container_id: str, cursor: int) -> ChannelBatch:
        """Records after byte ``cursor`` of the spool; never waits on Modal for the live
        part (the tail runs in the background), reads the volume only after the end."""
        ch = self._channels.get(container_id)
        if ch is None or cursor < ch.floor or cursor > ch.offset:
            if ch is not None and ch.tail is not None:
                ch.tail.cancel()
            ch = self._channels[container_id] = _Channel(container_id, cursor, cursor)
        if cursor > ch.floor:
            ch.records = [(end, r) for end, r in ch.records if end > cursor]
            ch.floor = cursor
        if not ch.records:
            await self._feed(ch)
        return ChannelBatch([r for _, r in ch.records], ch.offset)

    async def _feed(self, ch: _Channel) -> None:
        """Keep a live tail running; after it ended, catch up from the volume."""
        now = time.monotonic()
        if ch.tail is not None and not ch.tail.done():
            return
        if ch.exited and ch.ended:
            return
        if not ch.ended and now - ch.tail_failed_at >= TAIL_RETRY_S:
            ch.tail = asyncio.create_task(self._tail(ch), name=f"modal-tail-{ch.container_id}")
            return
        if ch.ended and ch.catchups_after_end < CATCHUP_AFTER_END \
                and now - ch.last_catchup >= CATCHUP_INTERVAL_S:
            ch.last_catchup = now
            await self._catch_up(ch)
            ch.catchups_after_end += 1

    async def _tail(self, ch: _Channel) -> None:
        """Follow the spool live until the exec's output ends; then decide: the sandbox
        ended (catch up from the volume) or the stream broke (follow again later)."""
        cid = ch.container_id
        sb: Any = None
        try:
            sb = await self._sandbox_for(cid)
            if sb is None:
                # Ended only when Modal said so. Not found is also a sandbox that is not
                # created yet (the listener asks as soon as the container is recorded, and
                # a launch can wait minutes for capacity): a channel marked ended then
                # would never be followed live, its records arriving only with volume
                # syncs, and the worker would be buried as silent. So: what the volume
                # holds now (a sandbox that ended while the daemon was away), and the
                # tail tried again later; the exit check decides that a container ended.
                if self._known_ended(cid):
                    ch.ended = True
                else:
                    ch.tail_failed_at = time.monotonic()
                    await self._catch_up(ch)
                return
            path = f"{VOLUME_MOUNT}/{spool_key(cid)}"
            # Bytes, not text: the cursor is the spool's byte offset (what the volume
            # catch-up counts), whatever the agent wrote into the spool.
            proc = await self._call(f"following the channel of {cid}", lambda: sb.exec.aio(
                "tail", "-c", f"+{ch.offset + 1}", "-F", path, text=False))
            line = _LineBuffer()
            async for chunk in proc.stdout:
                ch.consume(line, bytes(chunk), live=True)
        except asyncio.CancelledError:
            raise
        except BackendUnreachable:
            ch.tail_failed_at = time.monotonic()
            return
        except Exception as exc:  # a refused exec or a broken stream: see below
            log.info("modal.tail_interrupted", container_id=cid, error=type(exc).__name__)
        if sb is None:
            ch.tail_failed_at = time.monotonic()
            return
        try:
            ended = not (await self._poll(str(sb.object_id))).running
        except ParheliaError:
            ended = False
        if ended:
            ch.ended = True
        else:
            ch.tail_failed_at = time.monotonic()

    def _known_ended(self, container_id: str) -> bool:
        return any(cid == container_id and backend_id in self._ended
                   for backend_id, cid in self._container_of.items())

    async def _sandbox_for(self, container_id: str) -> Any | None:
        for backend_id, cid in self._container_of.items():
            if cid == container_id:
                return None if backend_id in self._ended else self._handles[backend_id]
        errors = self.sdk.exception
        name = sandbox_name(container_id)
        try:
            sb = await self._call(f"looking up the sandbox {name}",
                                  lambda: self.sdk.Sandbox.from_name.aio(
                                      self.settings.app_name, name),
                                  keep=(errors.NotFoundError,))
        except errors.NotFoundError:
            return None
        if not await self._ours(sb):
            log.warning("modal.sandbox_of_another_owner", container_id=container_id,
                        sandbox_id=sb.object_id)
            return None
        self._handles.setdefault(sb.object_id, sb)
        self._container_of[sb.object_id] = container_id
        return sb

    async def _catch_up(self, ch: _Channel) -> None:
        """The spool's records after ``ch.offset`` from the volume, streamed: the bytes
        before the cursor are skipped as they pass, never the whole spool in memory."""
        start, seen, line = ch.offset, 0, _LineBuffer()
        try:
            async for chunk in self._chunks(spool_key(ch.container_id)):
                skip = min(len(chunk), max(0, start - seen))
                seen += len(chunk)
                if skip < len(chunk):
                    ch.consume(line, chunk[skip:])
        except FileNotFoundError:
            return

    # -- volume copies --------------------------------------------------------------------

    async def _chunks(self, key: str) -> AsyncIterator[bytes]:
        """``key`` on the Modal volume as the SDK streams it (``Volume.read_file``), the
        wait for each chunk under the call timeout (not the whole file's). An absent file
        raises ``FileNotFoundError`` (whichever way the SDK says it)."""
        errors = self.sdk.exception
        chunks = self.modal_volume().read_file.aio(key)
        try:
            while True:
                try:
                    chunk = await self._call(f"reading {key} from the volume",
                                             chunks.__anext__,
                                             keep=(StopAsyncIteration, FileNotFoundError,
                                                   errors.NotFoundError))
                except StopAsyncIteration:
                    return
                except errors.NotFoundError:
                    raise FileNotFoundError(key) from None
                yield bytes(chunk)
        finally:
            with contextlib.suppress(Exception):
                await chunks.aclose()

    async def _read(self, key: str) -> bytes | None:
        """A small file whole (None when absent)."""
        try:
            return b"".join([chunk async for chunk in self._chunks(key)])
        except FileNotFoundError:
            return None

    async def _known_remote_blobs(self) -> set[str]:
        if self._remote_blobs is None:
            self._remote_blobs = set(k for k in await self.list_keys(BLOBS)
                                     if blob_digest(k) is not None)
        return self._remote_blobs

    async def list_keys(self, prefix: str) -> builtins.list[str]:
        vol = self.modal_volume()
        errors = self.sdk.exception
        try:
            entries = await self._call(f"listing {prefix or '/'} on the volume",
                                       lambda: vol.listdir.aio(prefix, recursive=True),
                                       keep=(FileNotFoundError, errors.NotFoundError))
        except (FileNotFoundError, errors.NotFoundError):
            return []
        keys = []
        for entry in entries:
            if getattr(getattr(entry, "type", None), "name", "FILE") != "FILE":
                continue
            key = str(entry.path).lstrip("/")
            with contextlib.suppress(ValueError):
                keys.append(validate_key(key))
        return sorted(keys)

    async def push(self, local: Volume, keys: Sequence[str]) -> int:
        """Daemon -> Modal volume: blobs the volume lacks, other keys always (one batch)."""
        remote = await self._known_remote_blobs()
        todo: builtins.list[tuple[str, Path | bytes, int]] = []
        for key in dict.fromkeys(validate_key(k) for k in keys):
            if in_cas(key) and key in remote:
                continue
            item = await asyncio.to_thread(_local_source, local, key)
            if item is not None:
                todo.append((key, *item))
        if not todo:
            return 0
        vol = self.modal_volume()

        async def upload() -> None:
            async with vol.batch_upload.aio(force=True) as batch:
                for key, source, _ in todo:
                    # A file is streamed by the SDK from its path: a 1 GiB checkpoint zero
                    # is never held in the daemon's memory.
                    batch.put_file(str(source) if isinstance(source, Path)
                                   else io.BytesIO(source), f"/{key}")
        await self._call(f"uploading {len(todo)} file(s) to the volume", upload,
                         timeout=self.settings.launch_timeout_seconds)
        remote.update(k for k, _, _ in todo if blob_digest(k) is not None)
        return sum(size for _, _, size in todo)

    async def pull(self, local: Volume, keys: Sequence[str]) -> int:
        """Modal volume -> daemon: blobs the local volume lacks (hash verified: a sandbox
        runs untrusted code and may write anything), other keys always."""
        remote = await self._known_remote_blobs()
        wanted = []
        for key in dict.fromkeys(validate_key(k) for k in keys):
            if in_cas(key) and await asyncio.to_thread(local.exists, key):
                remote.add(key)
                continue
            wanted.append(key)
        gate = asyncio.Semaphore(PULL_CONCURRENCY)

        async def one(key: str) -> int:
            async with gate:
                size = await self._download(local, key)
            if size and blob_digest(key) is not None:
                remote.add(key)
            return size

        return sum(await asyncio.gather(*(one(k) for k in wanted)))

    async def _download(self, local: Volume, key: str) -> int:
        """``key`` from the Modal volume into ``local``, streamed to a temporary file beside
        its place (no whole file in memory), hash-checked for a blob, then renamed. The
        limit applies to each chunk's wait, not to the whole file. 0 when absent/refused."""
        target = local.path_for(key)
        if target is None:
            data = await self._read(key)
            if data is None or not _blob_ok(key, hashlib.sha256(data).hexdigest()):
                return 0
            await asyncio.to_thread(local.put, key, data)
            return len(data)
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        tmp = target.parent / f".tmp-{os.getpid()}-{id(target)}-{time.monotonic_ns()}"
        digest, size = hashlib.sha256(), 0
        try:
            with open(tmp, "wb") as fh:
                async for chunk in self._chunks(key):
                    digest.update(chunk)
                    size += len(chunk)
                    await asyncio.to_thread(fh.write, chunk)
            if not _blob_ok(key, digest.hexdigest()):
                return 0
            await asyncio.to_thread(os.replace, tmp, target)
            return size
        except FileNotFoundError:
            return 0
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


class ModalTerminal:
    """One attach: the PTY exec's bytes out, the user's keys in, resizes and the hang-up
    through :mod:`modal_worker.ttyctl` execs."""

    def __init__(self, backend: ModalBackend, sb: Any, proc: Any, attach_id: str,
                 container_id: str) -> None:
        self._backend, self._sb, self._proc = backend, sb, proc
        self.attach_id, self.container_id = attach_id, container_id

    async def output(self) -> AsyncIterator[bytes]:
        async for chunk in self._proc.stdout:
            yield chunk if isinstance(chunk, bytes) else str(chunk).encode()

    async def write(self, data: bytes) -> None:
        self._proc.stdin.write(data)
        await self._backend._call(f"typing into {self.container_id}",
                                  lambda: self._proc.stdin.drain.aio())

    async def _tty(self, *args: str) -> int:
        proc = await self._backend._call(
            f"controlling the terminal of {self.container_id}",
            lambda: self._sb.exec.aio("python", "-m", "modal_worker", "tty", *args))
        code: int = await self._backend._call(
            f"controlling the terminal of {self.container_id}", lambda: proc.wait.aio())
        return code

    async def resize(self, rows: int, cols: int) -> None:
        await self._tty("resize", self.attach_id, str(rows), str(cols))

    async def close(self) -> None:
        """The user is gone: hang the attached client up (tmux detaches it)."""
        await self._tty("hangup", self.attach_id)

    async def wait(self) -> int:
        code: int = await self._backend._call(f"ending the attach to {self.container_id}",
                                              lambda: self._proc.wait.aio())
        return code


def _local_source(local: Volume, key: str) -> tuple[Path | bytes, int] | None:
    """What to upload for ``key``: its local path when the volume is a directory."""
    path = local.path_for(key)
    try:
        if path is not None:
            return path, path.stat().st_size
        data = local.get(key)
    except FileNotFoundError:
        return None
    return data, len(data)


def _blob_ok(key: str, sha256: str) -> bool:
    digest = blob_digest(key)
    if digest is not None and digest != sha256:
        log.warning("modal.blob_hash_mismatch", key=key)
        return False
    return True


def _ended_status(code: int | None) -> ContainerStatus:
    if code == 124:
        detail = "the sandbox hit its Modal timeout"
    elif code == 137:
        detail = "the sandbox was terminated"
    elif code is None:
        detail = "the sandbox is not known to Modal"
    else:
        detail = ""
    return ContainerStatus(running=False, exit_code=code, detail=detail)


class _NoVolume:
    """``backend.volume`` of the Modal backend: the daemon reads its local copy; this
    backend's own volume is reached only through ``push``/``pull``/``list_keys``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _refuse(self, *args: object) -> Any:
        raise ParheliaError("E900", f"the Modal volume {self.name!r} is reached through "
                            "push/pull, not directly")

    put = put_file = get = open = size = delete = _refuse

    def exists(self, key: str) -> bool:
        return False

    def list(self, prefix: str = "") -> builtins.list[str]:
        return []

    def path_for(self, key: str) -> None:
        return None


def settings_from_config(config: Any) -> ModalSettings:
    m = config.modal
    return ModalSettings(app_name=m.app_name, volume_name=m.volume_name,
                         secret_name=m.secret_name,
                         call_timeout_seconds=float(m.call_timeout_seconds),
                         launch_timeout_seconds=float(m.launch_timeout_seconds))


def from_config(config: Any, paths: Any, environ: Mapping[str, str] | None = None,
                sdk: Any = None, owner_tag: str = "") -> ModalBackend:
    """The registry's factory: a Modal backend from the daemon's configuration. Nothing is
    imported or called on Modal until the backend is used."""
    return ModalBackend(settings_from_config(config),
                        dict(os.environ if environ is None else environ), sdk=sdk,
                        owner_tag=owner_tag,
                        env_path=envfile.env_file(paths) if paths is not None else None)


__all__ = ["BackendUnreachable", "Credentials", "ModalBackend", "ModalSettings", "NoCapacity",
           "WorkerPaths", "from_config", "load_sdk"]
