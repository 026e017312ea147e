"""Environments on Modal (docs/adr/0052-environments-on-modal.md): an image per image
hash, a setup sandbox whose prepared filesystem is snapshotted, the agent's network
allowlist, and the repository's dependency cache volume.

The two phases keep two promises: setup has the network and the setup secrets, the agent
has neither. Setup runs in a sandbox of its own (``python -m modal_worker setup``: the
restore, the caches and the setup commands, with the setup secrets as Modal secrets of
that sandbox only); once it says it is ready, its filesystem is snapshotted
(``snapshot_filesystem``) and the sandbox ends; the agent's sandbox starts from that
snapshot, with the agent's network allowlist and without the secrets. The next task with
the same environment hash and base commit starts from the same snapshot (a warm start):
a cache with a TTL, never the only copy of anything -- checkpoints stay the truth.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from parhelia.environment import CACHE_ROOT_MODAL
from parhelia.volume import session_area, spec_key
from parheliad.backends.base import ContainerSpec, EnvironmentLaunch
from parheliad.backends.modal.client import PHASE_TAG, VOLUME_MOUNT, ModalClient, sandbox_name
from parheliad.backends.modal.image import worker_image
from parheliad.environments.model import ImageRecipe

log = structlog.get_logger(__name__)

SNAPSHOT_TIMEOUT_S = 55
"""``snapshot_filesystem``'s own timeout (modal 1.6.4's default)."""
SETUP_MARGIN_S = 300
"""Beyond the setup timeout: the restore before it and the snapshot after."""
PHASE_SETUP = "setup"


@dataclass(frozen=True)
class Prepared:
    """The setup phase's outcome: the snapshot to start the agent from, or the setup
    sandbox that ended with the incarnation's result (a failed setup)."""

    image: Any = None
    ended_backend_id: str = ""


class Environments(ModalClient):
    """Images, setup sandboxes, snapshots and cache volumes (see the module docstring)."""

    builds_images: bool = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._env_images: dict[str, Any] = {}

    async def build_image(self, recipe: ImageRecipe, context_dir: Path | None) -> str:
        """Build the image of ``recipe`` (a lookup when Modal has it); its id."""
        app = await self.app()
        image = worker_image(self.sdk, recipe.claude_version or self.settings.claude_version,
                             recipe, context_dir)
        built = await self.call(f"building the environment image {recipe.hash}",
                                 lambda: image.build.aio(app),
                                 timeout=self.settings.build_timeout_seconds)
        self._env_images[recipe.hash] = built
        return str(built.object_id)

    def _environment_image(self, env: EnvironmentLaunch) -> Any:
        """The built image: the handle of this daemon's build, else by its id (a lazy
        handle: Modal resolves it when the sandbox is created)."""
        found = self._env_images.get(env.image_hash)
        if found is not None and str(found.object_id) == env.image_id:
            return found
        return self.sdk.Image.from_id(env.image_id)

    def cache_volume(self, name: str) -> Any:
        return self.sdk.Volume.from_name(name, create_if_missing=True, version=2)

    async def mounts(self, env: EnvironmentLaunch | None, session_id: str, *,
                     cache: bool) -> dict[str, Any]:
        """The sandbox's volumes: the session's own area of the daemon's volume (ADR 0031);
        the repository's cache volume only with ``cache`` (the
        setup sandbox). An agent that could write the cache could plant a package that a
        later task's setup -- which holds the setup secrets and the full network --
        installs and runs; the agent's sandbox gets a cache directory of its own that
        ends with it (the worker links the same paths to it)."""
        volumes = {VOLUME_MOUNT: (await self.volume_handle()).with_mount_options(
            sub_path=session_area(session_id))}
        if cache and env is not None and env.cache_volume:
            volumes[CACHE_ROOT_MODAL] = self.cache_volume(env.cache_volume)
        return volumes

    @staticmethod
    def network(env: EnvironmentLaunch | None) -> dict[str, Any]:
        """The agent's sandbox's egress: Modal's domain allowlist (modal 1.6.4), unset
        for the full network."""
        if env is None or env.agent_hosts is None:
            return {}
        return {"outbound_domain_allowlist": list(env.agent_hosts)}

    async def delete_cache(self, name: str) -> bool:
        errors = self.sdk.exception
        try:
            await self.call(f"deleting the cache volume {name!r}",
                             lambda: self.sdk.Volume.objects.delete.aio(name),
                             keep=(errors.NotFoundError,))
        except errors.NotFoundError:
            return False
        return True

    async def prepare(self, spec: ContainerSpec, image: Any, tags: dict[str, str]
                      ) -> Prepared:
        """The setup phase in a sandbox of its own; its filesystem snapshotted once setup
        is ready (see the module docstring)."""
        env = spec.environment
        assert env is not None
        app = await self.app()
        spec_path = f"{VOLUME_MOUNT}/{spec_key(spec.container_id)}"
        secrets = [self.sdk.Secret.from_name(name) for name in env.setup_secrets]
        timeout = int(env.setup_timeout_seconds) + SETUP_MARGIN_S
        started = time.monotonic()
        volumes = await self.mounts(env, spec.session_id, cache=True)
        sb = await self.call(
            f"creating the setup sandbox of {spec.container_id}",
            lambda: self.sdk.Sandbox.create.aio(
                "python", "-m", "modal_worker", "setup", spec_path, app=app,
                name=sandbox_name(f"{spec.container_id}-setup"),
                tags={**tags, PHASE_TAG: PHASE_SETUP}, image=image, secrets=secrets,
                timeout=timeout, cpu=float(spec.cpu), memory=int(spec.memory_mb),
                volumes=volumes),
            timeout=self.settings.launch_timeout_seconds)
        proc = await self.call(f"waiting for the setup of {spec.container_id}",
                                lambda: sb.exec.aio("python", "-m", "modal_worker",
                                                    "setup-wait", spec_path, str(timeout)))
        code = await self.call(f"waiting for the setup of {spec.container_id}",
                                lambda: proc.wait.aio(), timeout=timeout + 60)
        if code != 0:
            # The setup failed (E606): its worker checkpointed, wrote its result and ends.
            # That sandbox is this incarnation's: its channel and result settle the task.
            log.info("modal.setup_failed", container_id=spec.container_id, exit_code=code,
                     seconds=round(time.monotonic() - started, 1))
            self._remember(sb, tags)
            return Prepared(ended_backend_id=str(sb.object_id))
        snapshot = await self.call(
            f"snapshotting the prepared sandbox of {spec.container_id}",
            lambda: sb.snapshot_filesystem.aio(SNAPSHOT_TIMEOUT_S,
                                               ttl=env.snapshot_ttl_seconds),
            timeout=SNAPSHOT_TIMEOUT_S + 30)
        await self.call(f"ending the setup sandbox of {spec.container_id}",
                         lambda: sb.terminate.aio())
        log.info("modal.prepared", container_id=spec.container_id,
                 seconds=round(time.monotonic() - started, 1), snapshot=snapshot.object_id)
        if env.on_snapshot is not None:
            await env.on_snapshot(str(snapshot.object_id))
        return Prepared(image=snapshot)
