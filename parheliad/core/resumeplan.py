"""The resume plan: what one dispatch of a task runs (the dispatcher claims and launches).

- **Checkpoint zero** of a new session: the task's uploaded workspace
  (:func:`zero_for_new_session`), or a copy of it when a retry's first session took its id.
- **The resume point** (:func:`resume_point`): the session's latest checkpoint when it holds
  a conversation to resume; a worker that died before its first turn left none, and that
  run starts over. Checkpoint zero holding one was sent by the user (``task create
  --from-session``).
- **The launch** (:func:`launch_for`): resume that conversation (with the continuation
  prompt, or the task's own prompt when the conversation was sent and no turn of the task
  is checkpointed yet), else run the prompt from the latest checkpoint's workspace.
- **The worker's spec** (:func:`container_spec`): the launch, the task's options, the
  paths the backend gives, the configuration's heartbeat and checkpoint policy.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass

import structlog

from parhelia.checkpoint import Manifest, load_manifest
from parhelia.errors import ParheliaError
from parhelia.prompts import continuation_prompt
from parhelia.spec import AgentSpec, CheckpointPolicy, WorkerSpec
from parhelia.volume import LocalVolume
from parheliad.backends.base import Backend, ContainerSpec, ImageBackend
from parheliad.config import Config
from parheliad.core.workspace import SESSION_UUID, WORKSPACE_TRIGGER, checkpoint_zero
from parheliad.environments import service as environments
from parheliad.store import ids
from parheliad.store.rows import ContainerRow, SessionRow, TaskRow
from parheliad.store.store import Store

log = structlog.get_logger(__name__)

Bundle = tuple[str | None, dict[str, str]]
"""The config bundle id for the worker (None: none) and ``sync.pass_env`` values."""


@dataclass(frozen=True)
class Launch:
    """What one dispatch of a task's session should run."""

    prompt: str
    resume: bool
    restore_checkpoint_id: str | None


@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint holding the conversation a launch resumes; ``sent``: it is checkpoint
    zero, carrying a local conversation the user sent (``task create --from-session``)."""

    checkpoint_id: str
    sent: bool = False


def sent_conversation(zero: Manifest | None) -> str | None:
    """The conversation id checkpoint zero carries (``--from-session``), else None (the
    session gets a new one)."""
    if zero is None or not zero.conversation:
        return None
    value = zero.environment.get(SESSION_UUID)
    return value if isinstance(value, str) and f"{value}.jsonl" in zero.conversation else None


async def zero_for_new_session(store: Store, volume: LocalVolume, task: TaskRow
                               ) -> tuple[Manifest, bool]:
    """Checkpoint zero for a task's new session: the upload itself (stored under the
    reserved session id), or — for a retry, whose first session took that id — a copy
    of it under a fresh session id (blobs are shared; only the manifest is new, and
    the caller writes it once the dispatch is claimed: True)."""
    indexed = next((cp.id for cp in await store.checkpoints.list(
        task.source_workspace_id, limit=100000) if cp.trigger == WORKSPACE_TRIGGER), None)
    zero = await asyncio.to_thread(checkpoint_zero, volume, task.source_workspace_id, indexed)
    if await store.sessions.find(zero.session_id) is None:
        return zero, False
    copy = dataclasses.replace(zero, session_id=ids.new_id(ids.SESSION), id="")
    copy.id = copy.compute_id()
    return copy, True


async def resume_point(store: Store, volume: LocalVolume, task: TaskRow,
                       zero: Manifest | None = None) -> ResumePoint | None:
    """Where the task's conversation resumes from: checkpoint zero of its new session
    when the user sent a conversation with it, else the session's latest checkpoint when
    it holds one, else None (the run starts over)."""
    if zero is not None and zero.conversation:  # a local conversation sent with it
        return ResumePoint(zero.id, sent=True)
    if task.session_id is None:
        return None
    session = await store.sessions.find(task.session_id)
    if session is None or session.latest_checkpoint_id is None:
        return None
    try:
        manifest = await asyncio.to_thread(load_manifest, volume, session.id,
                                           session.latest_checkpoint_id)
    except ParheliaError:
        log.warning("latest checkpoint unreadable", session_id=session.id,
                    checkpoint_id=session.latest_checkpoint_id)
        return None
    if not manifest.conversation:
        return None
    return ResumePoint(manifest.id, sent=manifest.trigger == WORKSPACE_TRIGGER
                       and manifest.parent_id is None)


def launch_for(task: TaskRow, session: SessionRow, point: ResumePoint | None) -> Launch:
    """Resume the conversation when the latest checkpoint holds one; otherwise run the
    prompt from the latest checkpoint's workspace (checkpoint zero, or nothing)."""
    latest = session.latest_checkpoint_id
    if point is not None and point.checkpoint_id == latest and point.sent:
        # Checkpoint zero holds a local conversation (`task create --from-session`) and
        # no turn of the task is checkpointed yet: the task's prompt is the next
        # message of that conversation.
        return Launch(task.prompt, resume=True, restore_checkpoint_id=latest)
    if point is not None and point.checkpoint_id == latest:
        return Launch(continuation_prompt(latest, task.status_reason or "its worker stopped"),
                      resume=True, restore_checkpoint_id=latest)
    return Launch(task.prompt, resume=False, restore_checkpoint_id=latest)


def container_spec(backend: Backend, task: TaskRow, session: SessionRow,
                   container: ContainerRow, launch: Launch, cfg: Config, owner_tag: str,
                   bundle: Bundle = (None, {})) -> ContainerSpec:
    """The worker's spec and what the backend needs to launch it."""
    paths = backend.worker_paths(session.id, container.id)
    environment = environments.stored(task)
    worker = WorkerSpec(
        container_id=container.id, task_id=task.id, session_id=session.id,
        incarnation=container.incarnation, backend=task.backend,
        volume_dir=paths.volume_dir, workspace_dir=paths.workspace_dir,
        claude_config_dir=paths.claude_config_dir,
        volume_sync_argv=list(paths.sync_argv), tmux_socket=paths.tmux_socket or None,
        sandbox=paths.sandbox,
        restore_checkpoint_id=launch.restore_checkpoint_id,
        prompt=launch.prompt, task_prompt=task.prompt,
        agent=AgentSpec(
            session_uuid=session.agent_session_id, command=list(cfg.agent.command),
            resume=launch.resume, model=task.model or None, interactive=task.interactive,
            permission_mode=task.permission_mode, max_turns=task.max_turns,
            max_budget_usd=(task.max_cost_micros / 1_000_000) if task.max_cost_micros else None,
            timeout_seconds=task.timeout_seconds, project_settings=task.trust_project,
            permission_mode_contained=None if environments.chose_mode(task)
            else environments.CONTAINED_DEFAULT_MODE,
            allowed_tools=environments.allowed_tools(environment)),
        environment=environments.for_worker(environment,
                                            images=isinstance(backend, ImageBackend)),
        heartbeat_interval_seconds=cfg.heartbeat.interval_seconds,
        checkpoint=CheckpointPolicy(
            interval_seconds=cfg.checkpoint.interval_seconds,
            risky_patterns=list(cfg.checkpoint.risky_patterns)),
        config_bundle_id=bundle[0],
    )
    return ContainerSpec(
        container_id=container.id, task_id=task.id, session_id=session.id,
        owner_tag=owner_tag, worker_spec=worker.to_dict(), cpu=task.cpu,
        memory_mb=task.memory_mb, gpu=task.gpu, timeout_seconds=task.timeout_seconds,
        paths=paths, secret_env=dict(bundle[1]))
