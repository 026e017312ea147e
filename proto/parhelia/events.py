"""The one event schema of Parhelia.

Every state change and notable worker observation is an event with a type from
this catalogue. The daemon stores them, the CLI filters and renders them, the
worker emits the ``agent_*``/``worker_*``/``checkpoint_*`` ones through its channel.
Pure Python, no dependencies (shipped into the worker image).

Channel records (worker -> daemon) are JSON objects::

    {"seq": 7, "type": "agent_tool_use", "at": "2026-11-28T19:00:00.123456Z", "data": {...}}

``seq`` is per container, starting at 1, strictly increasing; the daemon applies
each (container, seq) once. ``type == "heartbeat"`` records go to the heartbeat
table rather than the event log.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Level(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return _LEVEL_RANK[self]


_LEVEL_RANK = {Level.DEBUG: 10, Level.INFO: 20, Level.WARNING: 30, Level.ERROR: 40}
LEVELS: tuple[str, ...] = tuple(level.value for level in Level)


@dataclass(frozen=True)
class EventKind:
    type: str
    category: str
    level: Level
    summary: str


HEARTBEAT = "heartbeat"
"""Channel record type for heartbeats (stored in the heartbeat table, not as an event)."""

_KINDS: tuple[EventKind, ...] = (
    # daemon
    EventKind("daemon_started", "daemon", Level.INFO, "The daemon started."),
    EventKind("daemon_stopping", "daemon", Level.INFO, "The daemon is shutting down."),
    EventKind("config_reloaded", "daemon", Level.INFO,
              "The daemon re-read its configuration (`parhelia daemon reload` or SIGHUP): "
              "which keys changed, and which wait for a restart."),
    # task
    EventKind("task_created", "task", Level.INFO, "A task was created."),
    EventKind("task_dispatched", "task", Level.INFO, "A task was given a container."),
    EventKind("task_dispatch_refused", "task", Level.WARNING,
              "A dispatch was refused; the task says why (its status reason)."),
    EventKind("task_waiting", "task", Level.INFO,
              "A pending task waits (a free slot, its session's last worker) or was "
              "released by `task dispatch`."),
    EventKind("task_running", "task", Level.INFO, "A task's worker is running."),
    EventKind("task_completed", "task", Level.INFO, "A task completed."),
    EventKind("task_failed", "task", Level.ERROR, "A task failed."),
    EventKind("task_result_unsaved", "task", Level.ERROR,
              "A task's agent finished but its result (the completion checkpoint) could not "
              "be saved; the work is only in its workspace."),
    EventKind("task_result_saved", "task", Level.INFO,
              "An unsaved result was saved from the task's workspace."),
    EventKind("task_cancelled", "task", Level.WARNING, "A task was cancelled."),
    EventKind("task_paused", "task", Level.WARNING, "A task was paused."),
    EventKind("task_resumed", "task", Level.INFO, "A paused or stopped task was resumed."),
    EventKind("task_recovering", "task", Level.WARNING,
              "A task lost its worker and is recovering."),
    EventKind("task_retried", "task", Level.INFO, "A task was retried from checkpoint zero."),
    EventKind("task_deleted", "task", Level.INFO, "A task was deleted."),
    EventKind("overlap_detected", "task", Level.WARNING,
              "Two live tasks of the same repository changed some of the same paths "
              "(one event for each; data: other_task_id, paths, path_count)."),
    # repository: clones on the daemon's side, pushes and pull requests
    EventKind("repository_cloning", "repository", Level.INFO,
              "The daemon clones a --repo task's repository for its checkpoint zero (data: "
              "repo_url, ref, via, credential: where the token comes from, never its value)."),
    EventKind("repository_cloned", "repository", Level.INFO,
              "A --repo task's repository was cloned into checkpoint zero (data: commit, "
              "branch, via, checkpoint_id)."),
    EventKind("pull_request_opened", "repository", Level.INFO,
              "A task's branch was pushed and its pull request opened or updated (data: url, "
              "number, branch, commit, base, created)."),
    EventKind("branch_pushed", "repository", Level.INFO,
              "A task's branch was pushed to a remote without a forge Parhelia speaks to "
              "(data: remote, branch, commit; url: a compare page when known)."),
    EventKind("pull_request_not_opened", "repository", Level.WARNING,
              "A task created with --pr completed but no pull request was opened (data: "
              "code, message)."),
    # session
    EventKind("session_created", "session", Level.INFO, "A session was created."),
    EventKind("session_killed", "session", Level.WARNING, "A session was killed."),
    EventKind("session_resumed", "session", Level.INFO, "A session was resumed."),
    EventKind("ssh_host_key", "worker", Level.INFO,
              "The sandbox's sshd runs for `session attach --ssh`; its host key is pinned."),
    EventKind("ssh_failed", "worker", Level.WARNING,
              "The sandbox's sshd could not start (`session attach` still works)."),
    EventKind("session_pulled", "session", Level.INFO,
              "A session's workspace and conversation were copied to this machine "
              "(`session pull`)."),
    EventKind("session_interactive", "session", Level.INFO,
              "The session's agent runs the interactive TUI in tmux (started or taken over)."),
    EventKind("session_headless", "session", Level.INFO,
              "The session's agent was handed back: it continues headless."),
    EventKind("session_attached", "session", Level.INFO,
              "A client attached to the session's interactive TUI."),
    EventKind("session_detached", "session", Level.INFO,
              "A client detached from the session's interactive TUI (it goes on running)."),
    # container
    EventKind("container_created", "container", Level.INFO, "A container was created."),
    EventKind("container_started", "container", Level.INFO, "A container started."),
    EventKind("container_exited", "container", Level.INFO, "A container exited."),
    EventKind("container_failed", "container", Level.ERROR, "A container failed."),
    EventKind("container_terminated", "container", Level.WARNING, "A container was terminated."),
    EventKind("container_lost", "container", Level.ERROR, "A container vanished from its backend."),
    EventKind("container_orphaned", "container", Level.WARNING, "An unowned container was found."),
    EventKind("container_adopted", "container", Level.INFO, "A running worker was re-adopted."),
    EventKind("channel_record_refused", "container", Level.WARNING,
              "Records of a container's channel were refused (malformed, unknown, or a seq "
              "more than parhelia.records.SEQ_WINDOW past the last applied one); data: "
              "refused, last_seq, first_seq, reasons. One per batch."),
    EventKind("container_still_running", "container", Level.ERROR,
              "A container given up (lost, dead) still runs and could not be terminated; "
              "its task gets no other container until it has ended."),
    # health
    EventKind("health_changed", "health", Level.WARNING, "A container's health changed."),
    EventKind("heartbeat_missed", "heartbeat", Level.DEBUG, "A heartbeat was missed."),
    # worker / agent (emitted by the worker)
    EventKind("worker_started", "worker", Level.INFO, "The worker started."),
    EventKind("worker_exited", "worker", Level.INFO, "The worker finished."),
    EventKind("workspace_restored", "worker", Level.INFO, "The workspace was materialised."),
    EventKind("worker_isolation", "worker", Level.INFO,
              "How a local worker contains its agent and where the model credential is "
              "(data: isolation, credential, reason); a warning when it runs uncontained."),
    EventKind("agent_started", "agent", Level.INFO, "The agent process started."),
    EventKind("agent_init", "agent", Level.INFO,
              "The agent reported its model, version and tools."),
    EventKind("agent_message", "agent", Level.DEBUG, "The agent wrote text."),
    EventKind("agent_tool_use", "agent", Level.INFO, "The agent used a tool."),
    EventKind("agent_turn_completed", "agent", Level.INFO, "The agent completed a turn."),
    EventKind("agent_api_retry", "agent", Level.WARNING, "The agent is retrying an API call."),
    EventKind("agent_result", "agent", Level.INFO, "The agent finished with a result."),
    EventKind("agent_cost", "agent", Level.INFO,
              "The agent's own cost figure for a run stopped before its result "
              "(from its transcript)."),
    EventKind("agent_error", "agent", Level.ERROR, "The agent failed."),
    EventKind("resume_degraded", "agent", Level.WARNING,
              "The stored conversation could not be resumed; a new one started from its "
              "summary."),
    # environment (the worker runs setup/start; the daemon builds images)
    EventKind("setup_started", "environment", Level.INFO,
              "The worker started the environment's setup (or start) commands."),
    EventKind("setup_step", "environment", Level.INFO,
              "One setup or start command finished (its exit code and duration)."),
    EventKind("setup_completed", "environment", Level.INFO,
              "The environment's setup (or start) commands all succeeded."),
    EventKind("setup_skipped", "environment", Level.INFO,
              "The workspace was already prepared for this environment: setup did not run "
              "again (start commands still do)."),
    EventKind("setup_failed", "environment", Level.ERROR,
              "A setup or start command failed (E606): the agent does not start."),
    EventKind("environment_building", "environment", Level.INFO,
              "The daemon started building an environment's image."),
    EventKind("environment_built", "environment", Level.INFO,
              "An environment's image is built (or was found built)."),
    EventKind("environment_build_failed", "environment", Level.ERROR,
              "An environment's image could not be built."),
    EventKind("environment_snapshot", "environment", Level.INFO,
              "A prepared sandbox filesystem was kept for warm starts (a cache)."),
    # checkpoint
    EventKind("checkpoint_created", "checkpoint", Level.INFO, "A checkpoint was written."),
    EventKind("checkpoint_failed", "checkpoint", Level.ERROR, "A checkpoint could not be written."),
    EventKind("checkpoint_restored", "checkpoint", Level.INFO, "A checkpoint was restored."),
    EventKind("checkpoint_rolled_back", "checkpoint", Level.WARNING, "A session was rolled back."),
    EventKind("checkpoint_gc", "checkpoint", Level.INFO, "Old checkpoints were removed."),
    # budget
    EventKind("budget_warning", "budget", Level.WARNING,
              "Spending crossed the warning threshold (E301)."),
    EventKind("budget_exceeded", "budget", Level.ERROR, "The budget ceiling was reached (E300)."),
    EventKind("budget_ceiling_changed", "budget", Level.INFO, "The budget ceiling changed."),
    EventKind("compute_corrected", "budget", Level.INFO,
              "A container's compute estimate (at the configured rates) was replaced by its "
              "backend's own usage figure."),
    # reconciler
    EventKind("reconciler_run", "reconciler", Level.DEBUG, "The reconciler compared state."),
    EventKind("state_drift", "reconciler", Level.WARNING, "The reconciler corrected a drift."),
    # config
    EventKind("config_synced", "config", Level.INFO, "The Claude configuration was synced."),
    EventKind("config_materialised", "config", Level.INFO,
              "A worker wrote the synced Claude configuration into its config dir."),
)

CATALOGUE: dict[str, EventKind] = {k.type: k for k in _KINDS}
CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(k.category for k in _KINDS))


def kind(event_type: str) -> EventKind:
    """The catalogue entry for ``event_type``; raises KeyError for unknown types."""
    return CATALOGUE[event_type]


def level_rank(level: str) -> int:
    return _LEVEL_RANK[Level(level)]
