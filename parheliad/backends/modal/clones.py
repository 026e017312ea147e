"""Clone sandboxes: a Modal task's private repository read with the Modal secret
``github-token`` when the daemon has no GitHub token of its own.

A sandbox of its own (never the agent's): the worker image, the named secret, an area
of the volume of its own, one command — ``python -m modal_worker clone
/vol/clones/<id>/request.json`` (:mod:`modal_worker.clone`) — and a short timeout. Like
a session's sandboxes (ADR 0031) it mounts only its area, ``sessions/clone-<id>/``
(:func:`clone_area`): nothing of any session is readable or writable from inside. It
carries the tag ``parhelia-clone`` and not the owner tag, so the reconciler never takes
it for a worker. The daemon waits for its end, copies ``result.json`` and ``base.pack``
from the area to its own volume, and removes the job's files from Modal's volume.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from parhelia import clonejob
from parhelia.clonejob import CloneRequest, CloneResult
from parhelia.credentials import GITHUB_SECRET_KEY
from parhelia.errors import ParheliaError
from parhelia.volume import CLONES, Volume, clone_key, session_area
from parheliad.backends.modal.client import SYNC_ARGV, VOLUME_MOUNT
from parheliad.backends.modal.copies import VolumeCopies

log = structlog.get_logger(__name__)

CLONE_TAG = "parhelia-clone"
CLONE_TIMEOUT_S = 1800
CLONE_CPU = 1.0
CLONE_MEMORY_MB = 2048


def clone_area(clone_id: str) -> str:
    """The "session" whose area a clone sandbox mounts: ``clone-<id>`` (session ids are
    ``s-<hex>``, so no session's area is ever a clone's)."""
    return f"clone-{clone_id}"


class CloneSandboxes(VolumeCopies):
    """``has_secret`` and ``clone_with_secret``."""

    image: Callable[[], Awaitable[Any]]
    """The worker image, built once (``ModalBackend.image``): it has git and the worker."""

    async def has_secret(self, name: str, key: str = GITHUB_SECRET_KEY) -> bool:
        """Whether the named Modal secret exists and holds ``key`` (never its value)."""
        errors = self.sdk.exception
        try:
            await self.call(f"looking up the secret {name!r}",
                            lambda: self.sdk.Secret.from_name(
                                name, required_keys=[key]).hydrate.aio(),
                            keep=(errors.NotFoundError, errors.InvalidError))
        except (errors.NotFoundError, errors.InvalidError):
            return False
        return True

    async def clone_with_secret(self, clone_id: str, request: CloneRequest, secret: str,
                                local: Volume) -> CloneResult:
        """Run the clone sandbox; its result, with ``base.pack`` copied into ``local``."""
        request_key = clone_key(clone_id, clonejob.REQUEST)
        job = CloneRequest(url=request.url, ref=request.ref, sync_argv=list(SYNC_ARGV),
                           token_var=GITHUB_SECRET_KEY)
        await asyncio.to_thread(local.put, request_key, clonejob.dump(job))
        area = clone_area(clone_id)
        try:
            await self.push(local, [request_key], session_id=area)
            app = await self.app()
            image = await self.image()
            volume = (await self.volume_handle()).with_mount_options(
                sub_path=session_area(area))
            sb = await self.call(
                f"creating the clone sandbox for {clone_id}",
                lambda: self.sdk.Sandbox.create.aio(
                    "python", "-m", "modal_worker", "clone", f"{VOLUME_MOUNT}/{request_key}",
                    app=app, name=f"clone-{clone_id}", tags={CLONE_TAG: clone_id},
                    image=image, secrets=[self.sdk.Secret.from_name(secret)],
                    timeout=CLONE_TIMEOUT_S, cpu=CLONE_CPU, memory=CLONE_MEMORY_MB,
                    volumes={VOLUME_MOUNT: volume}),
                timeout=self.settings.launch_timeout_seconds)
            await self.call(f"waiting for the clone sandbox {sb.object_id}",
                            lambda: sb.wait.aio(raise_on_termination=False),
                            timeout=CLONE_TIMEOUT_S + 60)
            keys = [clone_key(clone_id, clonejob.RESULT), clone_key(clone_id, clonejob.PACK)]
            await self.pull(local, keys, session_id=area)
            try:
                raw = await asyncio.to_thread(local.get, keys[0])
            except FileNotFoundError:
                raise ParheliaError("E503", f"the clone sandbox {sb.object_id} ended without "
                                    "a result (exit "
                                    f"{getattr(sb, 'returncode', None)})") from None
            try:
                return clonejob.load_result(raw)
            except ValueError as exc:
                raise ParheliaError("E503", f"the clone sandbox's result is unreadable: "
                                    f"{exc}") from None
        finally:
            await self._forget(clone_id)

    async def _forget(self, clone_id: str) -> None:
        """The job's files on Modal's volume: its area, and the request as uploaded to the
        daemon-only area before it was copied there."""
        vol = await self.volume_handle()
        errors = self.sdk.exception
        self._session_blobs.pop(session_area(clone_area(clone_id)), None)
        for path in (session_area(clone_area(clone_id)), f"{CLONES}/{clone_id}"):
            try:
                await self.call("removing a clone job from the volume",
                                functools.partial(vol.remove_file.aio, path, recursive=True),
                                keep=(FileNotFoundError, errors.NotFoundError))
            except (FileNotFoundError, errors.NotFoundError, ParheliaError):
                log.info("modal.clone_job_not_removed", clone_id=clone_id, path=path)
