"""The dispatcher: pending tasks -> worker containers, FIFO per backend, within the
concurrency cap (docs/adr/0036-per-backend-dispatch.md).

Each backend has its own queue and its own pass: claims of one backend happen one pass
at a time (a lock per backend), and a backend that hangs or cannot be reached while a
claim asks it something (the agent's credentials on Modal) never delays another
backend's dispatch. The concurrency cap is checked in the claim's own unit, so passes of
several backends never over-commit it. Launches happen outside the passes (a Modal GPU
launch can wait ~20 minutes for capacity). For each task it takes, in order:
1. under the lock, one writer unit claims it — creates the session on first dispatch,
   inserts the container (``created``) and moves the task to ``running`` with its event;
2. outside the lock, the worker's spec is written to the daemon's volume and pushed with
   what the worker restores to the backend's volume (``volsync``), and the backend
   launches the worker;
3. a second unit records the backend id (``starting``), or, when the launch failed,
   fails the container and the task with the error's code — except when the backend
   found no capacity (or could not be reached): then the task goes back to the queue
   with the reason and a backoff (:mod:`parheliad.core.waiting`); not a failure, not a
   restart.
A daemon killed between 1 and 3 leaves a ``created`` container without a backend id,
which the listener treats as a worker that died before it started.

What a claim runs (checkpoint zero, the resume point, the launch, the worker's spec) is
the resume plan, :mod:`parheliad.core.resumeplan`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from parhelia.checkpoint import save_manifest
from parhelia.clock import human_seconds
from parhelia.environment import agent_hosts, model_api_host
from parhelia.errors import Code, ParheliaError
from parhelia.spec import WorkerSpec, dump_spec
from parhelia.volume import LocalVolume, spec_key
from parheliad.backends.base import (
    Backend,
    BackendUnreachable,
    ContainerSpec,
    EnvironmentLaunch,
    ImageBackend,
    LaunchWait,
    NoCapacity,
    SshTunnel,
)
from parheliad.backends.registry import Backends
from parheliad.config import Config
from parheliad.core import resumeplan, volsync, waiting
from parheliad.core.configsync import ConfigBundle
from parheliad.core.states import CONTAINER_LIVE, ContainerState, SessionStatus, TaskStatus
from parheliad.core.tasks import fail_task, index_checkpoint, transition
from parheliad.environments import service as environments
from parheliad.environments.builds import ImageBuilds, ImageNotReady
from parheliad.environments.model import Environment
from parheliad.store.clock import now_us
from parheliad.store.rows import ContainerRow, SessionRow, TaskRow
from parheliad.store.store import Store
from parheliad.store.tx import Tx

log = structlog.get_logger(__name__)

BudgetGate = Callable[[Tx, TaskRow], None]
"""Called inside the claim unit: raises ParheliaError(E300) when the dispatch would cross
the budget, else records the task's reservation. One unit does check and reserve, so the
single writer makes concurrent dispatches unable to over-commit (parheliad.core.budget)."""


class SessionBusy(ParheliaError):
    """The task's session still has a live container (a stopped worker still
    checkpointing): the task waits for it to end; the settle kicks the dispatcher."""

    def __init__(self, task_id: str, container_id: str) -> None:
        super().__init__("E500", f"task {task_id} waits for container {container_id} of its "
                                 "session to end", container_id=container_id)


class Preparing(ParheliaError):
    """The task's source is being made ready (a ``--repo`` clone becoming checkpoint
    zero, :mod:`parheliad.core.repo_source`): it waits, saying so."""

    def __init__(self, wait: waiting.Wait) -> None:
        super().__init__("E500", wait.reason)
        self.wait = wait


PrepareSource = Callable[[TaskRow], waiting.Wait]
"""Starts making a ``--repo`` task's checkpoint zero (once) and says why it waits."""


@dataclass(frozen=True)
class Refusal:
    task_id: str
    code: str
    message: str


@dataclass
class DispatchReport:
    dispatched: list[str] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    detail: str = ""


LAUNCH_WAIT_REFRESH_S = 5.0
"""How often a long launch's wait (``waiting for an A100 on Modal: 4m12s``) is shown anew."""
QUEUE_SCAN_LIMIT = 1000
"""Pending tasks looked at per pass (FIFO): enough to step past tasks that wait."""
BACKOFF_MAX_SECONDS = 300.0


class Requeued(ParheliaError):
    """The launch found no capacity (or the backend could not be reached): the task is
    back in the queue with a backoff."""


class NoSlot(ParheliaError):
    """Every worker slot is taken (counted in the claim's unit)."""

    def __init__(self, cap: int) -> None:
        super().__init__("E500", f"waiting for a free worker slot (all {cap} busy; "
                         "orchestrator.max_concurrent_workers)")


