"""Tasks: option validation, the one transition function, and the task service.

No gRPC here. The state machine itself is :mod:`parheliad.core.states` (re-exported);
the store's writer refuses illegal status changes, and :func:`transition` is the way
to change a status *with* its catalogue event in one transaction.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import structlog

from parhelia import gitremote, gitsafe, gpus, records
from parhelia.backends import BACKENDS, DEFAULT_BACKEND
from parhelia.errors import Code, ParheliaError, invalid, missing
from parhelia.limits import MAX_PROMPT_CHARS, PATH_MAX
from parhelia.permissions import DEFAULT_PERMISSION_MODE, PERMISSION_MODES
from parhelia.redact import redact
from parheliad.backends.registry import terms
from parheliad.config import Config, project_widenings, trusts_project
from parheliad.core.states import (
    TASK_FINAL,
    TASK_TRANSITIONS,
    TaskStatus,
    can_transition_task,
    check_task_transition,
)
from parheliad.core.waiting import Wait, hold, set_waiting
from parheliad.environments.service import EnvironmentResolver
from parheliad.store import Store, TaskRow, Tx
from parheliad.store.clock import now_us

__all__ = [
    "TASK_FINAL",
    "TASK_TRANSITIONS",
    "RetryOverrides",
    "TaskDefaults",
    "TaskOptions",
    "TaskRuntime",
    "TaskService",
    "TaskSource",
    "TaskStatus",
    "can_transition_task",
    "check_task_transition",
    "fail_task",
    "index_checkpoint",
    "retry_task",
    "task_options",
    "transition",
    "validate_options",
]

log = structlog.get_logger(__name__)

CPU_MAX = 64.0
MEMORY_MIN_MB, MEMORY_MAX_MB = 128, 1_048_576
TIMEOUT_MAX_S = 86_400
MAX_TURNS_MAX = 1000
MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\[\]/-]{0,99}$")

_STATUS_EVENT = {
    TaskStatus.PENDING: "task_resumed",
    TaskStatus.RUNNING: "task_running",
    TaskStatus.RECOVERING: "task_recovering",
    TaskStatus.PAUSED: "task_paused",
    TaskStatus.COMPLETED: "task_completed",
    TaskStatus.FAILED: "task_failed",
    TaskStatus.CANCELLED: "task_cancelled",
}


OPTION_KEYS: dict[str, str] = {
    "cpu": "modal.cpu_count", "memory_mb": "modal.memory_mb",
    "timeout_seconds": "modal.default_timeout_hours", "max_turns": "agent.max_turns",
    "model": "agent.model", "permission_mode": "agent.permission_mode",
    "backend": "orchestrator.default_backend", "gpu": "", "max_cost_micros": ""}
"""Each task option and the config key that gives its default ("" = none)."""


@dataclass(frozen=True)
class TaskOptions:
    """What a task asks for; zero/empty values mean "use the default"."""

    gpu: str = ""
    cpu: float = 0.0
    memory_mb: int = 0
    timeout_seconds: int = 0
    max_turns: int = 0
    max_cost_micros: int = 0
    model: str = ""
    permission_mode: str = ""
    interactive: bool = False
    backend: str = ""


@dataclass(frozen=True)
class TaskSource:
    workspace_id: str = ""
    repo_url: str = ""
    repo_ref: str = ""


@dataclass(frozen=True)
class TaskDefaults:
    cpu: float = 4.0
    memory_mb: int = 16_384
    timeout_seconds: int = 14_400
    max_turns: int = 50
    model: str = ""
    permission_mode: str = DEFAULT_PERMISSION_MODE
    backend: str = DEFAULT_BACKEND
    gpu_types: tuple[str, ...] = ()
    cancel_grace_seconds: float = 10.0

    @classmethod
    def from_config(cls, cfg: Config) -> TaskDefaults:
        return cls(
            cpu=float(cfg.modal.cpu_count),
            memory_mb=int(cfg.modal.memory_mb),
            timeout_seconds=max(1, min(TIMEOUT_MAX_S,
                                       round(float(cfg.modal.default_timeout_hours) * 3600))),
            max_turns=int(cfg.agent.max_turns),
            model=cfg.agent.model,
            permission_mode=cfg.agent.permission_mode,
            backend=cfg.orchestrator.default_backend,
            gpu_types=tuple(cfg.rates.gpu),
            cancel_grace_seconds=float(cfg.orchestrator.cancel_grace_seconds),
        )


def normalize_gpu(value: str, known: tuple[str, ...]) -> str:
    """``""`` or ``TYPE[:N]`` with TYPE from the rate table (``A100`` = ``A100-40GB``)."""
    try:
        return gpus.format_gpu(gpus.parse_gpu(value, known))
    except ValueError as exc:
        raise invalid(f"gpu: {exc}", field="gpu") from None


def validate_options(opts: TaskOptions, defaults: TaskDefaults) -> TaskOptions:
    """Fill defaults and check every option; E101 naming the option otherwise."""
    gpu = normalize_gpu(opts.gpu, defaults.gpu_types)
    cpu = opts.cpu or defaults.cpu
    if not math.isfinite(cpu) or not 0 < cpu <= CPU_MAX:
        raise invalid(f"cpu: must be more than 0 and at most {CPU_MAX:g} cores, got {cpu:g}",
                      field="cpu")
    memory = opts.memory_mb or defaults.memory_mb
    if not MEMORY_MIN_MB <= memory <= MEMORY_MAX_MB:
        raise invalid(f"memory: must be {MEMORY_MIN_MB} to {MEMORY_MAX_MB} MiB, got {memory}",
                      field="memory_mb")
    timeout = opts.timeout_seconds or defaults.timeout_seconds
    if not 1 <= timeout <= TIMEOUT_MAX_S:
        raise invalid(f"timeout: must be 1 to {TIMEOUT_MAX_S} seconds, got {timeout}",
                      field="timeout_seconds")
    turns = opts.max_turns or defaults.max_turns
    if not 1 <= turns <= MAX_TURNS_MAX:
        raise invalid(f"max_turns: must be 1 to {MAX_TURNS_MAX}, got {turns}",
                      field="max_turns")
    if opts.max_cost_micros < 0:
        raise invalid("max_cost: must not be negative", field="max_cost_micros")
    model = (opts.model or defaults.model).strip()
    if model and not MODEL_RE.fullmatch(model):
        raise invalid("model: not a valid model name", field="model")
    mode = opts.permission_mode or defaults.permission_mode
    if mode not in PERMISSION_MODES:
        raise invalid(f"permission_mode: must be one of {', '.join(PERMISSION_MODES)}, "
                      f"got {mode!r}", field="permission_mode")
    # Only Modal has GPUs: --gpu picks it unless --backend says otherwise, and a GPU on
    # a backend without any is refused rather than silently run without one.
    backend = opts.backend or (gpus.GPU_BACKEND if gpu else defaults.backend)
    if backend not in BACKENDS:
        raise invalid(f"backend: must be one of {', '.join(BACKENDS)}, got {backend!r}",
                      field="backend")
    if gpu and backend != gpus.GPU_BACKEND:
        raise invalid(f"gpu: the {backend} backend has no GPUs, so --gpu {gpu} cannot be "
                      f"honoured there; drop --backend {backend} (--gpu runs on "
                      f"{gpus.GPU_BACKEND}) or drop --gpu", field="gpu")
    limit = terms(backend).max_task_timeout_seconds
    if limit is not None and timeout > limit:
        raise invalid(f"timeout: {terms(backend).timeout_limit}: must be 1 to {limit} seconds "
                      f"on {backend}, got {timeout}", field="timeout_seconds")
    return TaskOptions(gpu=gpu, cpu=float(cpu), memory_mb=memory, timeout_seconds=timeout,
                       max_turns=turns, max_cost_micros=opts.max_cost_micros, model=model,
                       permission_mode=mode, interactive=opts.interactive, backend=backend)


def validate_source(source: TaskSource) -> TaskSource:
    if source.workspace_id and not re.fullmatch(r"s-[0-9a-f]{4,64}", source.workspace_id):
        # It names a directory of the volume: only an id UploadWorkspace gave out.
        raise invalid("workspace_id: not a workspace id from UploadWorkspace",
                      field="workspace_id")
    if source.workspace_id and source.repo_url:
        raise invalid("source: give a workspace or a repository, not both", field="source")
    if source.repo_ref and not source.repo_url:
        raise invalid("repo_ref: needs a repo_url", field="repo_ref")
    problem = gitsafe.ref_problem(source.repo_ref) if source.repo_ref else None
    if problem:
        raise invalid(f"repo_ref: {source.repo_ref!r} is not a branch, tag or commit name: "
                      f"it {problem}", field="repo_ref")
    if source.repo_url:
        try:
            gitremote.parse(source.repo_url)
        except ValueError as exc:
            if "password or token" not in str(exc):
                raise invalid(f"repo_url: {exc}", field="repo_url") from None
    if re.match(r"^[a-z]+://[^/@]*:[^/@]*@", source.repo_url) or \
            redact(source.repo_url) != source.repo_url:
        # It would be stored with the task and shown by every `task show`.
        raise invalid("repo_url: must not carry a password or token; the daemon clones "
                      "with the GitHub token it has (`parhelia auth set --github`, "
                      "GITHUB_TOKEN/GH_TOKEN, or `gh auth login`), or an ssh:// URL with "
                      "your ssh agent", field="repo_url")
    return source


def transition(tx: Tx, task_id: str, to: str, *, reason: str = "", message: str = "",
               event_type: str | None = None, data: Mapping[str, Any] | None = None,
               **fields: Any) -> TaskRow:
    """Inside a writer unit: move a task to ``to`` (E603 if illegal), set ``fields``,
    stamp ``started_at``/``finished_at``, and append the catalogue event.

    ``event_type`` defaults to the status's event (``task_running``, ``task_failed``...).
    """
    current = tx.tasks.require(task_id)
    target = TaskStatus(to)
    check_task_transition(current.status, target, task_id=current.id)
    now = now_us()
    if target is TaskStatus.RUNNING and current.started_at is None:
        fields.setdefault("started_at", now)
    if target in TASK_FINAL:
        fields.setdefault("finished_at", now)
    elif target is TaskStatus.PENDING:
        fields.setdefault("finished_at", None)
    # A new status starts a new wait (parheliad.core.waiting): its code is the one the
    # change carries, only a pause waits for the user, and holds and backoffs end.
    fields.setdefault("status_code", str((data or {}).get("code") or ""))
    fields.setdefault("needs_user", target is TaskStatus.PAUSED)
    fields.setdefault("held", False)
    fields.setdefault("dispatch_after", None)
    row = tx.tasks.update(current.id, status=target.value, status_reason=reason,
                          updated_at=now, **fields)
    tx.events.append(event_type or _STATUS_EVENT[target],
                     message or f"task {current.status} -> {target.value}"
                     + (f": {reason}" if reason else ""),
                     task_id=row.id, session_id=row.session_id, container_id=row.container_id,
                     data={"from": current.status, "to": target.value, "reason": reason,
                           **(data or {})}, at=now)
    return row


def fail_task(tx: Tx, task_id: str, code: Code, message: str,
              exit_code: int | None = None, **fields: Any) -> TaskRow:
    """Inside a unit: the task failed with catalogue ``code``; the one way to say so."""
    return transition(tx, task_id, TaskStatus.FAILED, reason=message[:500], data={"code": code},
                      result_error_code=code, result_error_message=message[:2000],
                      result_is_error=True, result_exit_code=exit_code, **fields)


def index_checkpoint(tx: Tx, session_id: str, container_id: str,
                     summary: records.CheckpointCreated) -> None:
    """Inside a unit: index a checkpoint from its summary (``Manifest.summary()``, which
    is also the ``checkpoint_created`` record) and make it the session's latest."""
    stats, env = summary.stats, summary.environment
    env_bundle = env.get("config_bundle_id")
    tx.checkpoints.insert(
        session_id=session_id, checkpoint_id=summary.checkpoint_id,
        container_id=container_id, parent_id=summary.parent_id or "",
        trigger=summary.trigger, message=summary.message,
        files=stats.files, bytes=stats.bytes, new_bytes=stats.new_bytes,
        duration_ms=stats.duration_ms, environment=env, git=summary.git or {},
        config_bundle_id=env_bundle if isinstance(env_bundle, str) else "",
        manual=summary.trigger == "manual")
    tx.sessions.update(session_id, latest_checkpoint_id=summary.checkpoint_id)


