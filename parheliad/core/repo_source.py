"""A ``--repo`` task's checkpoint zero: the repository is cloned on the daemon's side.

The agent's sandbox never clones and never holds a git credential (ADR 0055). Before a
``--repo`` task is first dispatched, the dispatcher hands it here (:meth:`prepare`) and
it waits ("cloning ..."); the clone runs beside the dispatcher, at most
:data:`CLONE_CONCURRENCY` at a time:

1. the remote's ref is resolved and its commit fetched, one commit deep, into the
   daemon's mirror of the repository (:mod:`parheliad.core.mirrors`), with the GitHub
   token for that call only when the host is a GitHub one
   (:mod:`parhelia.gitremote`: a header in git's environment, never a URL, argv or file);
2. a Modal task whose repository needs a token the daemon does not have, while the Modal
   secret ``github-token`` exists, is fetched by a clone sandbox of its own instead
   (:mod:`parheliad.backends.modal.clones`), whose pack is indexed into the mirror;
3. the commit is checked out into a staging directory and uploaded as checkpoint zero,
   exactly as a local repository is (:func:`parheliad.core.workspace.upload`: base pack,
   branch, git-aware file list), and the task records it (``source_workspace_id``,
   ``base_commit``) with a ``repository_cloned`` event; the dispatcher is kicked.

A clone that cannot succeed fails the task with its code (E400 no credential, E401 the
credential refused, E101 no such ref, E502 the host unreachable); a daemon stopped
mid-clone clones again at the next pass. ``task retry`` reuses checkpoint zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from parhelia import clonejob, gitremote
from parhelia.clonejob import CloneRequest, CloneResult
from parhelia.errors import ParheliaError
from parhelia.gitremote import RemoteUrl, Resolved
from parhelia.paths import Paths
from parhelia.volume import CLONES, LocalVolume, clone_key
from parheliad.backends.base import SecretCloner
from parheliad.config import Config
from parheliad.core import forge, mirrors, workspace
from parheliad.core.forge import credentials
from parheliad.core.states import TaskStatus
from parheliad.core.tasks import fail_task
from parheliad.core.waiting import Wait
from parheliad.store import Store
from parheliad.store.rows import TaskRow
from parheliad.store.tx import Tx

log = structlog.get_logger(__name__)

CLONE_CONCURRENCY = 2
SECRET_LOOKUP_S = 5.0
"""How long `auth status` waits for Modal to say whether the GitHub secret exists."""
CLONED_EVENT = "repository_cloned"
CLONING_EVENT = "repository_cloning"
VIA_DAEMON = "daemon"
VIA_SANDBOX = "modal clone sandbox"


@dataclass(frozen=True)
class Cloned:
    """What a clone became: checkpoint zero of the task's future session."""

    workspace_id: str
    checkpoint_id: str
    commit: str
    branch: str | None
    default_branch: str | None
    via: str
    files: int
    bytes: int


@dataclass(frozen=True)
class CredentialStatus:
    """Which GitHub token the daemon would use for a host (never its value)."""

    host: str
    token: credentials.Token | None
    problem: str
    modal_secret: str
    modal_secret_found: bool
    hosts: tuple[str, ...]


