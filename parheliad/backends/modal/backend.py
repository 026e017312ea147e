"""The Modal backend: lifecycle, secrets and control of one sandbox per container
incarnation (the package docstring says how); its other jobs are its bases."""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import functools
import json
import os
import secrets as secrets_module
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import structlog

from parhelia import envfile
from parhelia.backends import MODAL
from parhelia.credentials import CREDENTIAL_VARS
from parhelia.errors import ParheliaError
from parhelia.sandbox import (
    CREDENTIAL_OUTBOUND,
    CREDENTIAL_SECRET,
    ISOLATION_MODAL,
    PLACEHOLDER_PREFIX,
)
from parhelia.volume import spec_key
from parheliad.backends.base import (
    Check,
    ContainerSpec,
    ContainerStatus,
    Credentials,
    ListedContainer,
    Terms,
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
    TASK_TIMEOUT_MAX_S,
    TIMEOUT_MARGIN_S,
    VOLUME_MOUNT,
    WORKSPACE_DIR,
    ModalSettings,
    sandbox_name,
    sandbox_timeout,
    token_configured,
)
from parheliad.backends.modal.clones import CloneSandboxes
from parheliad.backends.modal.doctor import checks as doctor_checks
from parheliad.backends.modal.environments import Environments
from parheliad.backends.modal.errors import TOKEN_FIX, SandboxEnded, map_error
from parheliad.backends.modal.image import worker_image
from parheliad.backends.modal.policy import api_host, outbound_policy_blocker
from parheliad.backends.modal.terminal import Terminals
from parheliad.backends.modal.token import config_path

log = structlog.get_logger(__name__)

@dataclass(frozen=True)
class CredentialPlan:
    """The secrets a sandbox gets, the outbound policy (None: the credential is in a
    secret), the ``parhelia.sandbox`` word for it, and why it is not the policy."""

    secrets: builtins.list[Any]
    policy: Any
    credential: str
    why: str


LAUNCH_WAIT_SHOWN_AFTER_S = 3.0
"""A GPU create that has not returned after this long waits for capacity (said so)."""
USAGE_WINDOW_DAYS = 7
"""The longest range ``app.sandboxes.stats`` accepts (modal 1.6.4): an older container's
compute stays an estimate."""


