"""The typed client of parheliad: one method per RPC, grouped by service.

``Api(transport).tasks.list(statuses=["running"], limit=10)`` builds the
``ListTasksRequest``, makes the call and returns the ``ListTasksResponse``. The Click
commands (:mod:`parhelia_cli.commands`) and the MCP bridge (:mod:`parhelia_cli.mcp_server`)
both call the daemon only through here, so each request is built in one place and mypy
checks every call site against the generated stubs (``parhelia/v1/*_pb2.pyi``). The
model is tailscale's ``client/local`` (a method per local API call, shared by the CLI)
and the typed service wrappers of temporalio's Python SDK (generated code kept behind
them).

The generated modules are imported for type checking only, and inside each method when
it runs, so importing this module costs nothing (``parhelia --help`` never loads grpc or
protobuf). Words cross here: status words (:mod:`parhelia.statuses`) become enum numbers;
``None`` for an optional argument is the proto's "unset" (``""`` / ``0``).

The transport is :class:`parhelia_cli.client.Client` (one connection, errors mapped to
:class:`~parhelia_cli.errors.CliError`) or the MCP bridge's reconnecting wrapper of it.
Reads are marked ``idempotent``: a transport may try them again after a reconnect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from parhelia import statuses

if TYPE_CHECKING:
    from parhelia.v1 import (
        budget_pb2,
        checkpoints_pb2,
        common_pb2,
        config_pb2,
        containers_pb2,
        environments_pb2,
        events_pb2,
        reconciler_pb2,
        sessions_pb2,
        system_pb2,
        tasks_pb2,
    )

_T_co = TypeVar("_T_co", covariant=True)


class Stream(Protocol[_T_co]):
    """A server stream: iterate it; ``close()`` (or ``contextlib.closing``) cancels the
    call, from any thread (an iteration blocked in another thread then ends)."""

    def __iter__(self) -> Iterator[_T_co]: ...

    def __next__(self) -> _T_co: ...

    def close(self) -> None: ...


Progress = Callable[[Any], None]
"""Hears each ``OperationProgress`` of a long call while it runs (rollback, pull, sync)."""

DEFAULT_TIMEOUT = 60.0
"""Seconds a unary call may take (checkpoint and reconciler work gets longer)."""
LONG_TIMEOUT = 300.0
TERMINATE_TIMEOUT = 120.0
MODE_CHANGE_TIMEOUT = 180.0
"""An attach that takes a session over, or a release, waits for the worker to switch."""


class Transport(Protocol):
    """What :class:`Api` needs of a connection (``service`` is a key of
    :data:`parhelia_cli.calls.STUBS`: ``tasks``, ``events``...)."""

    def call(self, service: str, method: str, request: Any, *,
             timeout: float | None = DEFAULT_TIMEOUT, idempotent: bool = False,
             on_progress: Progress | None = None) -> Any: ...

    def stream(self, service: str, method: str, request: Any) -> Stream[Any]: ...


# --- message builders shared by the services (and the commands that show them) -------------

def task_options(*, gpu: str | None = None, cpu: float | None = None,
                 memory_mb: int | None = None, timeout_seconds: int | None = None,
                 max_turns: int | None = None, max_cost_micros: int | None = None,
                 model: str | None = None, permission_mode: str | None = None,
                 backend: str | None = None, interactive: bool = False
                 ) -> common_pb2.TaskOptions:
    """The ``TaskOptions`` of validated values (None = the daemon's default)."""
    from parhelia.v1 import common_pb2

    return common_pb2.TaskOptions(
        gpu=gpu or "", cpu=cpu or 0.0, memory_mb=memory_mb or 0,
        timeout_seconds=timeout_seconds or 0, max_turns=max_turns or 0,
        max_cost_micros=max_cost_micros or 0, model=model or "",
        permission_mode=permission_mode or "", backend=backend or "",
        interactive=interactive)


def event_filter(*, types: Iterable[str] = (), min_level: str | None = None,
                 since: datetime | None = None, until: datetime | None = None,
                 task_id: str | None = None, session_id: str | None = None,
                 container_id: str | None = None, after_id: int = 0
                 ) -> common_pb2.EventFilter:
    """The ``EventFilter`` of these criteria (the daemon validates them: E101)."""
    from parhelia.v1 import common_pb2

    f = common_pb2.EventFilter(
        types=list(types), min_level=(min_level or "").lower(), task_id=task_id or "",
        session_id=session_id or "", container_id=container_id or "", after_id=after_id)
    if since is not None:
        f.since.FromDatetime(since)
    if until is not None:
        f.until.FromDatetime(until)
    return f


def _numbers(kind: statuses.Vocabulary, enum: Any, words: Iterable[str] | None) -> Any:
    """Status words -> the generated enum's numbers (ValueError for a word not in ``kind``)."""
    return [enum.Value(statuses.proto_name(kind, w)) for w in words or ()]


class _Service:
    name: ClassVar[str]

    def __init__(self, transport: Transport, timeout: float | None) -> None:
        self._t = transport
        self._timeout = timeout

    def _call(self, method: str, request: Any, *, timeout: float | None = None,
              idempotent: bool = False, on_progress: Progress | None = None) -> Any:
        return self._t.call(self.name, method, request, idempotent=idempotent,
                            timeout=self._timeout if timeout is None else timeout,
                            on_progress=on_progress)

    def _read(self, method: str, request: Any) -> Any:
        return self._call(method, request, idempotent=True)

    def _stream(self, method: str, request: Any) -> Stream[Any]:
        return self._t.stream(self.name, method, request)


class SystemApi(_Service):
    name = "system"

    def version(self, client_version: str = "") -> system_pb2.GetVersionResponse:
        from parhelia.v1 import system_pb2

        return self._read("GetVersion", system_pb2.GetVersionRequest(
            client_version=client_version))

    def status(self) -> system_pb2.GetStatusResponse:
        from parhelia.v1 import system_pb2

        return self._read("GetStatus", system_pb2.GetStatusRequest())

    def shutdown(self, *, timeout: float | None = 10) -> system_pb2.ShutdownResponse:
        from parhelia.v1 import system_pb2

        return self._call("Shutdown", system_pb2.ShutdownRequest(), timeout=timeout)

    def doctor(self, *, check_modal: bool = False, on_progress: Progress | None = None
               ) -> system_pb2.DoctorResponse:
        from parhelia.v1 import system_pb2

        return self._call("Doctor", system_pb2.DoctorRequest(check_modal=check_modal),
                          idempotent=True, on_progress=on_progress)

    def watch_operation(self, operation_id: str) -> Stream[system_pb2.OperationProgress]:
        """The progress of a long call tagged with ``operation_id`` (the transport follows
        it for ``on_progress``; see :meth:`parhelia_cli.client.Client.call`)."""
        from parhelia.v1 import system_pb2

        return self._stream("WatchOperation", system_pb2.WatchOperationRequest(
            operation_id=operation_id))

    def github_credential(self, host: str = "") -> system_pb2.GetGitHubCredentialResponse:
        """Which GitHub token the daemon would use for ``host`` (github.com by default)."""
        from parhelia.v1 import system_pb2

        return self._read("GetGitHubCredential",
                          system_pb2.GetGitHubCredentialRequest(host=host))


class ConfigApi(_Service):
    name = "config"

    def get(self, project_dir: str = "") -> config_pb2.GetConfigResponse:
        from parhelia.v1 import config_pb2

        return self._read("GetConfig", config_pb2.GetConfigRequest(project_dir=project_dir))

    def sync(self, *, dry_run: bool = False, on_progress: Progress | None = None
             ) -> config_pb2.SyncConfigResponse:
        from parhelia.v1 import config_pb2

        return self._call("SyncConfig", config_pb2.SyncConfigRequest(dry_run=dry_run),
                          on_progress=on_progress)

    def reload(self) -> config_pb2.ReloadConfigResponse:
        from parhelia.v1 import config_pb2

        return self._call("ReloadConfig", config_pb2.ReloadConfigRequest())


class TasksApi(_Service):
    name = "tasks"

    def upload_workspace(self, path: str, *, include_secret_files: Iterable[str] = (),
                         conversation_uuid: str = "", claude_config_dir: str = "",
                         cwd: str = "") -> Stream[tasks_pb2.UploadWorkspaceProgress]:
        """Checkpoint zero from ``path``; with ``conversation_uuid`` a local Claude Code
        conversation (under ``claude_config_dir``, recorded for ``cwd``) goes with it."""
        from parhelia.v1 import tasks_pb2

        return self._stream("UploadWorkspace", tasks_pb2.UploadWorkspaceRequest(
            path=path, include_secret_files=list(include_secret_files),
            conversation_uuid=conversation_uuid, claude_config_dir=claude_config_dir,
            cwd=cwd))

    def create(self, prompt: str, options: common_pb2.TaskOptions, *,
               workspace_id: str = "", repo_url: str = "", repo_ref: str = "",
               no_dispatch: bool = False, workspace_path: str = "", base_commit: str = "",
               trust_project_config: bool = False, notify: str = "", open_pr: bool = False,
               validate_only: bool = False) -> tasks_pb2.CreateTaskResponse:
        """``notify``: "" (the daemon's [notify] config), "on" or "off"; ``open_pr``: a
        pull request is opened when the task completes with changes. ``validate_only``:
        every check, nothing created (before an upload)."""
        from parhelia.v1 import common_pb2, tasks_pb2

        source = common_pb2.TaskSource(workspace_id=workspace_id, repo_url=repo_url,
                                       repo_ref=repo_ref)
        return self._call("CreateTask", tasks_pb2.CreateTaskRequest(
            prompt=prompt, options=options, source=source, no_dispatch=no_dispatch,
            workspace_path=workspace_path, base_commit=base_commit,
            trust_project_config=trust_project_config, notify=notify, open_pr=open_pr,
            validate_only=validate_only))

    def estimate(self, options: common_pb2.TaskOptions) -> tasks_pb2.EstimateTaskResponse:
        from parhelia.v1 import tasks_pb2

        return self._read("EstimateTask", tasks_pb2.EstimateTaskRequest(options=options))

    def list(self, *, statuses: Iterable[str] | None = None, limit: int | None = None,
             page_token: str = "") -> tasks_pb2.ListTasksResponse:
        """Newest first; ``statuses`` are words (``running``...); ``page_token``: the
        ``next_page_token`` of the previous page."""
        from parhelia.v1 import common_pb2, tasks_pb2

        request = tasks_pb2.ListTasksRequest(
            statuses=_numbers(_TaskStatus, common_pb2.TaskStatus, statuses),
            limit=limit or 0, page_token=page_token)
        return self._read("ListTasks", request)

    def get(self, task_id: str) -> common_pb2.Task:
        from parhelia.v1 import tasks_pb2

        return self._read("GetTask", tasks_pb2.GetTaskRequest(task_id=task_id))

    def cancel(self, task_id: str, *, grace_seconds: int | None = None) -> common_pb2.Task:
        from parhelia.v1 import tasks_pb2

        return self._call("CancelTask", tasks_pb2.CancelTaskRequest(
            task_id=task_id, grace_seconds=grace_seconds or 0))

    def delete(self, task_id: str, *, force: bool = False) -> tasks_pb2.DeleteTaskResponse:
        from parhelia.v1 import tasks_pb2

        return self._call("DeleteTask", tasks_pb2.DeleteTaskRequest(task_id=task_id,
                                                                     force=force))

    def retry(self, task_id: str, options: common_pb2.TaskOptions | None = None
              ) -> common_pb2.Task:
        from parhelia.v1 import tasks_pb2

        return self._call("RetryTask", tasks_pb2.RetryTaskRequest(task_id=task_id,
                                                                   options=options))

    def dispatch(self, task_ids: Iterable[str] = ()) -> tasks_pb2.DispatchTasksResponse:
        from parhelia.v1 import tasks_pb2

        return self._call("DispatchTasks", tasks_pb2.DispatchTasksRequest(
            task_ids=list(task_ids)))

    def watch(self, task_id: str) -> Stream[tasks_pb2.TaskProgress]:
        from parhelia.v1 import tasks_pb2

        return self._stream("WatchTask", tasks_pb2.WatchTaskRequest(task_id=task_id))

    def watch_all(self, *, recent: int = 0) -> Stream[tasks_pb2.TaskProgress]:
        """Every unfinished task and the newest ``recent`` finished ones, a
        ``snapshot_done`` marker, then an update per event of any task (`parhelia top`)."""
        from parhelia.v1 import tasks_pb2

        return self._stream("WatchAllTasks", tasks_pb2.WatchAllTasksRequest(recent=recent))

    def logs(self, task_id: str, *, follow: bool = False, offset: int = 0,
             setup: bool = False) -> Stream[tasks_pb2.LogChunk]:
        """``setup``: the environment's setup and start output instead of the agent's."""
        from parhelia.v1 import tasks_pb2

        return self._stream("GetTaskLogs", tasks_pb2.GetTaskLogsRequest(
            task_id=task_id, follow=follow, offset=offset, setup=setup))

    def diff(self, task_id: str, *, stat_only: bool = False, against: str = ""
             ) -> tasks_pb2.GetTaskDiffResponse:
        """``against``: "" or "upload" (the workspace as uploaded), "base" (its commit)."""
        from parhelia.v1 import tasks_pb2

        return self._read("GetTaskDiff", tasks_pb2.GetTaskDiffRequest(
            task_id=task_id, stat_only=stat_only, against=against))

    def pull(self, task_id: str, *, branch: str = "", patch_path: str = "",
             repo_path: str = "", force: bool = False, on_progress: Progress | None = None
             ) -> tasks_pb2.PullTaskResponse:
        """A branch (default ``parhelia/<task id>``) or, with ``patch_path``, a patch file;
        the daemon never touches the working tree."""
        from parhelia.v1 import tasks_pb2

        return self._call("PullTask", tasks_pb2.PullTaskRequest(
            task_id=task_id, branch=branch, patch_path=patch_path, repo_path=repo_path,
            force=force), on_progress=on_progress)

    def pr(self, task_id: str, *, base: str = "", title: str = "", branch: str = "",
           draft: bool | None = None, on_progress: Progress | None = None
           ) -> tasks_pb2.OpenPullRequestResponse:
        """Push the task's branch from the daemon's side and open (or update) its pull
        request; ``draft`` None: the daemon's ``github.draft``."""
        from parhelia.v1 import tasks_pb2

        return self._call("OpenPullRequest", tasks_pb2.OpenPullRequestRequest(
            task_id=task_id, base=base, title=title, branch=branch,
            draft="" if draft is None else ("draft" if draft else "ready")),
            timeout=LONG_TIMEOUT, on_progress=on_progress)


class EventsApi(_Service):
    name = "events"

    def list(self, flt: common_pb2.EventFilter | None = None, *, limit: int | None = None,
             page_token: str = "") -> events_pb2.ListEventsResponse:
        """The newest ``limit`` matching events (the daemon's default 50), oldest first;
        ``page_token``: the previous page's ``next_page_token`` (the events before it)."""
        from parhelia.v1 import events_pb2

        return self._read("ListEvents", events_pb2.ListEventsRequest(
            filter=flt, limit=limit or 0, page_token=page_token))

    def watch(self, flt: common_pb2.EventFilter | None = None, *, backlog: int = 0
              ) -> Stream[common_pb2.Event]:
        from parhelia.v1 import events_pb2

        return self._stream("WatchEvents", events_pb2.WatchEventsRequest(filter=flt,
                                                                          backlog=backlog))

    def export(self, flt: common_pb2.EventFilter | None = None
               ) -> Stream[common_pb2.Event]:
        """Every matching event, oldest first (then the stream ends)."""
        from parhelia.v1 import events_pb2

        return self._stream("ExportEvents", events_pb2.ExportEventsRequest(filter=flt))

    def replay(self, container_id: str, *, from_start: bool = False,
               since: datetime | None = None) -> Stream[common_pb2.Event]:
        """A container's (or a task's current container's) history, in commit order."""
        from parhelia.v1 import events_pb2

        return self._stream("ReplayEvents", events_pb2.ReplayEventsRequest(
            container_id=container_id, from_start=from_start,
            filter=event_filter(since=since)))


class SessionsApi(_Service):
    name = "sessions"

    def list(self, *, include_finished: bool = False, limit: int | None = None,
             page_token: str = "") -> sessions_pb2.ListSessionsResponse:
        from parhelia.v1 import sessions_pb2

        return self._read("ListSessions", sessions_pb2.ListSessionsRequest(
            all=include_finished, limit=limit or 0, page_token=page_token))

    def get(self, session_id: str) -> common_pb2.Session:
        from parhelia.v1 import sessions_pb2

        return self._read("GetSession", sessions_pb2.GetSessionRequest(session_id=session_id))

    def kill(self, session_id: str) -> common_pb2.Session:
        from parhelia.v1 import sessions_pb2

        return self._call("KillSession", sessions_pb2.KillSessionRequest(
            session_id=session_id))

    def resume(self, session_id: str, *, checkpoint_id: str | None = None
               ) -> common_pb2.Task:
        from parhelia.v1 import sessions_pb2

        return self._call("ResumeSession", sessions_pb2.ResumeSessionRequest(
            session_id=session_id, checkpoint_id=checkpoint_id or ""))

    def recover(self, session_id: str, *, action: str = "", checkpoint_id: str | None = None
                ) -> sessions_pb2.RecoverSessionResponse:
        """``action`` "" describes the choices; resume | restart | wait acts."""
        from parhelia.v1 import sessions_pb2

        return self._call("RecoverSession", sessions_pb2.RecoverSessionRequest(
            session_id=session_id, action=action, checkpoint_id=checkpoint_id or ""))

    def attach(self, session_id: str, *, take_over: bool = False
               ) -> sessions_pb2.AttachSessionResponse:
        """How to attach to an interactive session (``take_over``: a headless one is
        taken over first, waiting for the worker to switch)."""
        from parhelia.v1 import sessions_pb2

        return self._call("AttachSession", sessions_pb2.AttachSessionRequest(
            session_id=session_id, take_over=take_over), timeout=MODE_CHANGE_TIMEOUT,
            idempotent=not take_over)

    def release(self, session_id: str, *, instruction: str = "") -> common_pb2.Session:
        """Hand an interactive session back to a headless agent (``instruction``: what it
        does next; "" carries on)."""
        from parhelia.v1 import sessions_pb2

        return self._call("ReleaseSession", sessions_pb2.ReleaseSessionRequest(
            session_id=session_id, instruction=instruction), timeout=MODE_CHANGE_TIMEOUT)

    def attach_terminal(self, inputs: Iterable[sessions_pb2.TerminalInput]
                        ) -> Stream[sessions_pb2.TerminalOutput]:
        """The terminal relayed through the daemon (Modal): ``inputs`` (the first names
        the session and the window size; then keys and resizes) in, the bytes out."""
        return self._stream("AttachTerminal", iter(inputs))

    def ssh_session(self, session_id: str) -> sessions_pb2.SshSessionResponse:
        """`session attach --ssh`: the ssh argv, the pinned host key's fingerprint and the
        tunnel's address (called again to reconnect: the tunnel may have moved)."""
        from parhelia.v1 import sessions_pb2

        return self._read("SshSession", sessions_pb2.SshSessionRequest(session_id=session_id))

    def pull(self, session_id: str, directory: str, *, claude_config_dir: str,
             checkpoint_id: str | None = None, on_progress: Progress | None = None
             ) -> sessions_pb2.PullSessionResponse:
        """Take a session home: a checkpoint's workspace into the new ``directory`` and
        its conversation under ``claude_config_dir`` (both absolute)."""
        from parhelia.v1 import sessions_pb2

        return self._call("PullSession", sessions_pb2.PullSessionRequest(
            session_id=session_id, directory=directory, claude_config_dir=claude_config_dir,
            checkpoint_id=checkpoint_id or ""), on_progress=on_progress)


class CheckpointsApi(_Service):
    name = "checkpoints"

    def create(self, session_id: str, *, message: str = "") -> common_pb2.Checkpoint:
        from parhelia.v1 import checkpoints_pb2

        return self._call("CreateCheckpoint", checkpoints_pb2.CreateCheckpointRequest(
            session_id=session_id, message=message), timeout=LONG_TIMEOUT)

    def list(self, *, session_id: str | None = None, limit: int | None = None,
             page_token: str = "") -> checkpoints_pb2.ListCheckpointsResponse:
        from parhelia.v1 import checkpoints_pb2

        return self._read("ListCheckpoints", checkpoints_pb2.ListCheckpointsRequest(
            session_id=session_id or "", limit=limit or 0, page_token=page_token))

    def get(self, checkpoint_id: str) -> checkpoints_pb2.GetCheckpointResponse:
        from parhelia.v1 import checkpoints_pb2

        return self._read("GetCheckpoint", checkpoints_pb2.GetCheckpointRequest(
            checkpoint_id=checkpoint_id))

    def diff(self, from_checkpoint_id: str, to_checkpoint_id: str = "", *,
             files: bool = False, conversation: bool = False
             ) -> checkpoints_pb2.DiffCheckpointsResponse:
        """``to_checkpoint_id`` "" compares with the session's latest checkpoint."""
        from parhelia.v1 import checkpoints_pb2

        return self._call("DiffCheckpoints", checkpoints_pb2.DiffCheckpointsRequest(
            from_checkpoint_id=from_checkpoint_id, to_checkpoint_id=to_checkpoint_id,
            files=files, conversation=conversation))

    def rollback(self, checkpoint_id: str, *, on_progress: Progress | None = None
                 ) -> checkpoints_pb2.RollbackCheckpointResponse:
        from parhelia.v1 import checkpoints_pb2

        return self._call("RollbackCheckpoint", checkpoints_pb2.RollbackCheckpointRequest(
            checkpoint_id=checkpoint_id), timeout=LONG_TIMEOUT, on_progress=on_progress)

    def verify(self, checkpoint_id: str) -> checkpoints_pb2.VerifyCheckpointResponse:
        from parhelia.v1 import checkpoints_pb2

        return self._read("VerifyCheckpoint", checkpoints_pb2.VerifyCheckpointRequest(
            checkpoint_id=checkpoint_id))

    def gc(self, *, dry_run: bool = False) -> checkpoints_pb2.GcCheckpointsResponse:
        from parhelia.v1 import checkpoints_pb2

        return self._call("GcCheckpoints", checkpoints_pb2.GcCheckpointsRequest(
            dry_run=dry_run))


class ContainersApi(_Service):
    name = "containers"

    def list(self, *, states: Iterable[str] | None = None,
             health: Iterable[str] | None = None, task_id: str | None = None,
             limit: int | None = None, page_token: str = ""
             ) -> containers_pb2.ListContainersResponse:
        """Newest first; ``states`` and ``health`` are words (``running``, ``dead``...)."""
        from parhelia.v1 import common_pb2, containers_pb2

        return self._read("ListContainers", containers_pb2.ListContainersRequest(
            states=_numbers(_ContainerState, common_pb2.ContainerState, states),
            health=_numbers(_Health, common_pb2.Health, health), task_id=task_id or "",
            limit=limit or 0, page_token=page_token))

    def get(self, container_id: str) -> containers_pb2.GetContainerResponse:
        from parhelia.v1 import containers_pb2

        return self._read("GetContainer", containers_pb2.GetContainerRequest(
            container_id=container_id))

    def health_summary(self) -> containers_pb2.HealthSummaryResponse:
        from parhelia.v1 import containers_pb2

        return self._read("GetHealthSummary", containers_pb2.GetHealthSummaryRequest())

    def watch(self, *, states: Iterable[str] | None = None
              ) -> Stream[containers_pb2.ContainerUpdate]:
        from parhelia.v1 import common_pb2, containers_pb2

        return self._stream("WatchContainers", containers_pb2.WatchContainersRequest(
            states=_numbers(_ContainerState, common_pb2.ContainerState, states)))

    def terminate(self, container_id: str) -> common_pb2.Container:
        from parhelia.v1 import containers_pb2

        return self._call("TerminateContainer", containers_pb2.TerminateContainerRequest(
            container_id=container_id), timeout=TERMINATE_TIMEOUT)


class BudgetApi(_Service):
    name = "budget"

    def get(self) -> budget_pb2.BudgetStatus:
        from parhelia.v1 import budget_pb2

        return self._read("GetBudget", budget_pb2.GetBudgetRequest())

    def history(self, *, by: str = "day", since: datetime | None = None
                ) -> budget_pb2.BudgetHistory:
        """``by``: day | task."""
        from parhelia.v1 import budget_pb2

        request = budget_pb2.GetBudgetHistoryRequest(by=by)
        if since is not None:
            request.since.FromDatetime(since)
        return self._read("GetHistory", request)

    def set_ceiling(self, amount_usd: str, *, agent: bool = False) -> budget_pb2.BudgetStatus:
        """``amount_usd``: a decimal string (the daemon validates it: E101). ``agent``: the
        MCP bridge asks for an agent (capped: ``budget.agent_max_ceiling_usd``, E403)."""
        from parhelia.v1 import budget_pb2

        return self._call("SetCeiling", budget_pb2.SetCeilingRequest(amount_usd=amount_usd,
                                                                      agent=agent))

    def ledger(self, *, task_id: str | None = None, limit: int | None = None,
               page_token: str = "") -> budget_pb2.ListLedgerResponse:
        from parhelia.v1 import budget_pb2

        return self._read("ListLedger", budget_pb2.ListLedgerRequest(
            task_id=task_id or "", limit=limit or 0, page_token=page_token))


class ReconcilerApi(_Service):
    name = "reconciler"

    def status(self) -> reconciler_pb2.ReconcilerStatus:
        from parhelia.v1 import reconciler_pb2

        return self._read("GetStatus", reconciler_pb2.GetReconcilerStatusRequest())

    def run(self) -> reconciler_pb2.ReconcileReport:
        from parhelia.v1 import reconciler_pb2

        return self._call("Run", reconciler_pb2.RunReconcilerRequest(), timeout=LONG_TIMEOUT)

    def cleanup(self, *, terminate: bool = False) -> reconciler_pb2.CleanupResponse:
        """``terminate`` False is a dry run: the orphans found, nothing stopped."""
        from parhelia.v1 import reconciler_pb2

        return self._call("Cleanup", reconciler_pb2.CleanupRequest(terminate=terminate),
                          timeout=LONG_TIMEOUT)


class EnvironmentsApi(_Service):
    name = "environments"

    def show(self, path: str, *, gpu: bool = False, trust_project_config: bool = False,
             backend: str = "") -> environments_pb2.EnvironmentView:
        from parhelia.v1 import environments_pb2

        return self._read("ShowEnvironment", environments_pb2.ShowEnvironmentRequest(
            path=path, gpu=gpu, trust_project_config=trust_project_config, backend=backend))

    def build(self, path: str, *, gpu: bool = False, trust_project_config: bool = False,
              backend: str = "") -> Stream[environments_pb2.BuildProgress]:
        from parhelia.v1 import environments_pb2

        return self._stream("BuildEnvironment", environments_pb2.BuildEnvironmentRequest(
            path=path, gpu=gpu, trust_project_config=trust_project_config, backend=backend))

    def list(self) -> environments_pb2.ListEnvironmentsResponse:
        from parhelia.v1 import environments_pb2

        return self._read("ListEnvironments", environments_pb2.ListEnvironmentsRequest())

    def prune(self, *, older_than_hours: float = 0.0, everything: bool = False,
              dry_run: bool = False) -> environments_pb2.PruneEnvironmentsResponse:
        from parhelia.v1 import environments_pb2

        return self._call("PruneEnvironments", environments_pb2.PruneEnvironmentsRequest(
            older_than_hours=older_than_hours, all=everything, dry_run=dry_run),
            timeout=LONG_TIMEOUT)


# Aliases for the vocabularies: the services above define methods named ``list``.
_TaskStatus = statuses.TaskStatus
_ContainerState = statuses.ContainerState
_Health = statuses.Health


class Api:
    """parheliad's services over one transport: ``api.tasks.get(id)``..."""

    def __init__(self, transport: Transport, *, timeout: float | None = DEFAULT_TIMEOUT
                 ) -> None:
        """``timeout``: the seconds a unary call may take unless its method says longer
        (checkpoints, the reconciler, a termination)."""
        self.transport = transport
        self.system = SystemApi(transport, timeout)
        self.config = ConfigApi(transport, timeout)
        self.tasks = TasksApi(transport, timeout)
        self.events = EventsApi(transport, timeout)
        self.sessions = SessionsApi(transport, timeout)
        self.checkpoints = CheckpointsApi(transport, timeout)
        self.containers = ContainersApi(transport, timeout)
        self.budget = BudgetApi(transport, timeout)
        self.reconciler = ReconcilerApi(transport, timeout)
        self.environments = EnvironmentsApi(transport, timeout)
