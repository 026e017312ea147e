"""The dispatcher: pending tasks -> worker containers, FIFO, within the concurrency cap.

Claims happen one pass at a time (a lock); launches do not (a Modal GPU launch can
wait ~20 minutes for capacity). For each task it takes, in order:
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
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog

from parhelia.checkpoint import Manifest, load_manifest, save_manifest
from parhelia.errors import ParheliaError
from parhelia.prompts import continuation_prompt
from parhelia.spec import AgentSpec, CheckpointPolicy, WorkerSpec, dump_spec
from parhelia.volume import LocalVolume, spec_key
from parheliad.backends.base import Backend, BackendUnreachable, ContainerSpec, NoCapacity
from parheliad.backends.registry import Backends
from parheliad.config import Config
from parheliad.core import volsync, waiting
from parheliad.core.configsync import ConfigBundle
from parheliad.core.states import CONTAINER_LIVE, ContainerState, SessionStatus, TaskStatus
from parheliad.core.tasks import fail_task, index_checkpoint, transition
from parheliad.core.workspace import SESSION_UUID, WORKSPACE_TRIGGER, checkpoint_zero
from parheliad.store import ids
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


QUEUE_SCAN_LIMIT = 1000
"""Pending tasks looked at per pass (FIFO): enough to step past tasks that wait."""
BACKOFF_MAX_SECONDS = 300.0


class Requeued(ParheliaError):
    """The launch found no capacity (or the backend could not be reached): the task is
    back in the queue with a backoff."""


@dataclass(frozen=True)
class Claimed:
    """A task claimed under the lock, to launch outside it."""

    task: TaskRow
    session: SessionRow
    container: ContainerRow
    backend: Backend
    spec: ContainerSpec


@dataclass(frozen=True)
class Launch:
    """What one dispatch of a task's session should run."""

    prompt: str
    resume: bool
    restore_checkpoint_id: str | None


@dataclass(frozen=True)
class Conversation:
    """The checkpoint holding the conversation a launch resumes; ``sent``: it is checkpoint
    zero, carrying a local conversation the user sent (``task create --from-session``)."""

    checkpoint_id: str
    sent: bool = False


def _sent_conversation(zero: Manifest | None) -> str | None:
    """The conversation id checkpoint zero carries (``--from-session``), else None (the
    session gets a new one)."""
    if zero is None or not zero.conversation:
        return None
    value = zero.environment.get(SESSION_UUID)
    return value if isinstance(value, str) and f"{value}.jsonl" in zero.conversation else None


