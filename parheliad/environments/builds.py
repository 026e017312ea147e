"""Environment images, built once per image hash and backend (docs/adr/0052).

A task whose environment's image is not built yet waits in the queue saying so
(``building environment img-...: 40 s, ...``, refreshed at each dispatch pass); the
first task that needs an image starts its build in the background, every other task of
the same image waits for that one build, and the dispatcher is kicked when it ends. The
build's compute is booked in the ledger against the task that started it (an estimate
at the configured CPU rate: Modal bills image builds as compute too). A failed build
fails the tasks that waited for it (E606, with Modal's reason); a task created after the
failure tries again.

A Dockerfile base is built from a private copy of its context taken from the task's
upload (or the directory of ``parhelia env build``): regular files only, written into a
directory of the daemon's state that is removed once the build ends.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import structlog

from parhelia.errors import ParheliaError
from parheliad.backends.base import ImageBackend
from parheliad.backends.modal.image import CLAUDE_CODE_VERSION, CONTEXT_DIR, DOCKERFILE_NAME
from parheliad.config import Config
from parheliad.environments.files import SourceTree, materialise
from parheliad.environments.model import BASE_DOCKERFILE, Environment
from parheliad.store import Store
from parheliad.store.clock import now_us
from parheliad.store.tables.environments import IMAGE_BUILT, IMAGE_FAILED
from parheliad.store.tx import Tx

log = structlog.get_logger(__name__)

BUILD_CORES = Decimal(2)
"""The cores a build is booked at (an estimate: the budget's figure until Modal's own
usage report, which includes builds, corrects the month)."""
BUILDING = "building environment"


class ImageNotReady(ParheliaError):
    """The task's image is being built: it waits (the message is its waiting reason)."""

    def __init__(self, message: str) -> None:
        super().__init__("E500", message)


@dataclass
class Build:
    image_hash: str
    backend: str
    description: str
    started: float
    task_id: str = ""
    done: asyncio.Event | None = None
    error: str = ""
    image_id: str = ""


def describe(env: Environment) -> str:
    """What the build makes, in words (the waiting reason's tail, ``env build``'s line)."""
    parts = [env.base.describe()]
    if env.apt:
        parts.append(f"{len(env.apt)} apt package(s)")
    if env.run:
        parts.append(f"{len(env.run)} run layer(s)")
    parts.append("Claude Code and the worker")
    return ", ".join(parts)