class TaskRuntime(Protocol):
    """What the task service needs from the runtime (:class:`parheliad.core.runtime.Runtime`)."""

    async def cancel(self, task: TaskRow, grace_seconds: float) -> TaskRow:
        """Stop an active task's worker and mark it cancelled; returns the task."""
        ...


Kick = Callable[[TaskRow], Awaitable[None]]


Admit = Callable[[Tx, TaskRow], Wait | None]

CheckBackend = Callable[[str], None]
"""Raises why a task on this backend cannot start now (E400: no credentials of its own,
E500: not available), or returns."""


class TaskService:
    """Create, list, get, cancel and delete tasks.

    ``runtime`` stops active tasks; ``on_created`` is called for each task created
    without ``no_dispatch`` (the dispatcher's kick); ``admit``, inside the create unit,
    says why a new task cannot start (the budget), recorded at once so `task create` can
    say so; ``check_backend`` refuses a task whose backend cannot start it (no Modal
    token: E400), before anything is created. The daemon's composition root
    (:mod:`parheliad.wiring`) passes them all; without a runtime, active tasks cannot be
    cancelled (E500).
    """

    def __init__(self, store: Store, *, config: Callable[[Path | None], Config],
                 runtime: TaskRuntime | None = None, on_created: Kick | None = None,
                 admit: Admit | None = None, check_backend: CheckBackend | None = None,
                 environments: EnvironmentResolver | None = None) -> None:
        self._store = store
        self._check_backend = check_backend
        self._config = config
        self._runtime = runtime
        self._on_created = on_created
        self._admit = admit
        self._environments = environments
        """Resolves each new task's environment from its upload (None: tasks get none)."""

    def _task_defaults(self, options: TaskOptions, project: Path | None,
                  trust_project: bool) -> tuple[TaskDefaults, dict[str, str]]:
        """The defaults for a task of ``project`` and where each option comes from
        (``flag``, ``default``, ``user:<file>``, ``project:<file>``). A project file may
        only narrow what the user's own config allows (E401 naming file and key) unless
        the user trusts it for this task, or an explicit flag overrides the key."""
        cfg = self._config(project)
        sources = {opt: ("flag" if getattr(options, opt) else cfg.source(key) if key
                         else "default") for opt, key in OPTION_KEYS.items()}
        if options.gpu and not options.backend:
            sources["backend"] = "flag"  # --gpu chose it
        if project is not None and any(v.startswith("project:") for v in sources.values()):
            flagged = {OPTION_KEYS[o] for o, v in sources.items() if v == "flag"}
            wider = [w for w in project_widenings(self._config(None), cfg)
                     if w[0] not in flagged]
            if wider and not trust_project:
                key, mine, theirs, path = wider[0]
                priced = " at more per token" if key == "agent.model" else ""
                raise ParheliaError(
                    "E401", f"{path}: {key} = {theirs!r} widens what your own configuration "
                    f"allows ({mine!r}){priced}; a project file may only narrow it. Pass the "
                    "option explicitly, or --trust-project-config if you trust this project "
                    "file",
                    file=path, key=key)
        return TaskDefaults.from_config(cfg), sources

    async def create(self, prompt: str, options: TaskOptions = TaskOptions(),
                     source: TaskSource = TaskSource(), *, workspace_path: str = "",
                     base_commit: str = "", dispatch: bool = True,
                     trust_project_config: bool = False, open_pr: bool = False) -> TaskRow:
        values = self.prepare(prompt, options, source, workspace_path=workspace_path,
                              base_commit=base_commit, dispatch=dispatch,
                              trust_project_config=trust_project_config, open_pr=open_pr)
        if self._environments is not None:
            project = Path(workspace_path) if workspace_path else None
            env = await self._environments.for_task(
                self._config(project), workspace_id=values["source_workspace_id"],
                gpu=bool(values["gpu"]), trusted=bool(values["trust_project"]))
            values.update(environment_hash=env.hash,
                          environment_json=json.dumps(env.to_dict(), sort_keys=True))

        def unit(tx: Tx) -> TaskRow:
            row = tx.tasks.insert(values)
            tx.events.append("task_created", f"task created ({row.backend})", task_id=row.id,
                             data={"backend": row.backend, "gpu": row.gpu,
                                   "prompt_chars": len(prompt), "no_dispatch": not dispatch,
                                   "environment_hash": row.environment_hash})
            if not dispatch:
                return hold(tx, row.id)
            wait = self._admit(tx, row) if self._admit is not None else None
            return (set_waiting(tx, row.id, wait) or row) if wait is not None else row

        row = await self._store.write(unit)
        log.info("task.created", task_id=row.id, prompt_chars=len(prompt), backend=row.backend,
                 gpu=row.gpu or None, dispatch=dispatch)
        if dispatch and self._on_created is not None:
            try:
                await self._on_created(row)
            except Exception:
                # The task is stored; the periodic dispatch job will pick it up.
                log.exception("task.kick_failed", task_id=row.id)
        return row

    def prepare(self, prompt: str, options: TaskOptions = TaskOptions(),
                source: TaskSource = TaskSource(), *, workspace_path: str = "",
                base_commit: str = "", dispatch: bool = True,
                trust_project_config: bool = False, open_pr: bool = False) -> dict[str, Any]:
        """Every check a new task passes, nothing written: the values of its row. Also
        what ``CreateTask(validate_only)`` runs before a workspace is uploaded, so a
        refused option, project file or backend costs no upload."""
        if not prompt.strip():
            raise missing("prompt: a task needs a non-empty prompt", field="prompt")
        if "\0" in prompt:
            raise invalid("prompt: contains a NUL character, which no agent can read",
                          field="prompt")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise invalid(f"prompt: {len(prompt):,} characters; at most {MAX_PROMPT_CHARS:,}",
                          field="prompt")
        if len(workspace_path) > PATH_MAX or "\0" in workspace_path:
            raise invalid(f"workspace_path: at most {PATH_MAX} characters, no NUL",
                          field="workspace_path")
        if base_commit and not re.fullmatch(r"[0-9a-f]{4,64}", base_commit):
            raise invalid("base_commit: must be a commit id (hex)", field="base_commit")
        project = Path(workspace_path) if workspace_path else None
        if project is not None and not project.is_absolute():
            raise invalid("workspace_path: must be absolute", field="workspace_path")
        # The project's effective config re-reads the user's file; a project file cannot
        # set agent.trusted_projects (a daemon-wide key).
        trusted = trust_project_config or (
            project is not None and trusts_project(self._config(project), project))
        defaults, sources = self._task_defaults(options, project, trusted)
        opts = validate_options(options, defaults)
        if dispatch and self._check_backend is not None:
            self._check_backend(opts.backend)  # at once, not a task that fails later
        src = validate_source(source)
        if open_pr and not (src.repo_url or (src.workspace_id and base_commit)):
            raise invalid("open_pr: a pull request needs a repository: upload a git "
                          "repository's workspace or give a repo_url", field="open_pr")
        values = {**asdict(opts), "prompt": prompt, "option_sources": json.dumps(sources),
                  "source_workspace_id": src.workspace_id, "source_repo_url": src.repo_url,
                  "source_repo_ref": src.repo_ref, "workspace_path": workspace_path,
                  "base_commit": base_commit, "trust_project": trusted, "open_pr": open_pr}
        return values

    async def get(self, ref: str) -> TaskRow:
        return await self._store.tasks.get(ref)

    async def list(self, statuses: tuple[str, ...] = (), limit: int = 100,
                   before_seq: int | None = None) -> list[TaskRow]:
        for status in statuses:
            if status not in TaskStatus.__members__.values():
                raise invalid(f"status: unknown task status {status!r}", field="statuses")
        return await self._store.tasks.list(statuses, limit=min(max(limit, 1), 10_001),
                                            before_seq=before_seq)

    async def cancel(self, ref: str, grace_seconds: float = 0) -> TaskRow:
        """Pending or paused: cancelled now. Running or recovering: the runtime stops it."""
        task = await self._store.tasks.get(ref)
        status = TaskStatus(task.status)
        if status in (TaskStatus.PENDING, TaskStatus.PAUSED):
            def unit(tx: Tx) -> TaskRow | None:
                current = tx.tasks.require(task.id)
                if current.status not in (TaskStatus.PENDING, TaskStatus.PAUSED):
                    return None  # dispatched meanwhile: its worker must be stopped too
                return transition(tx, task.id, TaskStatus.CANCELLED, reason="cancelled by user")

            row = await self._store.write(unit)
            if row is not None:
                return row
            task = await self._store.tasks.get(task.id)
            status = TaskStatus(task.status)
        if status in (TaskStatus.RUNNING, TaskStatus.RECOVERING):
            if self._runtime is None:
                raise ParheliaError("E500", "the task runtime is not running")
            grace = grace_seconds or self._defaults().cancel_grace_seconds
            return await self._runtime.cancel(task, grace)
        raise ParheliaError("E603", f"task {task.id} is already {task.status}; only pending, "
                                    "running, recovering or paused tasks can be cancelled",
                            status=task.status)

    async def delete(self, ref: str, force: bool = False) -> str:
        """Delete a task that has no worker: finished, or pending (held, queued or
        waiting) or paused, which is cancelled first. A running or recovering one only
        with ``force`` (its worker is stopped first)."""
        task = await self._store.tasks.get(ref)
        if TaskStatus(task.status) not in TASK_FINAL:
            if not force and task.status in (TaskStatus.RUNNING, TaskStatus.RECOVERING):
                raise ParheliaError("E603", f"task {task.id} is {task.status}: its worker runs. "
                                            "Cancel it first, or delete with --force",
                                    status=task.status)
            task = await self.cancel(task.id)

        def unit(tx: Tx) -> None:
            tx.tasks.delete(task.id)
            tx.events.append("task_deleted", "task deleted" + (" (forced)" if force else ""),
                             task_id=task.id, data={"status": task.status, "force": force})

        await self._store.write(unit)
        log.info("task.deleted", task_id=task.id, force=force)
        return task.id

    def _defaults(self) -> TaskDefaults:
        return TaskDefaults.from_config(self._config(None))


