"""``parhelia env show|build|list|prune``: a directory's environment, part by part with
its origin; its image built ahead of time; what is cached, and removing it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from parhelia.backends import LOCAL, MODAL
from parhelia.environment import agent_hosts, model_api_host
from parhelia.errors import ParheliaError
from parheliad.backends.base import Backend, ImageBackend
from parheliad.config import Config
from parheliad.environments.builds import ImageBuilds, describe
from parheliad.environments.files import DirTree
from parheliad.environments.model import Environment
from parheliad.environments.service import for_directory
from parheliad.store import Store
from parheliad.store.clock import US_PER_SECOND, now_us
from parheliad.store.rows import EnvironmentCacheRow, EnvironmentImageRow, EnvironmentSnapshotRow
from parheliad.store.tables.environments import IMAGE_BUILT
from parheliad.store.tx import Tx

DEFAULT_PRUNE_HOURS = 7 * 24.0
PROGRESS_SECONDS = 1.0
MODAL_ONLY = "Modal only: the local worker uses this machine as it is"


@dataclass(frozen=True)
class Part:
    name: str
    values: list[str]
    origin: str
    note: str = ""


def parts(env: Environment, backend: str) -> list[Part]:
    """What ``env show`` lists, in the order a machine is made."""
    o = env.origins
    local = backend == LOCAL
    image_note = MODAL_ONLY if local else ""
    out = [Part("base", [env.base.describe()], o.get("base", "default"), image_note)]
    if env.apt:
        out.append(Part("apt", list(env.apt), o.get("apt", ""), image_note))
    if env.run:
        out.append(Part("run", list(env.run), o.get("run", ""), image_note))
    out.append(Part("claude code", ["pinned, with the worker, last"], "Parhelia", image_note))
    if env.env:
        out.append(Part("env", [f"{k}={v}" for k, v in sorted(env.env.items())],
                        o.get("env", "")))
    if env.setup:
        out.append(Part("setup", [s.text() for s in env.setup], o.get("setup", ""),
                        "each new sandbox or machine, before the agent"))
    if env.start:
        out.append(Part("start", [s.text() for s in env.start], o.get("start", ""),
                        "each incarnation, after the restore"))
    if env.setup_secrets:
        out.append(Part("setup secrets", list(env.setup_secrets), o.get("setup_secrets", ""),
                        "variables of the daemon's environment" if local
                        else "Modal secrets, in the setup sandbox only"))
    out.append(Part("network", [env.network, *env.allow], o.get("network", ""),
                    "not enforced on the local backend" if local else ""))
    if env.cache:
        out.append(Part("cache", list(env.cache), o.get("cache", ""),
                        "this machine's own caches" if local
                        else "kept on the repository's cache volume"))
    if env.allow_commands:
        out.append(Part("allow commands", list(env.allow_commands),
                        o.get("allow_commands", ""),
                        "pre-approved for an agent that runs uncontained"))
    out.append(Part("setup timeout", [f"{env.setup_timeout_minutes:g} minutes"],
                    o.get("setup_timeout_minutes", "")))
    return out


def hosts(env: Environment, environ: Mapping[str, str]) -> list[str]:
    return agent_hosts(env.network, env.allow,
                       model_api_host(environ.get("ANTHROPIC_BASE_URL"))) or []


def build_log(env: Environment, seconds: float, image_id: str, error: str) -> str:
    """The build's record, for people: its layers in order and how it ended."""
    lines = [f"image {env.image_hash} of environment {env.hash}",
             f"base     {env.base.describe()}"]
    if env.base.kind != "debian_slim":
        lines.append("check    apt-get, glibc and Python 3.11+ (refused otherwise)")
    lines += [f"apt      {p}" for p in env.apt] + [f"run      {c}" for c in env.run]
    lines += ["layers   git, curl, tmux, sshd, Node 22, Claude Code (pinned)",
              "sources  the worker (mounted at start)"]
    if error:
        lines.append(f"FAILED after {seconds:.0f} s: {error}")
    else:
        lines.append(f"built in {seconds:.0f} s as {image_id}; Modal's own output: "
                     f"modal image logs {image_id}")
    return "\n".join(lines)


@dataclass(frozen=True)
class Progress:
    line: str
    done: bool = False
    image_hash: str = ""
    image_id: str = ""
    seconds: float = 0.0
    error: str = ""
    log: str = ""


@dataclass(frozen=True)
class Pruned:
    images: list[str]
    snapshots: list[str]
    caches: list[str]