class ModalBackend(Environments, ChannelFollower, CloneSandboxes, Terminals):
    """Workers in Modal sandboxes; see the package docstring."""

    name: str = MODAL
    terms = Terms(max_task_timeout_seconds=TASK_TIMEOUT_MAX_S,
                  timeout_limit=f"a Modal sandbox lives at most 24 h, including "
                                f"{TIMEOUT_MARGIN_S} s for the worker's final checkpoint")

    def __init__(self, settings: ModalSettings, environ: Mapping[str, str],
                 sdk: Any = None, owner_tag: str = "", env_path: Path | None = None,
                 state_dir: Path | None = None) -> None:
        super().__init__(settings, environ, sdk, owner_tag, env_path, state_dir)
        self._image: Any = None
        self._image_lock = asyncio.Lock()
        self._creating: dict[str, tuple[str, float]] = {}
        """GPU launches in flight: container id -> (gpu, when its create began)."""
        self._secret_key: tuple[str | None, float] | None = None
        self._isolation: dict[str, tuple[str, str]] = {}
        """Container id -> how its sandbox got its credential (Backend.isolation)."""

    def available(self) -> tuple[bool, str]:
        """No network: is the SDK importable and is a Modal token configured?"""
        if self._sdk_obj is None:
            import importlib.util

            if importlib.util.find_spec("modal") is None:
                return False, "the modal package is not installed (pip install 'modal>=1.6,<1.7')"
        if not token_configured(self._environ):
            return False, (f"no Modal token (MODAL_TOKEN_ID/MODAL_TOKEN_SECRET or "
                           f"{config_path(self._environ)}): {TOKEN_FIX}")
        return True, (f"app {self.settings.app_name!r}, volume {self.settings.volume_name!r}, "
                      f"secret {self.settings.secret_name!r}")

    def has_own_credential(self) -> bool:
        """A Modal token is configured (no network call)."""
        return token_configured(self._environ)

    def doctor(self, *, default: bool) -> builtins.list[Check]:
        self.reread_environ()  # a broken env file is the doctor's own "credentials" check
        return doctor_checks(self.settings, self.environ, default=default)

    def sdk_version(self) -> str:
        """The SDK's version (importing it: ``import modal`` reads ~/.modal.toml and
        refuses a bad one, raising whatever it raises)."""
        return str(getattr(self.sdk, "__version__", "?"))

    def worker_paths(self, session_id: str, container_id: str) -> WorkerPaths:
        return WorkerPaths(VOLUME_MOUNT, WORKSPACE_DIR, CLAUDE_CONFIG_DIR, tuple(SYNC_ARGV))

    # -- volume, image, secrets ----------------------------------------------------------

    async def image(self) -> Any:
        """The worker image, built once per daemon (Modal caches its layers)."""
        async with self._image_lock:
            if self._image is None:
                app = await self.app()
                image = worker_image(self.sdk, self.settings.claude_version)
                self._image = await self.call("building the worker image",
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
            await self.call(f"looking up the secret {name!r}",
                             lambda: self.sdk.Secret.from_name(name).hydrate.aio(),
                             keep=(errors.NotFoundError,))
        except errors.NotFoundError:
            pass
        else:
            for key in CREDENTIAL_VARS:
                secret = self.sdk.Secret.from_name(name, required_keys=[key])
                try:
                    await self.call(f"checking the secret {name!r}",
                                     secret.hydrate.aio,
                                     keep=(errors.NotFoundError, errors.InvalidError))
                except (errors.NotFoundError, errors.InvalidError):
                    continue
                found = key
                break
        self._secret_key = (found, time.monotonic())
        return found

    async def credentials(self) -> Credentials:
        why = self.reread_environ()
        if why is not None:
            return Credentials(False, why, self._environ)
        key = await self.named_secret_key()
        if key is not None:
            policy, why = self._outbound_policy(key, None)
            where = ("put into the sandbox's API requests by Modal (outbound policy: the agent "
                     "sees a placeholder)" if policy is not None else
                     f"in the sandbox's environment ({why})")
            return Credentials(True, f"Modal secret {self.settings.secret_name!r} ({key}), "
                               f"{where}", self._environ)
        present = [k for k in CREDENTIAL_VARS if self._environ.get(k)]
        if present:
            return Credentials(True, f"{present[0]} from the daemon's environment, sent as an "
                               "ephemeral Modal secret: in the sandbox's environment (create "
                               f"the secret {self.settings.secret_name!r} to keep it out)",
                               self._environ)
        return Credentials(False, (
            "no Anthropic credential for Modal workers: `parhelia auth set` (workers get the "
            "key as an ephemeral Modal secret), or create the Modal secret "
            f"{self.settings.secret_name!r} holding ANTHROPIC_API_KEY at "
            "https://modal.com/secrets"), self._environ)

    async def _credential(self, secret_env: Mapping[str, str]) -> CredentialPlan:
        """How the sandbox's agent reaches the model API (ADR 0031). With the named secret
        and an SDK that has ``modal.experimental.OutboundPolicy`` (modal 1.6.4): Modal
        puts the credential into the sandbox's requests to the API host, outside the
        sandbox, and the agent's variable holds a placeholder. Otherwise (no named secret:
        outbound policies take named secrets only; an SDK without it; an API host that is
        not https) the credential is in the sandbox's environment, as before, and the plan
        says why."""
        key = await self.named_secret_key()
        values = {k: v for k, v in secret_env.items() if k not in CREDENTIAL_VARS}
        if key is None:
            creds = {k: self._environ[k] for k in CREDENTIAL_VARS if self._environ.get(k)}
            if not creds:
                raise ParheliaError("E400", (await self.credentials()).detail)
            return self._plan(values | creds, None, CREDENTIAL_SECRET,
                              "the credential comes from the daemon's environment (an "
                              "outbound policy takes a named Modal secret only)")
        named = self.sdk.Secret.from_name(self.settings.secret_name)
        policy, why = self._outbound_policy(key, named)
        if policy is None:
            return self._plan(values, None, CREDENTIAL_SECRET, why, named)
        placeholder = PLACEHOLDER_PREFIX + secrets_module.token_hex(24)
        return self._plan(values | {key: placeholder}, policy, CREDENTIAL_OUTBOUND, "")

    def _plan(self, values: Mapping[str, str], policy: Any, credential: str, why: str,
              named: Any = None) -> CredentialPlan:
        secrets = [named] if named is not None else []
        if values:
            secrets.append(self.sdk.Secret.from_dict(dict(values)))
        return CredentialPlan(secrets, policy, credential, why)

    def _outbound_policy(self, key: str, named: Any) -> tuple[Any, str]:
        """The policy that puts the named secret's ``key`` into the sandbox's requests to
        the API host, or (None, why not)."""
        experimental: Any = getattr(self.sdk, "experimental", None)
        blocker = outbound_policy_blocker(experimental, self._environ)
        host = api_host(self._environ)
        if blocker is not None or host is None:
            return None, blocker or "no API host"
        value = f"${key}" if key == "ANTHROPIC_API_KEY" else f"Bearer ${key}"
        header = "x-api-key" if key == "ANTHROPIC_API_KEY" else "authorization"
        policy = experimental.OutboundPolicy()
        return policy.with_header_replacement(domain=host, headers={header: value},
                                              secret=named), ""

    # -- lifecycle ------------------------------------------------------------------------

    def _tags(self, spec: ContainerSpec) -> dict[str, str]:
        return {OWNER_TAG: spec.owner_tag, TASK_TAG: spec.task_id,
                SESSION_TAG: spec.session_id, CONTAINER_TAG: spec.container_id}

    async def launch(self, spec: ContainerSpec) -> str:
        """Start the sandbox (the spec and checkpoint are already on the volume).
        Idempotent: a retry after a lost reply adopts the sandbox of the same name.
        With an environment: its image; its setup first in a sandbox of its own (unless a
        prepared filesystem is given), whose snapshot the agent's sandbox starts from
        (:mod:`.environments`); a failed setup's sandbox is the incarnation's."""
        self.owner_tag = self.owner_tag or spec.owner_tag
        app = await self.app()
        env = spec.environment
        tags = self._tags(spec)
        errors = self.sdk.exception
        image = self._environment_image(env) if env is not None else await self.image()
        if env is not None and env.warm_image_id:
            image = self.sdk.Image.from_id(env.warm_image_id)
        elif env is not None and env.setup:
            prepared = await self.prepare(spec, image, tags)
            if prepared.ended_backend_id:
                return prepared.ended_backend_id
            image = prepared.image
        plan = await self._credential(spec.secret_env)
        # Only the session's own area: nothing of another session is readable or
        # writable from inside (ADR 0031).
        volumes = await self.mounts(env, spec.session_id, cache=False)
        name = sandbox_name(spec.container_id)
        paths = self.worker_paths(spec.session_id, spec.container_id)
        argv = ("python", "-m", "modal_worker", "run",
                f"{paths.volume_dir}/{spec_key(spec.container_id)}")

        def create(plan: CredentialPlan) -> Awaitable[Any]:
            extra = ({"_experimental_outbound_policy": plan.policy}
                     if plan.policy is not None else {})
            return cast("Awaitable[Any]", self.sdk.Sandbox.create.aio(
                *argv, app=app, name=name, tags=tags, image=image, secrets=plan.secrets,
                timeout=sandbox_timeout(spec.timeout_seconds), cpu=float(spec.cpu),
                memory=int(spec.memory_mb), gpu=spec.gpu or None,
                volumes=volumes, **self.network(env),
                unencrypted_ports=[SSH_PORT] if spec.worker_spec.get(
                    "ssh_authorized_key") else [], **extra))

        action = f"creating the sandbox for {spec.container_id}"
        if spec.gpu:  # modal's V1 path: create waits (up to ~21 min) for the GPU
            self._creating[spec.container_id] = (spec.gpu, time.monotonic())
        try:
            try:
                sb = await self.call(action, functools.partial(create, plan),
                                     timeout=self.settings.launch_timeout_seconds,
                                     keep=(errors.AlreadyExistsError, errors.InvalidError,
                                           errors.NotFoundError))
            except errors.InvalidError as exc:
                if plan.policy is None or "outbound" not in str(exc).lower():
                    raise map_error(exc, action) from None
                # Refused by this SDK or workspace (experimental): today's secret, said so.
                plan = self._plan(
                    {k: v for k, v in spec.secret_env.items() if k not in CREDENTIAL_VARS},
                    None, CREDENTIAL_SECRET, f"Modal refused the outbound policy: {exc}",
                    self.sdk.Secret.from_name(self.settings.secret_name))
                sb = await self.call(action, functools.partial(create, plan),
                                     timeout=self.settings.launch_timeout_seconds,
                                     keep=(errors.AlreadyExistsError, errors.NotFoundError))
        except SandboxEnded as exc:
            # modal 1.6.4's V1 create raises ConflictError when the sandbox ended before it
            # was scheduled: Modal could not start it (its message says why).
            raise ParheliaError("E505", f"Modal could not start the sandbox of "
                                f"{spec.container_id}: {exc.message}. Recovery: fix what "
                                "Modal names, then `parhelia task retry ID`.") from None
        except errors.NotFoundError as exc:
            if env is not None and env.warm_image_id:
                # The prepared filesystem expired (a snapshot has a TTL): set up afresh.
                log.info("modal.warm_image_gone", container_id=spec.container_id,
                         image_id=env.warm_image_id)
                return await self.launch(dataclasses.replace(
                    spec, environment=dataclasses.replace(env, warm_image_id="")))
            await self._check_volume()  # E506 when the volume vanished
            raise map_error(exc, action) from None
        except errors.AlreadyExistsError:
            sb = await self.call(
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
        finally:
            self._creating.pop(spec.container_id, None)
        self._remember(sb, tags)
        self._isolation[spec.container_id] = (ISOLATION_MODAL, plan.credential)
        if plan.why:
            log.warning("modal.credential_in_sandbox", container_id=spec.container_id,
                        reason=plan.why)
        return str(sb.object_id)

    def isolation(self, container_id: str) -> tuple[str, str] | None:
        return self._isolation.get(container_id)

    def launch_wait(self, container_id: str) -> str | None:
        """What a launch in flight waits for, once it has waited a while: a GPU sandbox's
        create returns only once Modal has the GPU (``waiting for an A100 on Modal``)."""
        creating = self._creating.get(container_id)
        if creating is None or time.monotonic() - creating[1] < LAUNCH_WAIT_SHOWN_AFTER_S:
            return None
        gpu = creating[0].partition(":")[0]
        article = "an" if gpu[:1] in "AEIOUaeiou" else "a"
        return f"waiting for {article} {gpu} on Modal"

    async def status(self, backend_id: str, container_id: str) -> ContainerStatus:
        return await self._poll(backend_id)

    async def _running(self) -> set[str]:
        """Ids of this app's running sandboxes (ours when the owner is known): ONE call."""
        app = await self.app()
        tags = {OWNER_TAG: self.owner_tag} if self.owner_tag else None
        listed = await self.collect("listing sandboxes", lambda: self.sdk.Sandbox.list.aio(
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
                out.append(self._ended[backend_id])
            elif backend_id in running:
                out.append(ContainerStatus(running=True))
            else:
                out.append(polled[backend_id])
        return out

    async def list(self, owner_tag: str) -> builtins.list[ListedContainer]:
        """Running sandboxes carrying ``owner_tag`` (one list call; tags fetched only for
        sandboxes this daemon has not seen yet)."""
        app = await self.app()
        listed = await self.collect("listing sandboxes", lambda: self.sdk.Sandbox.list.aio(
            app_id=app.app_id, tags={OWNER_TAG: owner_tag}))
        unknown = [sb for sb in listed if sb.object_id not in self._tags_of]

        async def fetch(sb: Any) -> None:
            tags = await self.call(f"reading the tags of {sb.object_id}",
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
        groups = await self.collect("reading Modal's usage statistics", lambda:
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
            await self.call(f"terminating the sandbox {backend_id}", lambda: sb.terminate.aio())
        except ParheliaError as exc:
            if exc.code != "E203":
                raise

    # -- control --------------------------------------------------------------------------

    async def control(self, backend_id: str, container_id: str,
                      message: dict[str, Any]) -> None:
        sb = await self._handle(backend_id)
        spec_path = f"{VOLUME_MOUNT}/{spec_key(container_id)}"
        payload = json.dumps(message, separators=(",", ":"))
        try:
            proc = await self.call(
                f"sending {message.get('type')!r} to {container_id}",
                lambda: sb.exec.aio("python", "-m", "modal_worker", "control", spec_path,
                                    payload))
            code = await self.call(f"waiting for the control of {container_id}",
                                    lambda: proc.wait.aio())
        except SandboxEnded:
            # modal 1.6.4 refuses an exec on a finished sandbox (ConflictError or
            # NotFoundError): nothing is left to control; its end is read by a poll.
            log.info("modal.control_after_end", container_id=container_id,
                     message=message.get("type"))
            return
        if code != 0:
            raise ParheliaError("E503", f"the worker of {container_id} did not take the control "
                                f"message (exit {code}). Recovery: `parhelia task show` says "
                                "whether it still runs; a stop falls back to terminate.")


def settings_from_config(config: Any) -> ModalSettings:
    m = config.modal
    return ModalSettings(app_name=m.app_name, volume_name=m.volume_name,
                         secret_name=m.secret_name,
                         call_timeout_seconds=float(m.call_timeout_seconds),
                         launch_timeout_seconds=float(m.launch_timeout_seconds),
                         build_timeout_seconds=float(
                             config.environment.build_timeout_minutes) * 60)


def from_config(config: Any, paths: Any, environ: Mapping[str, str] | None = None,
                sdk: Any = None, owner_tag: str = "") -> ModalBackend:
    """The registry's factory: a Modal backend from the daemon's configuration. Nothing is
    imported or called on Modal until the backend is used."""
    return ModalBackend(settings_from_config(config),
                        dict(os.environ if environ is None else environ), sdk=sdk,
                        owner_tag=owner_tag,
                        env_path=envfile.env_file(paths) if paths is not None else None,
                        state_dir=paths.state_dir if paths is not None else None)