def task_options(task: TaskRow) -> TaskOptions:
    """The options a task was created with (as validated then)."""
    return TaskOptions(gpu=task.gpu, cpu=task.cpu, memory_mb=task.memory_mb,
                       timeout_seconds=task.timeout_seconds, max_turns=task.max_turns,
                       max_cost_micros=task.max_cost_micros, model=task.model,
                       permission_mode=task.permission_mode, interactive=task.interactive,
                       backend=task.backend)


@dataclass(frozen=True)
class RetryOverrides:
    """What a retry may change (0 or "": keep the task's value)."""

    max_turns: int = 0
    max_cost_micros: int = 0
    timeout_seconds: int = 0
    model: str = ""

    def apply(self, task: TaskRow, cfg: Config) -> dict[str, Any]:
        """The task's columns to change, validated as at creation (E101)."""
        given = {k: v for k, v in asdict(self).items() if v}
        current = replace(task_options(task), **given)
        checked = validate_options(current, TaskDefaults.from_config(cfg))
        return {k: getattr(checked, k) for k in given if getattr(checked, k) != getattr(task, k)}


def _flagged(option_sources: str, changed: Mapping[str, Any]) -> dict[str, str]:
    """``{"option_sources": ...}`` with the options a retry changed marked as flags."""
    if not changed:
        return {}
    try:
        sources = json.loads(option_sources or "{}")
    except ValueError:
        sources = {}
    if not isinstance(sources, dict):
        sources = {}
    sources.update({k: "flag" for k in changed})
    return {"option_sources": json.dumps(sources)}


async def retry_task(store: Store, cfg: Config, ref: str,
                     overrides: RetryOverrides | None = None) -> TaskRow:
    """A finished task back to pending, to run in a fresh session from checkpoint zero,
    with ``overrides`` of its limits (a higher --max-cost after hitting the cap...). The
    caller kicks the dispatcher."""
    task = await store.tasks.get(ref)
    changed = overrides.apply(task, cfg) if overrides is not None else {}
    if TaskStatus(task.status) not in TASK_FINAL:
        raise ParheliaError("E603", f"task {task.id} is {task.status}; only completed, "
                                    "failed or cancelled tasks can be retried")

    sources = _flagged(task.option_sources, changed)

    def unit(tx: Tx) -> TaskRow:
        return transition(
            tx, task.id, TaskStatus.PENDING, event_type="task_retried",
            message=f"retry of task {task.id} in a fresh session"
            + "".join(f", {k} {v}" for k, v in changed.items()), reason="retry",
            data={"overrides": changed},
            session_id=None, container_id=None, restarts=0, started_at=None,
            result_subtype="", result_is_error=False, result_text="",
            result_exit_code=None, result_error_code="", result_error_message="",
            last_tool="", **changed, **sources)

    return await store.write(unit)
