"""The Modal backend: lifecycle, secrets and control of one sandbox per container
incarnation (the package docstring says how); its other jobs are its bases."""

from __future__ import annotations

import asyncio
import builtins
import json
import os
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog

from parhelia import envfile
from parhelia.backends import MODAL
from parhelia.credentials import CREDENTIAL_VARS
from parhelia.errors import ParheliaError
from parhelia.volume import spec_key
from parheliad.backends.base import (
    ContainerSpec,
    ContainerStatus,
    Credentials,
    ListedContainer,
    WorkerPaths,
)
from parheliad.backends.modal.channel import ChannelFollower
from parheliad.backends.modal.client import (
    CLAUDE_CONFIG_DIR,
    CONTAINER_TAG,
    OWNER_TAG,
    SESSION_TAG,
    SSH_PORT,
    SYNC_ARGV,
    TASK_TAG,
    VOLUME_MOUNT,
    WORKSPACE_DIR,
    ModalSettings,
    ended_status,
    sandbox_name,
    sandbox_timeout,
    token_configured,
)
from parheliad.backends.modal.clones import CloneSandboxes
from parheliad.backends.modal.image import worker_image
from parheliad.backends.modal.terminal import Terminals

log = structlog.get_logger(__name__)

USAGE_WINDOW_DAYS = 7
"""The longest range ``app.sandboxes.stats`` accepts (modal 1.6.4): an older container's
compute stays an estimate."""


class ModalBackend(ChannelFollower, CloneSandboxes, Terminals):
    """Workers in Modal sandboxes; see the package docstring."""

    name: str = MODAL

    def __init__(self, settings: ModalSettings, environ: Mapping[str, str],
                 sdk: Any = None, owner_tag: str = "", env_path: Path | None = None) -> None:
        super().__init__(settings, environ, sdk, owner_tag, env_path)
        self._image: Any = None
        self._image_lock = asyncio.Lock()
        self._secret_key: tuple[str | None, float] | None = None

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

    # -- volume, image, secrets ----------------------------------------------------------

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
                out.append(ended_status(self._ended[backend_id]))
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