class ImageBuilds:
    def __init__(self, store: Store, config: Callable[[], Config], state_dir: Path,
                 kick: Callable[[], None] = lambda: None) -> None:
        self._store = store
        self._config = config
        self._state_dir = state_dir
        self._kick = kick
        self._builds: dict[tuple[str, str], Build] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def image_for(self, backend: ImageBackend, env: Environment, *, task_id: str,
                        created_at: int, tree: Callable[[], SourceTree]) -> str:
        """The image id of ``env`` on ``backend``; :class:`ImageNotReady` while it builds
        (starting the build if nobody has); E606 when the build failed after the task was
        created."""
        key = (env.image_hash, backend.name)
        build = self._builds.get(key)
        if build is None:
            row = await self._store.environments.image(env.image_hash, backend.name)
            if row is not None and row.status == IMAGE_BUILT and row.image_id:
                await self._store.write(lambda tx: tx.environments.image_used(*key))
                return row.image_id
            if row is not None and row.status == IMAGE_FAILED and row.started_at >= created_at:
                raise ParheliaError("E606", f"the environment's image {env.image_hash} did not "
                                    f"build: {row.error}")
            build = self._start(backend, env, task_id=task_id, tree=tree)
        if build.done is not None and build.done.is_set():
            self._builds.pop(key, None)
            if build.error:
                raise ParheliaError("E606", f"the environment's image {env.image_hash} did "
                                    f"not build: {build.error}")
            return build.image_id
        seconds = time.monotonic() - build.started
        raise ImageNotReady(f"{BUILDING} {env.image_hash}: {seconds:.0f} s so far on "
                            f"{backend.name} ({build.description}); `parhelia env list` "
                            "shows the builds")

    def _start(self, backend: ImageBackend, env: Environment, *, task_id: str,
               tree: Callable[[], SourceTree]) -> Build:
        build = Build(env.image_hash, backend.name, describe(env), time.monotonic(),
                      task_id=task_id, done=asyncio.Event())
        self._builds[(env.image_hash, backend.name)] = build
        job = asyncio.create_task(self._run(backend, env, build, tree),
                                  name=f"build-{env.image_hash}")
        self._tasks.add(job)
        job.add_done_callback(self._tasks.discard)
        return build

    async def build(self, backend: ImageBackend, env: Environment, tree: SourceTree,
                    *, task_id: str = "") -> Build:
        """Build now and wait (``parhelia env build``): the finished build, its error in
        ``error``."""
        key = (env.image_hash, backend.name)
        build = self._builds.get(key) or self._start(backend, env, task_id=task_id,
                                                      tree=lambda: tree)
        assert build.done is not None
        await build.done.wait()
        if self._builds.get(key) is build:
            self._builds.pop(key, None)
        return build

    async def _run(self, backend: ImageBackend, env: Environment, build: Build,
                   tree: Callable[[], SourceTree]) -> None:
        await self._store.write(lambda tx: self._building(tx, env, build))
        workdir: Path | None = None
        try:
            if env.base.kind == BASE_DOCKERFILE:
                workdir = await asyncio.to_thread(self._context, env, tree())
            build.image_id = await backend.build_image(env.recipe(CLAUDE_CODE_VERSION),
                                                       workdir)
        except ParheliaError as exc:
            build.error = exc.message
        except Exception as exc:  # a bug must not leave tasks waiting forever
            log.exception("environment build crashed", image_hash=env.image_hash)
            build.error = f"internal error ({type(exc).__name__})"
        finally:
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)
        seconds = time.monotonic() - build.started
        await self._store.write(lambda tx: self._finished(tx, env, build, seconds))
        log.info("environment built" if not build.error else "environment build failed",
                 image_hash=env.image_hash, backend=backend.name, seconds=round(seconds, 1),
                 error=build.error or None)
        assert build.done is not None
        build.done.set()
        self._kick()

    def _context(self, env: Environment, tree: SourceTree) -> Path:
        """The Dockerfile and its context, copied from the repository (see the module
        docstring) into a private directory."""
        base = self._state_dir / "builds"
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        workdir = Path(tempfile.mkdtemp(prefix=f"{env.image_hash}-", dir=base))
        (workdir / CONTEXT_DIR).mkdir(mode=0o700)
        materialise(tree, env.base.context, workdir / CONTEXT_DIR)
        data = tree.read(env.base.dockerfile)
        if data is None:
            raise ParheliaError("E606", f"{env.base.dockerfile}: no longer a regular file")
        (workdir / DOCKERFILE_NAME).write_bytes(data)
        return workdir

    def _building(self, tx: Tx, env: Environment, build: Build) -> None:
        tx.environments.image_building(env.image_hash, build.backend, build.description)
        tx.events.append("environment_building", f"building {env.image_hash} on "
                         f"{build.backend}: {build.description}", task_id=build.task_id or None,
                         data={"image_hash": env.image_hash, "environment_hash": env.hash,
                               "backend": build.backend})

    def _finished(self, tx: Tx, env: Environment, build: Build, seconds: float) -> None:
        tx.environments.image_done(env.image_hash, build.backend, image_id=build.image_id,
                                   error=build.error, build_ms=int(seconds * 1000))
        data = {"image_hash": env.image_hash, "backend": build.backend,
                "seconds": round(seconds, 1), "image_id": build.image_id}
        if build.error:
            tx.events.append("environment_build_failed", f"{env.image_hash}: {build.error}",
                             level="error", task_id=build.task_id or None,
                             data={**data, "error": build.error[:2000]})
            return
        tx.events.append("environment_built", f"{env.image_hash} built in {seconds:.0f} s",
                         task_id=build.task_id or None, data=data)
        rate = self._config().rates.cpu_core_per_second
        micros = int(Decimal(str(round(seconds, 3))) * BUILD_CORES * rate * 1_000_000)
        if micros > 0 and build.task_id and tx.tasks.get(build.task_id) is not None:
            tx.ledger.insert("compute", micros, task_id=build.task_id,
                             note=f"environment build {env.image_hash} ({seconds:.0f} s at "
                                  f"{BUILD_CORES} cores), estimated at the [rates]",
                             at=now_us())
            tx.tasks.recount_cost(build.task_id, "compute_cost_micros")

    async def stop(self) -> None:
        for job in list(self._tasks):
            job.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