@dataclass(frozen=True)
class Claimed:
    """A task claimed under the lock, to launch outside it."""

    task: TaskRow
    session: SessionRow
    container: ContainerRow
    backend: Backend
    spec: ContainerSpec


class Dispatcher:
    def __init__(self, store: Store, backends: Backends, config: Callable[[], Config],
                 volume: LocalVolume, owner_tag: str, *, budget_gate: BudgetGate | None = None,
                 config_bundle: ConfigBundle | None = None,
                 on_unwanted: Callable[[ContainerRow], None] = lambda c: None,
                 ssh_key: Callable[[str], str] | None = None,
                 images: ImageBuilds | None = None,
                 prepare_source: PrepareSource | None = None) -> None:
        self._store = store
        self._registry = backends
        self._backends = backends.built
        self._config = config
        self._volume = volume  # the daemon's local volume
        self._owner = owner_tag
        self._budget_gate = budget_gate
        self._config_bundle = config_bundle
        """The config bundle id and ``sync.pass_env`` values for a backend's workers
        (syncs first when the user's Claude config changed); None: no user config."""
        self._attempts: dict[str, int] = {}  # transient refusals in a row, per task
        self.launching: set[str] = set()
        """Containers claimed whose launch is in flight (no backend id recorded yet)."""
        self._ssh_key = ssh_key
        """A session's public key (made on first use) for `session attach --ssh`, given
        to workers of backends that offer it; None: no SSH keys."""
        self._prepare_source = prepare_source
        """Clones a ``--repo`` task before its first dispatch; None: such a task fails."""
        self._on_unwanted = on_unwanted
        self._images = images
        """Environment images for backends that build them (None: built at launch)."""
        """Stops a worker whose task was cancelled, paused or rolled back while it was
        being launched."""
        self._locks: dict[str, asyncio.Lock] = {}
        """One per backend: its claims happen one pass at a time."""
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._passes: dict[str, asyncio.Task[DispatchReport]] = {}
        """The loop's pass in flight per backend (one at most; a kick meanwhile asks
        for another once it ends)."""
        self._again: set[str] = set()
        self._launches: set[asyncio.Task[None]] = set()
        self._launch_of: dict[str, asyncio.Task[None]] = {}
        """The launch in flight of each container claimed (cancellable: a GPU launch may
        wait long for capacity)."""
        self._cancelled: set[str] = set()
        """Containers whose launch was cancelled on purpose (their task moved on)."""
        self._wait_shown: set[str] = set()
        """Launches in flight whose wait is shown on their task and container."""

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="dispatcher")
        self.kick()

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._passes.values(), *self._launches)
                 if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        self._passes.clear()
        self._launches.clear()

    def kick(self) -> None:
        """Ask for a pass soon (task created, container ended, budget raised...)."""
        self._kick.set()

    async def _loop(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            try:
                for name in await self._queued_backends():
                    self._schedule(name)
            except Exception:
                log.exception("dispatch pass failed")

    def _schedule(self, backend: str) -> None:
        """A pass of ``backend``'s queue, unless one is in flight (then another after)."""
        running = self._passes.get(backend)
        if running is not None and not running.done():
            self._again.add(backend)
            return

        async def one() -> DispatchReport:
            async with self._lock(backend):
                return await self._pass(backend, DispatchReport(), [], spawn=True)

        task = asyncio.create_task(one(), name=f"dispatch-{backend}")
        self._passes[backend] = task

        def done(t: asyncio.Task[DispatchReport]) -> None:
            if not t.cancelled() and t.exception() is not None:
                log.error("dispatch pass failed", backend=backend, exc_info=t.exception())
            if backend in self._again:
                self._again.discard(backend)
                self._schedule(backend)

        task.add_done_callback(done)

    def _lock(self, backend: str) -> asyncio.Lock:
        return self._locks.setdefault(backend, asyncio.Lock())

    async def _queued_backends(self) -> list[str]:
        """The backends of pending tasks (one query; a backend without any has no pass)."""
        return sorted({t.backend for t in await self._store.tasks.pending(
            limit=QUEUE_SCAN_LIMIT)})

    # -- a pass ---------------------------------------------------------------------

    async def run_pass(self, release: Iterable[str] | None = (), *,
                       wait: bool = True) -> DispatchReport:
        """One pass: claim what can run now (under the lock), then launch it (outside).
        ``release``: held tasks to release first (None: every held task and every backoff
        — what `task dispatch` without ids does). With ``wait`` the launches are awaited
        and the report says which ones were refused; the dispatcher's own loop does not
        wait (a launch may wait long for capacity)."""
        report = DispatchReport()
        if release is None or release:
            report.released = await self._store.write(
                lambda tx: waiting.release(tx, None if release is None else list(release)))
        backends = await self._queued_backends()

        async def one(backend: str) -> tuple[DispatchReport, list[Claimed]]:
            claims: list[Claimed] = []
            async with self._lock(backend):
                return await self._pass(backend, DispatchReport(), claims), claims

        claims = []
        for part, claimed in await asyncio.gather(*(one(b) for b in backends)):
            report.dispatched += part.dispatched
            report.refused += part.refused
            report.detail = report.detail or part.detail
            claims += claimed
        launches = [self._spawn_launch(c) for c in claims]
        if wait and launches:
            outcomes = await asyncio.gather(*launches, return_exceptions=True)
            for claim, outcome in zip(claims, outcomes, strict=True):
                if isinstance(outcome, ParheliaError):
                    report.dispatched.remove(claim.task.id)
                    report.refused.append(Refusal(claim.task.id, outcome.code, outcome.message))
        return report

    def _spawn_launch(self, claim: Claimed) -> asyncio.Task[None]:
        cid = claim.container.id
        t = asyncio.create_task(self._launch(claim), name=f"launch-{cid}")
        self._launches.add(t)
        self._launch_of[cid] = t

        def done(task: asyncio.Task[None]) -> None:
            self._launches.discard(task)
            self._launch_of.pop(cid, None)
            self._cancelled.discard(cid)
            if not task.cancelled() and task.exception() is not None and \
                    not isinstance(task.exception(), ParheliaError):
                log.error("launch crashed", exc_info=task.exception())

        t.add_done_callback(done)
        return t

    async def _pass(self, backend: str, report: DispatchReport, claims: list[Claimed], *,
                    spawn: bool = False) -> DispatchReport:
        """``backend``'s pending tasks in FIFO order within the free slots. A task that
        cannot start now gets its reason (:mod:`parheliad.core.waiting`) and the pass goes
        on: a task that can never fit the budget is stepped over, one that fits once
        running tasks release their reservations keeps its place and the tasks behind it
        wait for it (no starvation); transient refusals back off, any other one fails the
        task. Once the backend could not be asked (unreachable), the tasks behind wait
        with the same reason instead of each waiting for it again. ``spawn``: launch
        each claim as it is made (the loop's passes)."""
        cfg = self._config()
        cap = cfg.orchestrator.max_concurrent_workers
        now = now_us()
        waits: dict[str, waiting.Wait] = {}
        behind: str | None = None  # the head of the queue waits for budget to free up
        full = False  # every worker slot is taken
        down: waiting.Wait | None = None  # the backend could not be asked
        for task in await self._store.tasks.pending(limit=QUEUE_SCAN_LIMIT):
            if task.backend != backend or task.held or (
                    task.dispatch_after is not None and task.dispatch_after > now):
                continue
            if behind is not None:
                waits[task.id] = waiting.Wait(f"queued behind task {behind}, which waits for "
                                              "budget")
                continue
            if full:
                waits[task.id] = waiting.Wait(NoSlot(cap).message)
                continue
            if down is not None:
                waits[task.id] = self._backoff(task.id, waiting.Wait(down.reason,
                                                                     code=down.code))
                continue
            try:
                claim = await self._claim(task, cfg)
            except Preparing as exc:
                waits[task.id] = exc.wait
                continue
            except SessionBusy as exc:
                waits[task.id] = waiting.Wait(exc.message)
                continue
            except NoSlot as exc:
                waits[task.id] = waiting.Wait(exc.message)
                report.detail = f"all {cap} worker slots busy"
                full = True
                continue
            except ImageNotReady as exc:
                waits[task.id] = waiting.Wait(exc.message, progress=True)
                continue
            except ParheliaError as exc:
                wait = await self._refused(task, exc, report)
                if wait is not None:
                    waits[task.id] = wait
                    if exc.code == "E300" and not exc.details.get("never_fits"):
                        behind = task.id
                    if exc.code == "E502":
                        down = waiting.Wait(exc.message, code=exc.code)
                continue
            except Exception:
                log.exception("dispatch crashed", task_id=task.id)
                waits[task.id] = self._backoff(task.id, waiting.Wait(
                    "the daemon failed to start this task (an internal error; see `parhelia "
                    "daemon logs`); it is retried", code="E900"))
                continue
            report.dispatched.append(task.id)
            self._attempts.pop(task.id, None)
            if spawn:
                self._spawn_launch(claim)
            else:
                claims.append(claim)
        if waits:
            changed = await self._store.write(lambda tx: [
                row for task_id, wait in waits.items()
                if (row := waiting.set_waiting(tx, task_id, wait)) is not None])
            for row in changed:
                if row.status_code:
                    log.warning("task waits", task_id=row.id, code=row.status_code,
                                reason=row.status_reason)
        return report

    async def _refused(self, task: TaskRow, exc: ParheliaError,
                       report: DispatchReport) -> waiting.Wait | None:
        """A refused dispatch: the wait to record, or None when the task left the queue
        (it failed, or moved on meanwhile)."""
        report.refused.append(Refusal(task.id, exc.code, exc.message))
        if exc.code == "E300":
            return waiting.Wait(exc.message, code="E300",
                                needs_user=bool(exc.details.get("never_fits")))
        if exc.code in waiting.TRANSIENT_CODES:
            return self._backoff(task.id, waiting.Wait(exc.message, code=exc.code))
        if exc.code != "E603":  # E603: no longer pending; nothing to record
            await self._store.write(lambda tx: _fail_if_waiting(
                tx, task.id, exc.code, f"the dispatch was refused: {exc.message}"))
            log.warning("dispatch refused; the task failed", task_id=task.id, code=exc.code,
                        reason=exc.message)
        return None

    def _backoff(self, task_id: str, wait: waiting.Wait) -> waiting.Wait:
        attempts = self._attempts[task_id] = self._attempts.get(task_id, 0) + 1
        base = max(1.0, float(self._config().orchestrator.dispatch_interval_seconds))
        delay = min(BACKOFF_MAX_SECONDS, base * 2 ** min(attempts - 1, 16))
        return dataclasses.replace(wait, reason=f"{wait.reason} (attempt {attempts}; next "
                                   f"in {delay:.0f}s)", retry_after_seconds=delay)

    async def dispatch_task(self, task_id: str) -> bool | None:
        """Dispatch one pending or recovering task now (recovery's path).

        True when it started; False when it is no longer waiting (cancelled...);
        None when it must wait (no free slot, budget, capacity).
        """
        task = await self._store.tasks.find(task_id)
        if task is None:
            return False
        async with self._lock(task.backend):
            cfg = self._config()
            task = await self._store.tasks.find(task_id)
            if task is None or task.status not in (TaskStatus.PENDING, TaskStatus.RECOVERING):
                return False
            try:
                claim = await self._claim(task, cfg)
            except Preparing as exc:
                wait = exc.wait
                await self._store.write(lambda tx: waiting.set_waiting(tx, task_id, wait))
                return None
            except (SessionBusy, NoSlot, ImageNotReady):
                return None
            except ParheliaError as exc:
                if exc.code == "E300" or exc.code in waiting.TRANSIENT_CODES:
                    if exc.code in waiting.TRANSIENT_CODES:
                        wait = self._backoff(task.id, waiting.Wait(exc.message, code=exc.code))
                        await self._store.write(
                            lambda tx: waiting.set_waiting(tx, task_id, wait))
                    return None
                if exc.code != "E603":  # a refusal that will not pass: say so, do not hang
                    code, message = exc.code, f"the dispatch was refused: {exc.message}"
                    await self._store.write(lambda tx: _fail_if_waiting(
                        tx, task_id, code, message))
                    log.warning("dispatch refused; the task failed", task_id=task_id,
                                code=code, reason=message)
                return False
        try:
            await self._spawn_launch(claim)
        except Requeued:
            return None
        except ParheliaError:
            return False
        return True

    async def _claim(self, task: TaskRow, cfg: Config) -> Claimed:
        why = self._registry.unavailable_reason(task.backend)
        backend = self._backends.get(task.backend)
        if why is not None or backend is None:
            why = why or f"backend {task.backend!r} is not available"
            await self._fail(task, "E500", why)
            raise ParheliaError("E500", why)
        try:
            creds = await backend.credentials()
        except BackendUnreachable as exc:
            raise ParheliaError("E502", f"{backend.name} could not be reached to check the "
                                f"agent's credentials: {exc.message}") from None
        if not creds.ok and task.status == TaskStatus.RECOVERING:
            # A recovery must not lose the task for want of a credential: it waits, says
            # why, and recovery tries again (``parhelia auth set`` ends the wait).
            wait = waiting.Wait(f"recovery waits for a credential on {backend.name}: "
                                f"{creds.detail}", code="E400", needs_user=True)
            await self._store.write(lambda tx: waiting.set_waiting(
                tx, task.id, wait, statuses=(TaskStatus.RECOVERING,)))
            raise SessionBusy("E400", wait.reason)
        if not creds.ok:
            await self._fail(task, "E400", f"no credentials for the agent on {backend.name}: "
                             f"{creds.detail}; then `parhelia task retry {task.id}`.")
            raise ParheliaError("E400", "no credentials")

        if task.source_repo_url and not task.source_workspace_id and task.session_id is None:
            if self._prepare_source is None:
                await self._fail(task, "E500", "this daemon cannot clone repositories")
                raise ParheliaError("E500", "no repository source")
            raise Preparing(self._prepare_source(task))

        environment = environments.stored(task)
        setup_secrets: dict[str, str] = {}
        if environment is not None and environment.setup_secrets and \
                not isinstance(backend, ImageBackend):
            # This machine's worker: each secret is a variable of the daemon's environment
            # (or its env file), given to the worker's process and by it to setup only.
            missing = [environments.secret_variable(n) for n in environment.setup_secrets
                       if not creds.env.get(environments.secret_variable(n))]
            if missing:
                await self._fail(task, "E606", f"the environment's setup secret(s) "
                                 f"{', '.join(missing)} are not set for the daemon: export "
                                 "them where it runs (or add NAME=value lines to its env "
                                 f"file), then `parhelia task retry {task.id}`")
                raise ParheliaError("E606", "setup secrets missing")
            setup_secrets = {environments.secret_variable(n):
                             creds.env[environments.secret_variable(n)]
                             for n in environment.setup_secrets}

        launch_env = await self._environment_launch(task, backend, environment, creds.env, cfg)

        bundle: resumeplan.Bundle = (None, {})
        if self._config_bundle is not None:
            try:
                bundle = await self._config_bundle(creds.env)
            except Exception as exc:
                log.exception("config sync failed", task_id=task.id)
                await self._fail(task, "E602", "the Claude configuration could not be synced "
                                 f"({type(exc).__name__}); see `parhelia config sync "
                                 "--dry-run` and the daemon log")
                raise ParheliaError("E602", "config sync failed") from None

        zero, zero_is_copy = None, False
        if task.session_id is None and task.source_workspace_id:
            zero, zero_is_copy = await resumeplan.zero_for_new_session(self._store,
                                                                       self._volume, task)
        point = await resumeplan.resume_point(self._store, self._volume, task, zero)

        def claim(tx: Tx) -> tuple[TaskRow, SessionRow, ContainerRow, resumeplan.Launch]:
            current = tx.tasks.require(task.id)
            if current.status not in (TaskStatus.PENDING, TaskStatus.RECOVERING):
                raise ParheliaError("E603", f"task {task.id} is {current.status}, not pending")
            session = tx.sessions.get(current.session_id) if current.session_id else None
            if session is not None:
                # One worker per session: a resume or rollback right after a stop must not
                # start a second worker on the same workspace and transcript while the
                # stopped one is still checkpointing.
                busy = tx.containers.live_in_session(session.id)
                if busy is not None:
                    raise SessionBusy(current.id, busy)
            cap = cfg.orchestrator.max_concurrent_workers
            if tx.containers.count_live() >= cap:
                raise NoSlot(cap)
            if self._budget_gate is not None:
                self._budget_gate(tx, current)
            mode = SessionStatus.DETACHED if current.interactive else SessionStatus.HEADLESS
            if session is None:
                session = tx.sessions.insert(
                    current.id, session_id=zero.session_id if zero is not None else None,
                    agent_session_id=resumeplan.sent_conversation(zero), status=mode)
                tx.events.append("session_created", f"session {session.id}",
                                 task_id=current.id, session_id=session.id,
                                 data={"agent_session_id": session.agent_session_id})
                if zero is not None:
                    index_checkpoint(tx, session.id, "", zero.summary())
                    session = tx.sessions.get(session.id) or session
            launch = resumeplan.launch_for(current, session, point)
            incarnation = 1 + tx.containers.count_in_session(session.id)
            container = tx.containers.insert(
                task_id=current.id, backend=current.backend, session_id=session.id,
                incarnation=incarnation, cpu=current.cpu, memory_mb=current.memory_mb,
                gpu=current.gpu)
            tx.events.append("container_created", f"container {container.id} on {current.backend}",
                             task_id=current.id, session_id=session.id,
                             container_id=container.id,
                             data={"incarnation": incarnation, "backend": current.backend,
                                   "cpu": current.cpu, "memory_mb": current.memory_mb,
                                   "gpu": current.gpu})
            updated = transition(tx, current.id, TaskStatus.RUNNING, event_type="task_dispatched",
                                 message=f"task {current.id} -> {container.id}",
                                 data={"resume": launch.resume,
                                       "checkpoint_id": launch.restore_checkpoint_id},
                                 session_id=session.id, container_id=container.id,
                                 # one incarnation's result at a time: a resume that fails
                                 # must not show the previous run's success beside its error
                                 result_subtype="", result_is_error=False, result_text="",
                                 result_exit_code=None, result_error_code="",
                                 result_error_message="")
            tx.sessions.update(session.id, status=mode, current_container_id=container.id,
                               attached_clients=0, tmux_socket="")
            return updated, session, container, launch

        task, session, container, launch = await self._store.write(claim)
        if zero_is_copy and zero is not None:
            # Written once the claim holds, not on every refused attempt (a task waiting
            # for budget would leave one stray manifest per dispatch pass).
            try:
                await asyncio.to_thread(save_manifest, self._volume, zero)
            except OSError as exc:
                await self._launch_failed(task, container, "E600", "checkpoint zero could not "
                                          f"be written for the new session ({exc.strerror})")
                raise ParheliaError("E600", "checkpoint zero not written") from None
        spec = resumeplan.container_spec(backend, task, session, container, launch, cfg,
                                         self._owner, (bundle[0], {**bundle[1], **setup_secrets}))
        if launch_env is not None:
            # Only a setup on the task's own starting tree (its first incarnation, nothing
            # resumed) is kept for warm starts: a later one ran on files an agent changed,
            # and its snapshot would prepare other tasks' sandboxes.
            fresh = container.incarnation == 1 and not launch.resume
            spec = dataclasses.replace(spec, environment=dataclasses.replace(
                launch_env, on_snapshot=self._snapshot_recorder(
                    task, backend.name, launch_env, container.id, cfg) if fresh else None,
                agent_hosts=_agent_hosts(environment, spec.secret_env, creds.env)))
        # Until its backend id is recorded, nothing else can stop this container (stops
        # need the id) and the listener must not take it for one that never launched.
        self.launching.add(container.id)
        return Claimed(task, session, container, backend, spec)

    def cancel_launch(self, container_id: str) -> bool:
        """Abandon the launch in flight of ``container_id`` (its task was cancelled or
        paused while it waited, e.g. for a GPU): the backend's create is cancelled, and the
        backend ends what it had started (modal 1.6.4 terminates a sandbox it never
        returned). False when no launch of it is in flight."""
        launch = self._launch_of.get(container_id)
        if launch is None or launch.done():
            return False
        self._cancelled.add(container_id)
        launch.cancel()
        return True

    async def _show_wait(self, backend: Backend, task: TaskRow, container: ContainerRow
                         ) -> None:
        """While the launch waits (``backend.launch_wait``), say what for and how long, on
        the task and its container."""
        if not isinstance(backend, LaunchWait):
            return
        wait_of = backend.launch_wait
        started = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(LAUNCH_WAIT_REFRESH_S)
            what = wait_of(container.id)
            if what is None:
                continue
            text = f"{what}: {human_seconds(asyncio.get_running_loop().time() - started)}"

            def unit(tx: Tx, text: str = text) -> None:
                row = tx.containers.get(container.id)
                if row is None or row.state != ContainerState.CREATED:
                    return
                tx.containers.update(container.id, reason=text[:500])
                current = tx.tasks.get(task.id)
                if current is not None and current.container_id == container.id and \
                        current.status == TaskStatus.RUNNING:
                    tx.tasks.update(task.id, status_reason=text[:500])

            await self._store.write(unit)
            self._wait_shown.add(container.id)

    async def _abandoned(self, task: TaskRow, container: ContainerRow, backend: Backend
                         ) -> None:
        what = backend.launch_wait(container.id) if isinstance(backend, LaunchWait) else None
        reason = "the launch was cancelled" + (f" while {what}" if what else "")

        def unit(tx: Tx) -> None:
            row = tx.containers.get(container.id)
            if row is None or row.state not in CONTAINER_LIVE:
                return
            tx.containers.update(container.id, state=ContainerState.TERMINATED.value,
                                 reason=reason, stopped_at=now_us())
            tx.events.append("container_terminated", reason, task_id=task.id,
                             session_id=container.session_id, container_id=container.id,
                             data={"backend_id": ""})
            if container.session_id:
                tx.sessions.ended(container.session_id, completed=False)

        await self._store.write(unit)

    async def _launch(self, claim: Claimed) -> None:
        task, session, container, backend, spec = (claim.task, claim.session, claim.container,
                                                   claim.backend, claim.spec)
        waiting_shown = asyncio.create_task(self._show_wait(backend, task, container))
        try:
            try:
                worker = WorkerSpec.from_dict(spec.worker_spec)
                if worker.agent.interactive and isinstance(backend, SshTunnel) and \
                        self._ssh_key is not None:
                    worker, spec = await self._with_ssh_key(worker, spec, session.id)
                await asyncio.to_thread(dump_spec, worker,
                                        self._volume.path_for(spec_key(container.id)))
                await volsync.push_for_launch(backend, self._volume, container.id, session.id,
                                              worker.restore_checkpoint_id,
                                              worker.config_bundle_id)
                backend_id = await backend.launch(spec)
            except asyncio.CancelledError:
                if container.id not in self._cancelled:
                    raise
                await self._abandoned(task, container, backend)
                log.info("launch abandoned", task_id=task.id, container_id=container.id)
                return
            except (NoCapacity, BackendUnreachable) as exc:
                await self._requeue(task, container, backend, exc)
                raise Requeued(exc.code, exc.message) from None
            except ParheliaError as exc:
                await self._launch_failed(task, container, exc.code, exc.message)
                raise
            except Exception as exc:  # a backend bug must not leave the task running
                log.exception("launch crashed", task_id=task.id)
                await self._launch_failed(task, container, "E602",
                                          f"launch failed: {type(exc).__name__}")
                raise ParheliaError("E602", "launch failed") from None

            def started(tx: Tx) -> tuple[bool, ContainerRow | None]:
                """Record the backend id; whether the task still wants this container (it
                may have been cancelled, paused or rolled back while the launch was in
                flight, or deleted with its rows)."""
                row = tx.containers.get(container.id)
                if row is None:
                    return False, None
                fields: dict[str, Any] = {"backend_id": backend_id, "started_at": now_us()}
                decided = backend.isolation(container.id)
                if decided is not None:  # Modal: its sandbox, the outbound policy or a secret
                    fields["isolation"], fields["credential"] = decided
                if row.state == ContainerState.CREATED:
                    fields["state"] = ContainerState.STARTING.value
                waited = container.id in self._wait_shown
                if waited:
                    fields["reason"] = ""  # the wait shown while it launched is over
                row = tx.containers.update(container.id, **fields)
                tx.events.append("container_started", f"{backend.name} {backend_id}",
                                 task_id=task.id, session_id=session.id,
                                 container_id=container.id, data={"backend_id": backend_id})
                current = tx.tasks.get(task.id)
                wanted = current is not None and current.container_id == container.id and \
                    current.status == TaskStatus.RUNNING and row.state in CONTAINER_LIVE
                if wanted and waited:
                    tx.tasks.update(task.id, status_reason="")
                return wanted, row

            wanted, row = await self._store.write(started)
        finally:
            waiting_shown.cancel()
            self._wait_shown.discard(container.id)
            self.launching.discard(container.id)
        if not wanted:
            log.warning("task moved on during its launch; stopping the worker",
                        task_id=task.id, container_id=container.id)
            if row is not None:
                self._on_unwanted(row)
            else:
                await backend.terminate(backend_id, grace_seconds=0.0)
            return
        log.info("dispatched", task_id=task.id, container_id=container.id, backend_id=backend_id)

    async def _requeue(self, task: TaskRow, container: ContainerRow, backend: Backend,
                       exc: ParheliaError) -> None:
        """No capacity (or the backend unreachable) at launch: the container never ran;
        the task goes back to the queue with the reason and a backoff, its restarts
        untouched."""
        what = "capacity" if isinstance(exc, NoCapacity) else "its backend to be reachable"
        wait = self._backoff(task.id, waiting.Wait(
            f"waiting for {what} on {backend.name}: {exc.message}", code=exc.code))
        if isinstance(exc, NoCapacity) and exc.retry_after_seconds:
            wait = dataclasses.replace(wait, retry_after_seconds=max(
                exc.retry_after_seconds, wait.retry_after_seconds or 0.0))

        def unit(tx: Tx) -> None:
            tx.containers.update(container.id, state="failed", reason=wait.reason[:500],
                                 stopped_at=now_us())
            tx.events.append("container_failed", wait.reason, level="warning",
                             task_id=task.id, session_id=container.session_id,
                             container_id=container.id,
                             data={"code": exc.code, "requeued": True})
            if container.session_id:
                tx.sessions.update(container.session_id, current_container_id=None)
            current = tx.tasks.get(task.id)
            if current is not None and current.container_id == container.id and \
                    current.status in (TaskStatus.RUNNING, TaskStatus.RECOVERING):
                transition(tx, task.id, TaskStatus.PENDING, event_type="task_dispatch_refused",
                           message=wait.reason, reason=wait.reason[:500], container_id=None,
                           data={"code": exc.code})
                waiting.set_waiting(tx, task.id, wait)

        await self._store.write(unit)
        if wait.retry_after_seconds:
            asyncio.get_running_loop().call_later(wait.retry_after_seconds, self.kick)

    async def _environment_launch(self, task: TaskRow, backend: Backend,
                                  environment: Environment | None,
                                  env: Mapping[str, str], cfg: Config
                                  ) -> EnvironmentLaunch | None:
        """What a backend that builds images needs of the task's environment: its image
        (built now, or the task waits: :class:`ImageNotReady`), a prepared filesystem
        for a warm start, the cache volume."""
        if environment is None or self._images is None or \
                not isinstance(backend, ImageBackend):
            return None
        image_id = await self._images.image_for(
            backend, environment, task_id=task.id, created_at=task.created_at,
            tree=lambda: environments.task_tree(self._volume, task))
        warm = await self._store.environments.snapshot(environment.hash, task.base_commit,
                                                       backend.name)
        cache = environments.cache_volume_name(task) if environment.cache else ""
        if cache:
            await self._store.write(lambda tx: tx.environments.cache_used(
                cache, backend.name, task.workspace_path or task.source_repo_url))
        if warm is not None and warm.expires_at > now_us():
            await self._store.write(lambda tx: tx.environments.snapshot_used(
                environment.hash, task.base_commit, backend.name))
        return EnvironmentLaunch(
            hash=environment.hash, image_hash=environment.image_hash, image_id=image_id,
            setup=bool(environment.setup), setup_secrets=environment.setup_secrets,
            cache_volume=cache,
            warm_image_id=warm.image_id if warm is not None and warm.expires_at > now_us()
            else "", setup_timeout_seconds=environment.setup_timeout_minutes * 60,
            snapshot_ttl_seconds=int(cfg.environment.snapshot_ttl_hours * 3600))

    def _snapshot_recorder(self, task: TaskRow, backend: str, env: EnvironmentLaunch,
                           container_id: str, cfg: Config
                           ) -> Callable[[str], Awaitable[None]]:
        async def record(image_id: str) -> None:
            def unit(tx: Tx) -> None:
                tx.environments.put_snapshot(env.hash, task.base_commit, backend, image_id,
                                             container_id=container_id,
                                             ttl_us=env.snapshot_ttl_seconds * 1_000_000)
                tx.events.append("environment_snapshot", f"prepared filesystem of "
                                 f"{env.hash} kept for warm starts ({image_id})",
                                 task_id=task.id, container_id=container_id,
                                 data={"environment_hash": env.hash, "image_id": image_id,
                                       "base": task.base_commit,
                                       "ttl_seconds": env.snapshot_ttl_seconds})
            await self._store.write(unit)
        return record

    async def _with_ssh_key(self, worker: WorkerSpec, spec: ContainerSpec, session_id: str
                            ) -> tuple[WorkerSpec, ContainerSpec]:
        """The session's public key in the spec (`session attach --ssh`); without
        ssh-keygen the session is attached through the SDK only."""
        assert self._ssh_key is not None
        try:
            public = await asyncio.to_thread(self._ssh_key, session_id)
        except (ParheliaError, OSError, subprocess.SubprocessError) as exc:
            log.warning("no SSH key for the session", session_id=session_id, error=str(exc))
            return worker, spec
        worker = dataclasses.replace(worker, ssh_authorized_key=public)
        return worker, dataclasses.replace(spec, worker_spec=worker.to_dict())

    async def _fail(self, task: TaskRow, code: Code, message: str) -> None:
        """Fail a task before any worker of this attempt ran: nothing of an earlier run's
        result (a resumed task's old success) stays beside the error."""
        await self._store.write(lambda tx: fail_task(tx, task.id, code, message,
                                                     result_subtype="", result_text=""))

    async def _launch_failed(self, task: TaskRow, container: ContainerRow, code: Code,
                             message: str) -> None:
        def unit(tx: Tx) -> None:
            tx.containers.update(container.id, state="failed", reason=message,
                                 stopped_at=now_us())
            tx.events.append("container_failed", message, task_id=task.id,
                             session_id=task.session_id, container_id=container.id,
                             data={"code": code})
            current = tx.tasks.get(task.id)
            if current is not None and current.container_id == container.id and \
                    current.status == TaskStatus.RUNNING:
                fail_task(tx, task.id, code, message)
            # else it moved on during the launch (cancelled, paused, rolled back): a
            # failed launch must not turn that into a failure (nor raise E603).

        await self._store.write(unit)


def _agent_hosts(environment: Environment | None, passed: Mapping[str, str],
                 env: Mapping[str, str]) -> tuple[str, ...] | None:
    """The domains the agent phase may reach (None: any): the model API's host, where the
    agent's ``ANTHROPIC_BASE_URL`` points it, always among them."""
    if environment is None:
        return None
    base_url = passed.get("ANTHROPIC_BASE_URL") or env.get("ANTHROPIC_BASE_URL")
    hosts = agent_hosts(environment.network, environment.allow, model_api_host(base_url))
    return None if hosts is None else tuple(hosts)


def _fail_if_waiting(tx: Tx, task_id: str, code: Code, message: str) -> None:
    current = tx.tasks.get(task_id)
    if current is not None and current.status in (TaskStatus.PENDING, TaskStatus.RECOVERING):
        fail_task(tx, task_id, code, message, result_subtype="", result_text="")