class Dispatcher:
    def __init__(self, store: Store, backends: Backends, config: Callable[[], Config],
                 volume: LocalVolume, owner_tag: str, *, budget_gate: BudgetGate | None = None,
                 config_bundle: ConfigBundle | None = None,
                 on_unwanted: Callable[[ContainerRow], None] = lambda c: None,
                 ssh_key: Callable[[str], str] | None = None,
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
        """Stops a worker whose task was cancelled, paused or rolled back while it was
        being launched."""
        self._lock = asyncio.Lock()
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._launches: set[asyncio.Task[None]] = set()

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="dispatcher")
        self.kick()

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._launches) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        self._launches.clear()

    def kick(self) -> None:
        """Ask for a pass soon (task created, container ended, budget raised...)."""
        self._kick.set()

    async def _loop(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            try:
                await self.run_pass(wait=False)
            except Exception:
                log.exception("dispatch pass failed")

    # -- a pass ---------------------------------------------------------------------

    async def run_pass(self, release: Iterable[str] | None = (), *,
                       wait: bool = True) -> DispatchReport:
        """One pass: claim what can run now (under the lock), then launch it (outside).
        ``release``: held tasks to release first (None: every held task and every backoff
        — what `task dispatch` without ids does). With ``wait`` the launches are awaited
        and the report says which ones were refused; the dispatcher's own loop does not
        wait (a launch may wait long for capacity)."""
        claims: list[Claimed] = []
        async with self._lock:
            report = DispatchReport()
            if release is None or release:
                report.released = await self._store.write(
                    lambda tx: waiting.release(tx, None if release is None else list(release)))
            await self._pass(report, claims)
        launches = [self._spawn_launch(c) for c in claims]
        if wait and launches:
            outcomes = await asyncio.gather(*launches, return_exceptions=True)
            for claim, outcome in zip(claims, outcomes, strict=True):
                if isinstance(outcome, ParheliaError):
                    report.dispatched.remove(claim.task.id)
                    report.refused.append(Refusal(claim.task.id, outcome.code, outcome.message))
        return report

    def _spawn_launch(self, claim: Claimed) -> asyncio.Task[None]:
        t = asyncio.create_task(self._launch(claim), name=f"launch-{claim.container.id}")
        self._launches.add(t)

        def done(task: asyncio.Task[None]) -> None:
            self._launches.discard(task)
            if not task.cancelled() and task.exception() is not None and \
                    not isinstance(task.exception(), ParheliaError):
                log.error("launch crashed", exc_info=task.exception())

        t.add_done_callback(done)
        return t

    async def _pass(self, report: DispatchReport, claims: list[Claimed]) -> DispatchReport:
        """Pending tasks in FIFO order within the free slots. A task that cannot start
        now gets its reason (:mod:`parheliad.core.waiting`) and the pass goes on: a task
        that can never fit the budget is stepped over, one that fits once running tasks
        release their reservations keeps its place and the tasks behind it wait for it
        (no starvation); transient refusals back off, any other one fails the task."""
        cfg = self._config()
        cap = cfg.orchestrator.max_concurrent_workers
        live = await self._store.containers.list(states=[s.value for s in CONTAINER_LIVE],
                                                 limit=100000)
        slots = cap - len(live)
        if slots <= 0:
            report.detail = f"all {cap} worker slots busy"
        now = now_us()
        waits: dict[str, waiting.Wait] = {}
        behind: str | None = None  # the head of the queue waits for budget to free up
        for task in await self._store.tasks.pending(limit=QUEUE_SCAN_LIMIT):
            if task.held or (task.dispatch_after is not None and task.dispatch_after > now):
                continue
            if behind is not None:
                waits[task.id] = waiting.Wait(f"queued behind task {behind}, which waits for "
                                              "budget")
                continue
            if slots <= 0:
                waits[task.id] = waiting.Wait(f"waiting for a free worker slot (all {cap} "
                                              "busy; orchestrator.max_concurrent_workers)")
                continue
            try:
                claims.append(await self._claim(task, cfg))
            except Preparing as exc:
                waits[task.id] = exc.wait
                continue
            except SessionBusy as exc:
                waits[task.id] = waiting.Wait(exc.message)
                continue
            except ParheliaError as exc:
                wait = await self._refused(task, exc, report)
                if wait is not None:
                    waits[task.id] = wait
                    if exc.code == "E300" and not exc.details.get("never_fits"):
                        behind = task.id
                continue
            except Exception:
                log.exception("dispatch crashed", task_id=task.id)
                waits[task.id] = self._backoff(task.id, waiting.Wait(
                    "the daemon failed to start this task (an internal error; see `parhelia "
                    "daemon logs`); it is retried", code="E900"))
                continue
            report.dispatched.append(task.id)
            self._attempts.pop(task.id, None)
            slots -= 1
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
        async with self._lock:
            cfg = self._config()
            task = await self._store.tasks.find(task_id)
            if task is None or task.status not in (TaskStatus.PENDING, TaskStatus.RECOVERING):
                return False
            live = await self._store.containers.list(states=[s.value for s in CONTAINER_LIVE],
                                                     limit=100000)
            if len(live) >= cfg.orchestrator.max_concurrent_workers:
                return None
            try:
                claim = await self._claim(task, cfg)
            except Preparing as exc:
                wait = exc.wait
                await self._store.write(lambda tx: waiting.set_waiting(tx, task_id, wait))
                return None
            except SessionBusy:
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

        bundle: tuple[str | None, dict[str, str]] = (None, {})
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
            zero, zero_is_copy = await self._zero_for_new_session(task)
        conversation = await self._has_conversation(task)
        if zero is not None and zero.conversation:  # a local conversation sent with it
            conversation = Conversation(zero.id, sent=True)

        def claim(tx: Tx) -> tuple[TaskRow, SessionRow, ContainerRow, Launch]:
            current = tx.tasks.require(task.id)
            if current.status not in (TaskStatus.PENDING, TaskStatus.RECOVERING):
                raise ParheliaError("E603", f"task {task.id} is {current.status}, not pending")
            session = tx.sessions.get(current.session_id) if current.session_id else None
            if session is not None:
                # One worker per session: a resume or rollback right after a stop must not
                # start a second worker on the same workspace and transcript while the
                # stopped one is still checkpointing.
                busy = tx.conn.execute(
                    "SELECT id FROM containers WHERE session_id = ? AND state IN (?, ?, ?) "
                    "LIMIT 1", (session.id, *(st.value for st in CONTAINER_LIVE))).fetchone()
                if busy is not None:
                    raise SessionBusy(current.id, str(busy[0]))
            if self._budget_gate is not None:
                self._budget_gate(tx, current)
            mode = SessionStatus.DETACHED if current.interactive else SessionStatus.HEADLESS
            if session is None:
                session = tx.sessions.insert(
                    current.id, session_id=zero.session_id if zero is not None else None,
                    agent_session_id=_sent_conversation(zero), status=mode)
                tx.events.append("session_created", f"session {session.id}",
                                 task_id=current.id, session_id=session.id,
                                 data={"agent_session_id": session.agent_session_id})
                if zero is not None:
                    index_checkpoint(tx, session.id, "", zero.summary())
                    session = tx.sessions.get(session.id) or session
            launch = self._launch_for(current, session, conversation)
            incarnation = 1 + int(tx.conn.execute(
                "SELECT COUNT(*) FROM containers WHERE session_id = ?", (session.id,)
            ).fetchone()[0])
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
        spec = self._container_spec(backend, task, session, container, launch, cfg, bundle)
        # Until its backend id is recorded, nothing else can stop this container (stops
        # need the id) and the listener must not take it for one that never launched.
        self.launching.add(container.id)
        return Claimed(task, session, container, backend, spec)

    async def _launch(self, claim: Claimed) -> None:
        task, session, container, backend, spec = (claim.task, claim.session, claim.container,
                                                   claim.backend, claim.spec)
        try:
            try:
                worker = WorkerSpec.from_dict(spec.worker_spec)
                if worker.agent.interactive and getattr(backend, "offers_ssh", False) and \
                        self._ssh_key is not None:
                    worker, spec = await self._with_ssh_key(worker, spec, session.id)
                await asyncio.to_thread(dump_spec, worker,
                                        self._volume.path_for(spec_key(container.id)))
                await volsync.push_for_launch(backend, self._volume, container.id, session.id,
                                              worker.restore_checkpoint_id,
                                              worker.config_bundle_id)
                backend_id = await backend.launch(spec)
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
                if row.state == ContainerState.CREATED:
                    fields["state"] = ContainerState.STARTING.value
                row = tx.containers.update(container.id, **fields)
                tx.events.append("container_started", f"{backend.name} {backend_id}",
                                 task_id=task.id, session_id=session.id,
                                 container_id=container.id, data={"backend_id": backend_id})
                current = tx.tasks.get(task.id)
                wanted = current is not None and current.container_id == container.id and \
                    current.status == TaskStatus.RUNNING and row.state in CONTAINER_LIVE
                return wanted, row

            wanted, row = await self._store.write(started)
        finally:
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

    async def _zero_for_new_session(self, task: TaskRow) -> tuple[Manifest, bool]:
        """Checkpoint zero for a task's new session: the upload itself (stored under the
        reserved session id), or — for a retry, whose first session took that id — a copy
        of it under a fresh session id (blobs are shared; only the manifest is new, and
        the caller writes it once the dispatch is claimed: True)."""
        indexed = next((cp.id for cp in await self._store.checkpoints.list(
            task.source_workspace_id, limit=100000) if cp.trigger == WORKSPACE_TRIGGER), None)
        zero = await asyncio.to_thread(checkpoint_zero, self._volume, task.source_workspace_id,
                                       indexed)
        if await self._store.sessions.find(zero.session_id) is None:
            return zero, False
        copy = dataclasses.replace(zero, session_id=ids.new_id(ids.SESSION), id="")
        copy.id = copy.compute_id()
        return copy, True

    async def _has_conversation(self, task: TaskRow) -> Conversation | None:
        """The session's latest checkpoint when it holds a conversation to resume (a worker
        that died before its first turn left none: that run starts over). Checkpoint zero
        holding one was sent by the user (``--from-session``): its prompt is still due."""
        if task.session_id is None:
            return None
        session = await self._store.sessions.find(task.session_id)
        if session is None or session.latest_checkpoint_id is None:
            return None
        try:
            manifest = await asyncio.to_thread(load_manifest, self._volume, session.id,
                                               session.latest_checkpoint_id)
        except ParheliaError:
            log.warning("latest checkpoint unreadable", session_id=session.id,
                        checkpoint_id=session.latest_checkpoint_id)
            return None
        if not manifest.conversation:
            return None
        return Conversation(manifest.id, sent=manifest.trigger == WORKSPACE_TRIGGER
                            and manifest.parent_id is None)

    def _launch_for(self, task: TaskRow, session: SessionRow,
                    conversation: Conversation | None) -> Launch:
        """Resume the conversation when the latest checkpoint holds one; otherwise run the
        prompt from the latest checkpoint's workspace (checkpoint zero, or nothing)."""
        latest = session.latest_checkpoint_id
        if conversation is not None and conversation.checkpoint_id == latest and \
                conversation.sent:
            # Checkpoint zero holds a local conversation (`task create --from-session`) and
            # no turn of the task is checkpointed yet: the task's prompt is the next
            # message of that conversation.
            return Launch(task.prompt, resume=True, restore_checkpoint_id=latest)
        if conversation is not None and conversation.checkpoint_id == latest:
            return Launch(continuation_prompt(latest, task.status_reason
                                              or "its worker stopped"),
                          resume=True, restore_checkpoint_id=latest)
        return Launch(task.prompt, resume=False, restore_checkpoint_id=latest)

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

    def _container_spec(self, backend: Backend, task: TaskRow, session: SessionRow,
                        container: ContainerRow, launch: Launch, cfg: Config,
                        bundle: tuple[str | None, dict[str, str]] = (None, {})
                        ) -> ContainerSpec:
        paths = backend.worker_paths(session.id, container.id)
        worker = WorkerSpec(
            container_id=container.id, task_id=task.id, session_id=session.id,
            incarnation=container.incarnation, backend=task.backend,
            volume_dir=paths.volume_dir, workspace_dir=paths.workspace_dir,
            claude_config_dir=paths.claude_config_dir,
            volume_sync_argv=list(paths.sync_argv), tmux_socket=paths.tmux_socket or None,
            restore_checkpoint_id=launch.restore_checkpoint_id,
            prompt=launch.prompt, task_prompt=task.prompt,
            agent=AgentSpec(
                session_uuid=session.agent_session_id, command=list(cfg.agent.command),
                resume=launch.resume, model=task.model or None, interactive=task.interactive,
                permission_mode=task.permission_mode, max_turns=task.max_turns,
                max_budget_usd=(task.max_cost_micros / 1_000_000) if task.max_cost_micros else None,
                timeout_seconds=task.timeout_seconds, project_settings=task.trust_project),
            heartbeat_interval_seconds=cfg.heartbeat.interval_seconds,
            checkpoint=CheckpointPolicy(
                interval_seconds=cfg.checkpoint.interval_seconds,
                min_turn_interval_seconds=cfg.checkpoint.min_turn_interval_seconds,
                risky_patterns=list(cfg.checkpoint.risky_patterns)),
            config_bundle_id=bundle[0],
        )
        return ContainerSpec(
            container_id=container.id, task_id=task.id, session_id=session.id,
            owner_tag=self._owner, worker_spec=worker.to_dict(), cpu=task.cpu,
            memory_mb=task.memory_mb, gpu=task.gpu, timeout_seconds=task.timeout_seconds,
            paths=paths, secret_env=dict(bundle[1]))

    async def _fail(self, task: TaskRow, code: str, message: str) -> None:
        """Fail a task before any worker of this attempt ran: nothing of an earlier run's
        result (a resumed task's old success) stays beside the error."""
        await self._store.write(lambda tx: fail_task(tx, task.id, code, message,
                                                     result_subtype="", result_text=""))

    async def _launch_failed(self, task: TaskRow, container: ContainerRow, code: str,
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


def _fail_if_waiting(tx: Tx, task_id: str, code: str, message: str) -> None:
    current = tx.tasks.get(task_id)
    if current is not None and current.status in (TaskStatus.PENDING, TaskStatus.RECOVERING):
        fail_task(tx, task_id, code, message, result_subtype="", result_text="")