class EnvironmentOps:
    def __init__(self, store: Store, backends: Mapping[str, Backend], images: ImageBuilds,
                 config: Callable[[Path | None], Config], environ: Mapping[str, str]) -> None:
        self._store = store
        self._backends = backends
        self._images = images
        self._config = config
        self._environ = environ

    def _backend(self, name: str, *, images: bool = False) -> Backend:
        cfg = self._config(None)
        chosen = name or (MODAL if images else cfg.orchestrator.default_backend)
        backend = self._backends.get(chosen)
        if backend is None:
            raise ParheliaError("E500", f"the {chosen} backend is not available here "
                                "(`parhelia status` says why)")
        if images and not getattr(backend, "builds_images", False):
            raise ParheliaError("E101", f"the {chosen} backend runs workers on this machine "
                                "as it is: there is no image to build (env build is for "
                                "--backend modal)", field="backend")
        return backend

    async def show(self, path: Path, *, gpu: bool, trusted: bool, backend: str = ""
                   ) -> tuple[Environment, str, EnvironmentImageRow | None]:
        name = self._backend(backend).name if backend or not gpu else MODAL
        env = await for_directory(self._config(path), path, gpu=gpu, trusted=trusted)
        return env, name, await self._store.environments.image(env.image_hash, name)

    async def build(self, path: Path, *, gpu: bool, trusted: bool, backend: str = ""
                    ) -> AsyncIterator[Progress]:
        chosen = self._backend(backend, images=True)
        image_backend = cast(ImageBackend, chosen)
        env = await for_directory(self._config(path), path, gpu=gpu, trusted=trusted)
        yield Progress(f"building {env.image_hash} on {chosen.name}: {describe(env)}",
                       image_hash=env.image_hash)
        started = time.monotonic()
        job = asyncio.create_task(self._images.build(image_backend, env, DirTree(path)))
        while not job.done():
            await asyncio.wait({job}, timeout=PROGRESS_SECONDS)
            if not job.done():
                yield Progress(f"building {env.image_hash}: {time.monotonic() - started:.0f} s",
                               image_hash=env.image_hash,
                               seconds=time.monotonic() - started)
        build = job.result()
        seconds = time.monotonic() - started
        yield Progress(
            f"{env.image_hash} " + (f"did not build: {build.error}" if build.error
                                    else f"built as {build.image_id} in {seconds:.0f} s"),
            done=True, image_hash=env.image_hash, image_id=build.image_id, seconds=seconds,
            error=build.error, log=build_log(env, seconds, build.image_id, build.error))

    async def lists(self) -> tuple[list[EnvironmentImageRow], list[EnvironmentSnapshotRow],
                                   list[EnvironmentCacheRow]]:
        store = self._store.environments
        return await store.images(), await store.snapshots(), await store.caches()

    async def prune(self, *, older_than_hours: float, everything: bool, dry_run: bool
                    ) -> Pruned:
        """Unused past the age (or everything): images and prepared filesystems are
        forgotten (the next task builds or sets up again: Modal keeps an image's layers,
        and a snapshot expires by itself), cache volumes are deleted."""
        hours = older_than_hours or DEFAULT_PRUNE_HOURS
        if not 0 < hours <= 24 * 3650:
            raise ParheliaError("E101", "older_than_hours: must be above 0 and at most 10 "
                                "years", field="older_than_hours")
        cutoff = now_us() - int(hours * 3600 * US_PER_SECOND)
        images, snapshots, caches = await self.lists()
        old_images = [i for i in images if i.status != "building" and (
            everything or (i.last_used_at or i.started_at) < cutoff)]
        old_snaps = [s for s in snapshots if everything or s.expires_at < now_us()
                     or (s.last_used_at or s.created_at) < cutoff]
        old_caches = [c for c in caches if everything or (c.last_used_at or c.created_at)
                      < cutoff]
        deleted: list[EnvironmentCacheRow] = []
        if not dry_run:
            for cache in old_caches:
                backend = self._backends.get(cache.backend)
                if backend is None or not getattr(backend, "builds_images", False):
                    continue  # that backend is not here: its volume stays listed
                await cast(ImageBackend, backend).delete_cache(cache.name)
                deleted.append(cache)

            def unit(tx: Tx) -> None:
                for i in old_images:
                    tx.environments.delete_image(i.image_hash, i.backend)
                for s in old_snaps:
                    tx.environments.delete_snapshot(s.environment_hash, s.base, s.backend)
                for c in deleted:
                    tx.environments.delete_cache(c.name, c.backend)
            await self._store.write(unit)
        return Pruned([i.image_hash for i in old_images],
                      [f"{s.environment_hash}@{s.base or '-'}" for s in old_snaps],
                      [c.name for c in old_caches])


def is_built(row: EnvironmentImageRow | None) -> bool:
    return row is not None and row.status == IMAGE_BUILT

