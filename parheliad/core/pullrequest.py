"""Results as pull requests: ``task pr`` (and ``task create --pr`` at completion).

The task's branch is the one ``task pull`` makes (:func:`parheliad.core.results.
branch_commits`: the same commits, byte for byte). It is built and pushed on the
daemon's side, with the user's credential, never in a worker:

- a task uploaded from the user's clone: in a shadow over that clone (its objects are
  borrowed, nothing is written to it, none of its config runs; ADR 0014), pushed to the
  remote of the branch it was uploaded from (else ``origin``);
- a ``--repo`` task: in the daemon's mirror of the repository (:mod:`.mirrors`), pushed
  to the task's URL.

The push is guarded by a lease: the branch must be absent, or where Parhelia's previous
push of this task left it, so a second ``task pr`` replaces its own earlier branch and
never someone else's commits (E607 otherwise, and for any refusal of the remote, with
its reason). Then the forge of the remote (:mod:`.forge`: GitHub) opens the pull
request, or updates the one already open for the branch; a remote without a forge is
pushed to, with its compare page when one can be derived. The task records remote,
branch, commit, base and pull request; an event says what was done.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from parhelia import gitremote, gitsafe
from parhelia.errors import ParheliaError
from parhelia.gitremote import RemoteUrl
from parhelia.progress import Report, ignore
from parhelia.volume import Volume
from parheliad.config import Config
from parheliad.core import forge, gitpull, mirrors, results
from parheliad.core.events import EventBus, Subscription
from parheliad.core.forge import credentials
from parheliad.core.prbody import pull_request_body
from parheliad.store import Store
from parheliad.store.rows import TaskRow
from parheliad.store.tables.events import EventFilter
from parheliad.store.tx import Tx

log = structlog.get_logger(__name__)

BRANCH_PREFIX = "parhelia/"
TASK_REF = "refs/parhelia/tasks/"
OPENED_EVENT = "pull_request_opened"
PUSHED_EVENT = "branch_pushed"
NOT_OPENED_EVENT = "pull_request_not_opened"
TITLE_CHARS = 120

Changes = Callable[[str], Awaitable[tuple[TaskRow, results.TaskChanges]]]


@dataclass(frozen=True)
class Request:
    """What ``task pr`` asks for; empty values mean "the recorded one, else the default"."""

    base: str = ""
    title: str = ""
    branch: str = ""
    draft: bool | None = None


@dataclass(frozen=True)
class Outcome:
    remote: str
    branch: str
    commit: str
    base: str
    pushed: bool
    """False when the remote branch was already at the commit."""
    number: int
    url: str
    created: bool
    forge: str
    skipped: list[str]
    draft: bool = False
    """The pull request is a draft (as the forge says)."""


class PullRequests:
    """Publishes tasks' results (see the module docstring); follows ``task_completed``
    for the tasks created with ``--pr``."""

    name = "pull_requests"

    def __init__(self, store: Store, bus: EventBus, volume: Volume,
                 config: Callable[[], Config], environ: Mapping[str, str], env_file: Path,
                 data_dir: Path, changes: Changes) -> None:
        self._store = store
        self._bus = bus
        self._volume = volume
        self._config = config
        self._environ = environ
        self._env_file = env_file
        self._mirrors = mirrors.Mirrors(data_dir / "mirrors")
        self._changes = changes
        self._sub: Subscription | None = None
        self._loop: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    # -- the `--pr` follower ------------------------------------------------------------

    async def start(self) -> None:
        self._sub = self._bus.subscribe(EventFilter(types=("task_completed",)))
        self._loop = asyncio.create_task(self._follow(self._sub), name="pull-requests")

    async def stop(self) -> None:
        if self._sub is not None:
            self._sub.close()
        tasks = [t for t in (self._loop, *self._running) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _follow(self, sub: Subscription) -> None:
        async for event in sub:
            if event.task_id is None:
                continue
            job = asyncio.create_task(self._auto(event.task_id))
            self._running.add(job)
            job.add_done_callback(self._running.discard)

    async def _auto(self, task_id: str) -> None:
        task = await self._store.tasks.find(task_id)
        if task is None or not task.open_pr:
            return
        try:
            await self.publish(task_id, Request())
        except ParheliaError as exc:
            failed = exc
            await self._store.write(lambda tx: _not_opened(tx, task_id, failed))
            log.warning("pr.not_opened", task_id=task_id, code=failed.code)
        except Exception:
            log.exception("pr.crashed", task_id=task_id)
            await self._store.write(lambda tx: _not_opened(tx, task_id, ParheliaError(
                "E900", "an internal error; see `parhelia daemon logs`")))

    # -- task pr ------------------------------------------------------------------------

    async def publish(self, ref: str, request: Request, progress: Report = ignore
                      ) -> tuple[TaskRow, results.TaskChanges, Outcome]:
        """Push the task's branch and open (or update) its pull request; the task as
        recorded afterwards, its changes and what was done."""
        task, changes = await self._changes(ref)
        lock = self._locks.setdefault(task.id, asyncio.Lock())
        async with lock:  # one publication of a task at a time: the lease is its own
            task, changes = await self._changes(task.id)
            if not changes.tree:
                raise ParheliaError("E605", f"task {task.id} changed nothing; there is no "
                                            "branch to push or pull request to open")
            agent_session = ""
            if task.session_id:
                session = await self._store.sessions.find(task.session_id)
                agent_session = session.agent_session_id if session is not None else ""
            outcome = await asyncio.to_thread(self._publish, task, changes, request,
                                              self._config(), agent_session, progress)
            row = await self._store.write(lambda tx: _record(tx, task.id, outcome))
        log.info("pr.published", task_id=task.id, branch=outcome.branch, number=outcome.number,
                 pushed=outcome.pushed)
        return row, changes, outcome

    def _publish(self, task: TaskRow, changes: results.TaskChanges, request: Request,
                 cfg: Config, agent_session: str, progress: Report) -> Outcome:
        with self._where(task, changes) as (git_dir, target, remote, prefix):
            token = self._token(remote, cfg)
            commits = results.branch_commits(target, self._volume, task, changes, prefix,
                                              progress)
            if isinstance(target, Path):  # the mirror: keep the task's commits
                gitsafe.run([f"--git-dir={target}", "update-ref", TASK_REF + task.id,
                             commits.final])
            stat = gitpull.diff(target, commits.base, commits.final, "--stat=100")
            return self._push_and_open(git_dir, remote, token, task, changes, commits, stat,
                                       request, cfg, agent_session)

    @contextlib.contextmanager
    def _where(self, task: TaskRow, changes: results.TaskChanges
               ) -> Iterator[tuple[str, gitpull.Target, RemoteUrl, str]]:
        """(git dir to push from, where to make the commits, the remote, path prefix)."""
        if task.source_repo_url:
            remote = _parse(task.source_repo_url, "the task's repository")
            base = task.base_commit
            with self._mirrors.locked(remote, object_format=mirrors.object_format(base)) \
                    as mirror:
                if base and not mirrors.has_commit(mirror, base):
                    self._refetch(mirror, remote, base)
                yield str(mirror), mirror, remote, ""
            return
        _, repo, prefix = results.user_repository(task)
        zero = changes.base.git if changes.base is not None else None
        branch = str((zero or {}).get("branch") or "") or None
        remote = _user_remote(repo, branch)
        with gitsafe.shadow(repo) as sh:
            if sh is None:
                raise ParheliaError("E101", f"{repo} is not a git repository any more")
            yield str(sh.git_dir), sh, remote, prefix

    def _refetch(self, mirror: Path, remote: RemoteUrl, commit: str) -> None:
        """The mirror lost the base commit (its data was removed): fetch it again."""
        token = self._token(remote, self._config())
        resolved = gitremote.Resolved(commit, commit, None, None)
        try:
            mirrors.fetch_base(mirror, remote, token.value if token else None, resolved,
                               environ=self._environ)
        except gitremote.RemoteError as exc:
            raise _remote_error(remote, exc.failure, token, self._env_file, "fetch") from None

    def _token(self, remote: RemoteUrl, cfg: Config) -> credentials.Token | None:
        """The GitHub token for a GitHub remote (E400 with every way to give one when the
        daemon has none); None for any other remote (ssh uses the user's agent)."""
        if not forge.is_github(remote, cfg.github):
            return None
        token = credentials.find(remote.hostname, self._env_file, self._environ)
        if token is None:
            raise ParheliaError("E400", f"pushing to {remote.raw} and opening its pull "
                                "request need a GitHub token and the daemon has none: "
                                + credentials.ways(remote.hostname, self._env_file))
        return token

    def _push_and_open(self, git_dir: str, remote: RemoteUrl, token: credentials.Token | None,
                       task: TaskRow, changes: results.TaskChanges, commits: results.Commits,
                       stat: str, request: Request, cfg: Config, agent_session: str) -> Outcome:
        value = token.value if token is not None else None
        branch = request.branch or task.pr_branch or BRANCH_PREFIX + task.id
        problem = gitsafe.ref_problem(branch)
        if problem:
            raise ParheliaError("E101", f"branch: {branch!r} is not a branch name: it {problem}")
        same = task.pr_remote == remote.raw and task.pr_branch == branch
        zero = changes.base.git if changes.base is not None else None
        uploaded = str((zero or {}).get("branch") or "")
        wanted = [f"refs/heads/{b}" for b in dict.fromkeys(
            x for x in (branch, request.base, uploaded) if x)]
        try:
            listing = gitremote.ls_remote(remote, value, ["HEAD", *wanted],
                                          environ=self._environ)
        except gitremote.RemoteError as exc:
            raise _remote_error(remote, exc.failure, token, self._env_file, "read") from None
        current = listing.refs.get(f"refs/heads/{branch}")
        expect = task.pr_commit if same and task.pr_commit else None
        pushed = False
        if current != commits.final:
            if current is not None and current != expect:
                mine = f"its last push there was {expect[:12]}" if expect else \
                    "Parhelia never pushed this task there"
                raise ParheliaError(
                    "E607", f"the branch {branch} of {remote.raw} is at {current[:12]}, which "
                    f"Parhelia did not push ({mine}): pushing would drop those commits. Push "
                    "to another branch with --branch NAME, or delete that branch first.",
                    branch=branch)
            try:
                done = gitremote.push_branch(git_dir, remote, value, commits.final, branch,
                                             expect, environ=self._environ)
            except gitremote.RemoteError as exc:
                raise _remote_error(remote, exc.failure, token, self._env_file,
                                    "push") from None
            if not done.ok:
                raise ParheliaError("E607", f"{remote.raw} refused the push of {branch}: "
                                    f"{done.reason}", branch=branch)
            pushed = True
        base = request.base or (task.pr_base if same else "") or \
            (uploaded if uploaded != branch and f"refs/heads/{uploaded}" in listing.refs
             else "") or (listing.head_branch or "")
        if not base:
            raise ParheliaError("E101", f"{remote.raw} has no default branch to open the pull "
                                "request into; give one with --base BRANCH")
        if base == branch:
            raise ParheliaError("E101", f"base: the pull request's branch {branch!r} cannot "
                                "go into itself; give another --base or --branch")
        found = forge.forge_for(remote, cfg.github, token, str(self._env_file)) \
            if token is not None else None
        if found is None:
            return Outcome(remote.raw, branch, commits.final, base, pushed, 0,
                           forge.compare_url(remote, base, branch) or "", False, "",
                           commits.skipped)
        title = request.title.strip() or _title(task)
        body = pull_request_body(task, changes.final.id, stat, agent_session)
        opened = found.publish(forge.PullRequestDraft(
            head=branch, base=base, title=title[:TITLE_CHARS], body=body,
            draft=cfg.github.draft if request.draft is None else request.draft,
            change_draft=request.draft is not None),
            task.pr_number if same else None)
        return Outcome(remote.raw, branch, commits.final, base, pushed, opened.number,
                       opened.url, opened.created, found.name, commits.skipped,
                       opened.draft)


def _title(task: TaskRow) -> str:
    lines = [line.strip() for line in task.prompt.strip().splitlines() if line.strip()]
    return lines[0] if lines else f"Parhelia task {task.id}"


def _parse(url: str, what: str) -> RemoteUrl:
    try:
        return gitremote.parse(url)
    except ValueError as exc:
        raise ParheliaError("E101", f"{what} {url!r} cannot be pushed to: {exc}") from None


def _user_remote(repo: Path, branch: str | None) -> RemoteUrl:
    """The remote a task uploaded from ``repo`` pushes to: the one its upload branch
    tracks, else ``origin`` (read as values from the repository's config; nothing of
    it runs)."""
    files = gitsafe.locate(repo)
    config = files.common_dir / "config" if files is not None else repo / ".git" / "config"
    name = (gitsafe.read_config(config, f"branch.{branch}.remote") if branch else None) \
        or "origin"
    if name == "." or gitsafe.ref_problem(name):
        name = "origin"
    url = gitsafe.read_config(config, f"remote.{name}.pushurl") or \
        gitsafe.read_config(config, f"remote.{name}.url")
    if not url:
        raise ParheliaError("E101", f"{repo} has no remote {name!r} to push the task's "
                            f"branch to: add it (`git -C {repo} remote add {name} URL`), or "
                            "bring the branch back with `parhelia task pull` instead")
    return _parse(url, f"the remote {name!r} of {repo},")


def _remote_error(remote: RemoteUrl, failed: gitremote.Failure,
                  token: credentials.Token | None, env_file: Path, doing: str
                  ) -> ParheliaError:
    if failed.kind == "network":
        return ParheliaError("E502", f"{remote.raw} could not be reached to {doing}: "
                             f"{failed.message}")
    if failed.kind == "auth" and token is not None:
        return ParheliaError("E401", f"{remote.host} refused {token.describe(env_file)} to "
                             f"{doing} {remote.raw}: {failed.message}. The token must be able "
                             "to write to the repository (a classic token: `repo`; a "
                             "fine-grained one: Contents read and write on it)")
    if failed.kind == "auth":
        return ParheliaError("E400", f"{remote.raw} wants a credential to {doing} it, and "
                             f"Parhelia sends a token only to GitHub hosts (github.hosts): "
                             f"{failed.message}. Use an ssh:// or git@host:path remote (your "
                             "ssh agent is used), or add the host to github.hosts")
    return ParheliaError("E502", f"git could not {doing} {remote.raw}: {failed.message}")


def _record(tx: Tx, task_id: str, done: Outcome) -> TaskRow:
    row = tx.tasks.update(task_id, pr_remote=done.remote, pr_branch=done.branch,
                          pr_commit=done.commit, pr_base=done.base, pr_number=done.number,
                          pr_url=done.url)
    data: dict[str, Any] = {"remote": done.remote, "branch": done.branch,
                            "commit": done.commit, "base": done.base, "pushed": done.pushed,
                            "url": done.url, "number": done.number, "forge": done.forge,
                            "created": done.created}
    if done.number:
        verb = "opened" if done.created else "updated"
        message = f"pull request #{done.number} {verb}: {done.url}"
        tx.events.append(OPENED_EVENT, message, task_id=task_id, session_id=row.session_id,
                         data=data)
    else:
        message = f"pushed {done.branch} to {done.remote}" + (
            f"; compare: {done.url}" if done.url else "")
        tx.events.append(PUSHED_EVENT, message, task_id=task_id, session_id=row.session_id,
                         data=data)
    return row


def _not_opened(tx: Tx, task_id: str, exc: ParheliaError) -> None:
    if tx.tasks.get(task_id) is None:
        return
    tx.events.append(NOT_OPENED_EVENT, f"no pull request opened ({exc.code}): "
                     f"{exc.message}"[:1000], task_id=task_id, level="warning",
                     data={"code": exc.code, "message": exc.message[:1000]})
