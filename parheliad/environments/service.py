"""The daemon's environment resolver: a task's environment at creation (from its uploaded
workspace, checkpoint zero), a directory's for ``parhelia env show|build``, and what a
task will be allowed to do, in words (``task create``'s notices)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

from parhelia import sandbox
from parhelia.backends import LOCAL, MODAL
from parhelia.checkpoint import BlobStore
from parhelia.credentials import CREDENTIAL_VARS, GITHUB_TOKEN_VARS
from parhelia.environment import CACHE_ROOT_MODAL, WorkerEnvironment
from parhelia.errors import ParheliaError
from parhelia.volume import Volume
from parheliad.backends.modal.image import CLAUDE_CODE_VERSION
from parheliad.config import Config
from parheliad.core.workspace import checkpoint_zero
from parheliad.environments.checks import secret_variable
from parheliad.environments.files import ContextFile, DirTree, ManifestTree, SourceTree
from parheliad.environments.model import Environment
from parheliad.environments.resolve import Policy, resolve
from parheliad.store.rows import TaskRow


class EmptyTree:
    """No files (a repository-URL task: its files are only cloned inside the worker)."""

    label = "no files"

    def read(self, rel: str, limit: int = 0) -> bytes | None:
        return None

    def names(self, rel: str = "") -> list[str]:
        return []

    def files(self, prefix: str) -> Iterator[ContextFile]:
        return iter(())

    def content(self, rel: str) -> bytes:
        raise ParheliaError("E101", f"{rel}: no such file", file=rel)


def policy(cfg: Config, trusted: bool) -> Policy:
    """What the user's configuration allows an environment (and where it says so)."""
    return Policy(network=cfg.environment.network,
                  allow_commands=tuple(cfg.agent.allow_commands), trusted=trusted,
                  claude_version=CLAUDE_CODE_VERSION,
                  setup_timeout_minutes=float(cfg.environment.setup_timeout_minutes),
                  cache=cfg.environment.cache,
                  forbidden_secrets=(*CREDENTIAL_VARS, *GITHUB_TOKEN_VARS,
                                     cfg.modal.secret_name, cfg.modal.github_secret_name),
                  where={"network": cfg.source("environment.network")})


class EnvironmentResolver:
    def __init__(self, volume: Volume) -> None:
        self._volume = volume


    async def for_task(self, cfg: Config, *, workspace_id: str, gpu: bool,
                       trusted: bool) -> Environment:
        """A new task's environment: from its uploaded workspace, or the default one for a
        repository-URL task (whose files exist only where the worker clones them)."""
        def work() -> Environment:
            tree: SourceTree = ManifestTree(checkpoint_zero(self._volume, workspace_id),
                                            BlobStore(self._volume)) if workspace_id \
                else EmptyTree()
            return resolve(tree, policy(cfg, trusted), gpu=gpu)
        return await asyncio.to_thread(work)



async def for_directory(cfg: Config, path: Path, *, gpu: bool, trusted: bool) -> Environment:
    """A directory's environment (``parhelia env show|build DIR``)."""
    if not path.is_absolute() or not path.is_dir():
        raise ParheliaError("E101", f"path: {path} is not an absolute directory", field="path")
    return await asyncio.to_thread(resolve, DirTree(path), policy(cfg, trusted), gpu=gpu)


def task_tree(volume: Volume, task: TaskRow) -> SourceTree:
    """A task's files as uploaded (checkpoint zero); none for a repository-URL task."""
    if not task.source_workspace_id:
        return EmptyTree()
    return ManifestTree(checkpoint_zero(volume, task.source_workspace_id), BlobStore(volume))


def cache_volume_name(task: TaskRow) -> str:
    """The repository's dependency cache volume: one per repository (its directory on
    this machine, or its URL), shared by its tasks; "" when the task has neither."""
    identity = task.workspace_path or task.source_repo_url
    if not identity:
        return ""
    return "parhelia-cache-" + hashlib.sha256(identity.encode()).hexdigest()[:16]


def stored(task: TaskRow) -> Environment | None:
    """The environment a task was created with (None for tasks from before environments)."""
    if not task.environment_json:
        return None
    try:
        return Environment.from_dict(json.loads(task.environment_json))
    except (ValueError, TypeError):
        return None


def for_worker(env: Environment | None, *, images: bool
               ) -> WorkerEnvironment | None:
    """The spec's ``environment`` block for a backend: with images (Modal) the setup
    secrets are Modal secrets of the setup sandbox only, and the caches live on the
    repository's cache volume; without (local), the secrets are variables of the worker's
    own environment that only setup gets, and the machine keeps its caches."""
    if env is None:
        return None
    worker = env.worker(cache_root=CACHE_ROOT_MODAL if images and env.cache else None)
    secrets = () if images else tuple(secret_variable(n) for n in env.setup_secrets)
    return dataclasses.replace(worker, setup_secrets=secrets)


def allowed_tools(env: Environment | None) -> list[str]:
    """``--allowedTools`` for the environment's pre-approved commands."""
    return [f"Bash({cmd}:*)" for cmd in (env.allow_commands if env else ())]


CONTAINED_DEFAULT_MODE = "bypassPermissions"
"""The agent's mode inside a sandbox that is its boundary, when the task chose none."""


def chose_mode(task: TaskRow) -> bool:
    """Whether the task's permission mode was chosen (a flag, the user's or the project's
    configuration) rather than the default."""
    try:
        sources = json.loads(task.option_sources or "{}")
    except ValueError:
        sources = {}
    return isinstance(sources, dict) and sources.get("permission_mode", "default") != "default"


def permission(task: TaskRow, isolation: str = "") -> tuple[str, str]:
    """(the agent's mode, why) as the task will run it; ``isolation``: how its current
    container contains its agent, when known (``parhelia.sandbox``)."""
    if chose_mode(task):
        return task.permission_mode, "chosen for this task"
    if task.backend == MODAL:
        return CONTAINED_DEFAULT_MODE, "the default inside a Modal sandbox (the sandbox is " \
            "the boundary)"
    if isolation == sandbox.ISOLATION_BUBBLEWRAP:
        return CONTAINED_DEFAULT_MODE, "the default inside this machine's bubblewrap " \
            "container (the container is the boundary)"
    return task.permission_mode, "the default for an agent that runs uncontained on this " \
        "machine (bypassPermissions once bubblewrap contains it)"


def create_notices(task: TaskRow) -> list[str]:
    """What `task create` tells the user about the task's environment: its warnings (an
    unknown key...), and plainly when the agent will be refused commands."""
    env = stored(task)
    out = list(env.warnings) if env else []
    if task.source_repo_url and not task.source_workspace_id:
        out.append("The repository's environment files are not read for a --repo task (its "
                   "files are cloned after the task is created): it runs in the default "
                   "environment. Run the task from a clone to use them.")
    mode, _ = permission(task)
    if task.backend == LOCAL and mode in ("acceptEdits", "plan", "dontAsk", "manual"):
        allowed = list(env.allow_commands) if env else []
        which = (f"only {', '.join(allowed)} (the environment's allow_commands)" if allowed
                 else "none")
        out.append(f"The agent runs on this machine with --permission-mode {mode}: shell "
                   f"commands that need approval will be refused; pre-approved: {which}. "
                   "List the commands it may run in allow_commands of "
                   ".parhelia/environment.toml (within agent.allow_commands of your "
                   "config), or choose --permission-mode bypassPermissions. (Contained "
                   "in this machine's bubblewrap sandbox, it runs with bypassPermissions "
                   "instead: `parhelia doctor` says whether it can be.)")
    return out


ConfigFor = Callable[[Path | None], Config]