class RepoSources:
    """Clones ``--repo`` tasks before their first dispatch (see the module docstring)."""

    name = "repo_sources"

    def __init__(self, store: Store, volume: LocalVolume, paths: Paths,
                 config: Callable[[], Config], backends: Mapping[str, Any],
                 environ: Mapping[str, str], env_file: Path,
                 kick: Callable[[], None]) -> None:
        self._store = store
        self._volume = volume
        self._paths = paths
        self._config = config
        self._backends = backends
        self._environ = environ
        self._env_file = env_file
        self._kick = kick
        self._gate = asyncio.Semaphore(CLONE_CONCURRENCY)
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self.mirrors = mirrors.Mirrors(paths.data_dir / "mirrors")

    async def start(self) -> None:
        """Nothing to resume: a task still without checkpoint zero is cloned again at the
        next dispatch pass; leftovers of a clone the last daemon did not finish go."""
        await asyncio.to_thread(shutil.rmtree, self._staging_root(), True)

    async def stop(self) -> None:
        jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        self._jobs.clear()

    def _staging_root(self) -> Path:
        return self._paths.data_dir / "clones"

    async def credential(self, host: str) -> CredentialStatus:
        """The GitHub token for ``host`` and where it comes from, and whether the Modal
        secret clones could use exists (asked only when Modal is available)."""
        cfg = self._config()
        problem = ""
        try:
            token = await asyncio.to_thread(credentials.find, host, self._env_file,
                                            dict(self._environ))
        except ParheliaError as exc:
            token, problem = None, exc.message
        secret = cfg.modal.github_secret_name
        cloner = next((b for b in self._backends.values()
                       if b.available()[0] and isinstance(b, SecretCloner)), None)
        found = False
        if cloner is not None:
            with contextlib.suppress(ParheliaError, TimeoutError):  # a status, not a wait
                found = await asyncio.wait_for(cloner.has_secret(secret), SECRET_LOOKUP_S)
        return CredentialStatus(host, token, problem, secret, found, tuple(cfg.github.hosts))

    # -- the dispatcher's hook -----------------------------------------------------------

    def prepare(self, task: TaskRow) -> Wait:
        """Start cloning ``task``'s repository (once); why it waits meanwhile."""
        if task.id not in self._jobs:
            job = asyncio.create_task(self._run(task), name=f"clone-{task.id}")
            self._jobs[task.id] = job
            job.add_done_callback(lambda _: self._jobs.pop(task.id, None))
        ref = f" at {task.source_repo_ref}" if task.source_repo_ref else ""
        return Wait(f"cloning {task.source_repo_url}{ref} on the daemon's side (its "
                    "checkpoint zero)")

    async def _run(self, task: TaskRow) -> None:
        async with self._gate:
            current = await self._store.tasks.find(task.id)
            if current is None or current.status != TaskStatus.PENDING or \
                    current.source_workspace_id:
                return
            try:
                cloned = await self.clone(current)
            except ParheliaError as exc:
                failed = exc
                await self._store.write(lambda tx: _fail_pending(tx, task.id, failed))
                log.warning("repo.clone_failed", task_id=task.id, code=failed.code)
                return
            except Exception:
                log.exception("repo.clone_crashed", task_id=task.id)
                await self._store.write(lambda tx: _fail_pending(tx, task.id, ParheliaError(
                    "E900", "the clone failed with an internal error; see `parhelia daemon "
                    "logs`")))
                return
        await self._store.write(lambda tx: _record(tx, task.id, task.source_repo_url, cloned))
        log.info("repo.cloned", task_id=task.id, commit=cloned.commit, via=cloned.via)
        self._kick()

    # -- the clone --------------------------------------------------------------------

    async def clone(self, task: TaskRow) -> Cloned:
        """Clone ``task``'s repository and make checkpoint zero of it (E-codes as in the
        module docstring)."""
        try:
            remote = gitremote.parse(task.source_repo_url)
        except ValueError as exc:
            raise ParheliaError("E101", f"repo_url: {exc}") from None
        cfg = self._config()
        github = forge.is_github(remote, cfg.github)
        environ = dict(self._environ)
        token = await asyncio.to_thread(credentials.find, remote.hostname, self._env_file,
                                        environ) if github else None
        ref = task.source_repo_ref or None
        secret_cloner = await self._secret_cloner(task, cfg) if github and token is None \
            else None
        await self._store.events.append(
            CLONING_EVENT, f"cloning {remote.raw}" + (f" at {ref}" if ref else ""),
            task_id=task.id, data={"repo_url": remote.raw, "ref": ref,
                                   "via": VIA_SANDBOX if secret_cloner else VIA_DAEMON,
                                   "credential": token.describe(self._env_file) if token
                                   else ("Modal secret " + cfg.modal.github_secret_name)
                                   if secret_cloner else "none"})
        if secret_cloner is not None:
            return await self._clone_in_sandbox(secret_cloner, remote, ref,
                                                cfg.modal.github_secret_name, task.backend)
        return await asyncio.to_thread(self._clone_here, remote, ref, token, github, environ,
                                       task.backend)

    async def _secret_cloner(self, task: TaskRow, cfg: Config) -> SecretCloner | None:
        backend = self._backends.get(task.backend)
        if not isinstance(backend, SecretCloner):
            return None
        try:
            found = await backend.has_secret(cfg.modal.github_secret_name)
        except ParheliaError:
            return None
        return backend if found else None

    def _clone_here(self, remote: RemoteUrl, ref: str | None, token: credentials.Token | None,
                    github: bool, environ: Mapping[str, str], backend: str) -> Cloned:
        value = token.value if token is not None else None
        try:
            resolved = gitremote.resolve(remote, value, ref, environ=environ)
            with self.mirrors.locked(remote, object_format=mirrors.object_format(
                    resolved.commit)) as mirror:
                mirrors.fetch_base(mirror, remote, value, resolved, environ=environ)
                return self._zero(mirror, remote, resolved, VIA_DAEMON)
        except LookupError as exc:
            raise ParheliaError("E101", f"repo_ref: {exc} ({remote.raw})") from None
        except gitremote.RemoteError as exc:
            said = token.describe(self._env_file) if token is not None else None
            raise self._remote_error(remote, exc.failure, said, github, backend) from None

    async def _clone_in_sandbox(self, cloner: SecretCloner, remote: RemoteUrl, ref: str | None,
                                secret: str, backend: str) -> Cloned:
        clone_id = secrets.token_hex(8)
        try:
            result = await cloner.clone_with_secret(
                clone_id, CloneRequest(url=remote.raw, ref=ref), secret, self._volume)
            if not result.ok:
                if result.error_kind == "ref":
                    raise ParheliaError("E101", f"repo_ref: {result.error} ({remote.raw})")
                failed = gitremote.Failure(result.error_kind, result.error)
                raise self._remote_error(remote, failed, f"the Modal secret {secret!r}", True,
                                         backend)
            pack = self._volume.path_for(clone_key(clone_id, clonejob.PACK))
            assert pack is not None
            return await asyncio.to_thread(self._index_pack, remote, result, pack)
        finally:
            await asyncio.to_thread(shutil.rmtree, self._volume.root / CLONES / clone_id, True)

    def _index_pack(self, remote: RemoteUrl, result: CloneResult, pack: Path) -> Cloned:
        if not pack.is_file() or not gitremote.SHA_RE.match(result.commit):
            raise ParheliaError("E600", "the clone sandbox left no pack of the commit")
        resolved = Resolved(result.commit, result.commit, result.branch or None,
                            result.default_branch or None)
        with self.mirrors.locked(remote, object_format=mirrors.object_format(
                result.commit)) as mirror:
            mirrors.add_pack(mirror, pack, result.commit)
            return self._zero(mirror, remote, resolved, VIA_SANDBOX)

    def _zero(self, mirror: Path, remote: RemoteUrl, resolved: Resolved, via: str) -> Cloned:
        root = self._staging_root()
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        staging = Path(tempfile.mkdtemp(prefix="clone-", dir=root))
        try:
            work = staging / "repo"
            mirrors.checkout(mirror, resolved.commit, resolved.branch, work)
            up = workspace.upload(self._volume, work, staging / "cache",
                                  message=f"clone of {remote.raw} at {resolved.commit[:12]}",
                                  user_excludes=False)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return Cloned(up.workspace_id, up.checkpoint_id, resolved.commit, resolved.branch,
                      resolved.default_branch, via, up.files, up.bytes)

    def _remote_error(self, remote: RemoteUrl, failed: gitremote.Failure,
                      credential: str | None, github: bool, backend: str) -> ParheliaError:
        """The catalogue error of a failed fetch; ``credential`` says which one was sent
        (None: none)."""
        where = f"{remote.raw}: {failed.message}"
        if failed.kind == "network":
            return ParheliaError("E502", f"the clone could not reach the host of {where}")
        if failed.kind != "auth":
            return ParheliaError("E502", f"the clone failed: {where}")
        if credential is None and github:
            # A backend that clones with a secret of its own (Modal) names that way too.
            modal = self._config().modal.github_secret_name \
                if isinstance(self._backends.get(backend), SecretCloner) else None
            return ParheliaError("E400", f"{remote.raw} needs a GitHub credential to be "
                                 "cloned and the daemon has none: "
                                 + credentials.ways(remote.hostname, self._env_file, modal))
        if credential is None:
            return ParheliaError("E400", f"{remote.raw} needs a credential to be cloned. "
                                 f"Parhelia sends a token only to GitHub hosts "
                                 f"(github.hosts); for {remote.host} use an ssh:// or "
                                 "git@host:path URL (your ssh agent is used), or add the "
                                 "host to github.hosts if it is a GitHub Enterprise "
                                 "server")
        return ParheliaError("E401", f"{remote.host} refused {credential} for {where}. The "
                             "token must be able to read the repository (a classic token: "
                             "`repo`; a fine-grained one: Contents read on it)")


def _fail_pending(tx: Tx, task_id: str, exc: ParheliaError) -> None:
    current = tx.tasks.get(task_id)
    if current is not None and current.status == TaskStatus.PENDING:
        fail_task(tx, task_id, exc.code, f"the repository could not be cloned: {exc.message}",
                  result_subtype="", result_text="")


def _record(tx: Tx, task_id: str, url: str, cloned: Cloned) -> None:
    current = tx.tasks.get(task_id)
    if current is None:
        return  # deleted meanwhile: its checkpoint zero is unreferenced, as an upload's
    tx.tasks.update(task_id, source_workspace_id=cloned.workspace_id,
                    base_commit=cloned.commit)
    tx.events.append(
        CLONED_EVENT, f"cloned {url} at {cloned.commit[:12]}"
        + (f" ({cloned.branch})" if cloned.branch else "") + f" by the {cloned.via}",
        task_id=task_id, data={"repo_url": url, "commit": cloned.commit,
                               "branch": cloned.branch, "default_branch": cloned.default_branch,
                               "via": cloned.via, "checkpoint_id": cloned.checkpoint_id,
                               "files": cloned.files, "bytes": cloned.bytes})
