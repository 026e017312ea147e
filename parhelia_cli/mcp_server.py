"""``parhelia mcp-server``: Parhelia's tools for MCP clients, over stdio.

Every tool makes the same gRPC call(s) as the matching CLI command, through the typed
client :mod:`parhelia_cli.api` over :mod:`parhelia_cli.client` (socket resolution,
autostart, version check, error mapping), and returns the same snake_case dict that
command prints with ``--json`` (:mod:`parhelia_cli.convert`). Expected failures become
``ToolError`` with the E-code (``E201 TASK_NOT_FOUND: ...``): the client sees
``isError``. Nothing is written to stdout but the protocol; logs go to stderr.
See docs/adr/0012-mcp-bridge.md.

This module imports the ``mcp`` SDK at the top: only the ``mcp-server`` command
(:mod:`parhelia_cli.commands.mcp`) imports it, so the rest of the CLI stays fast.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import threading
from collections import deque
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import click
from mcp import types as mcp_types
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.server.subscriptions import ListenHandler, ResourceUpdated
from mcp.shared.dispatcher import coerce_request_id
from mcp.shared.exceptions import MCPError as McpError
from mcp.shared.jsonrpc_dispatcher import cancelled_request_id_from_params
from mcp.types import ToolAnnotations
from pydantic import Field, ValidationError

from parhelia import __version__, gpus, statuses
from parhelia import events as event_catalogue
from parhelia.backends import Backend
from parhelia.limits import MAX_PROMPT_CHARS
from parhelia.permissions import PermissionMode
from parhelia_cli import durations, params, views
from parhelia_cli import mcp_events as live
from parhelia_cli.api import DEFAULT_TIMEOUT, Api, Progress, Stream, task_options
from parhelia_cli.client import Client
from parhelia_cli.convert import task_dict, to_dict, with_related
from parhelia_cli.errors import CliError, invalid, missing

log = logging.getLogger("parhelia.mcp")

# The choices of the CLI as Literal types, so the input schemas carry them as enums:
# Backend and PermissionMode come from the contract package (parhelia.backends,
# parhelia.permissions). Status words are the contract's enums (parhelia.statuses):
# pydantic validates them and the schemas list them.
Level = Literal["debug", "info", "warning", "error"]

LOG_LINES_MAX = 2000
LOG_BYTES_MAX = 1 << 20
PATCH_CHARS_MAX = 2_000_000

INSTRUCTIONS = """\
Parhelia runs Claude Code tasks in isolated local workers or Modal sandboxes, checkpointed,
resumable and budget-capped; results come back as a branch or patch. These tools talk to
the user's parheliad daemon (started on demand). Ids (t-..., s-..., c-..., cp-...) may be
shortened to any unique prefix. A task runs asynchronously: create it, then poll
parhelia_task_show (or parhelia_events_since with the last event id you saw) until its
status is completed, failed or cancelled; parhelia_task_diff shows what it changed.
Errors carry a Parhelia code such as E201 TASK_NOT_FOUND or E300 BUDGET_EXCEEDED."""

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                       open_world_hint=False)


def _acts(*, destructive: bool, idempotent: bool = False, open_world: bool = False,
          title: str | None = None) -> ToolAnnotations:
    return ToolAnnotations(title=title, read_only_hint=False, destructive_hint=destructive,
                           idempotent_hint=idempotent, open_world_hint=open_world)


# --- parameter types (descriptions are what the model reads) -----------------------------

TaskId = Annotated[str, Field(min_length=1, max_length=200,
                              description="Task id (t-...) or any unique prefix of one.")]
SessionId = Annotated[str, Field(min_length=1, max_length=200,
                                 description="Session id (s-...) or any unique prefix.")]
ContainerId = Annotated[str, Field(min_length=1, max_length=200,
                                   description="Container id (c-...) or any unique prefix.")]
CheckpointId = Annotated[str, Field(min_length=1, max_length=200,
                                    description="Checkpoint id (cp-...) or a unique prefix.")]
EventType = Annotated[str, Field(json_schema_extra={"enum": list(event_catalogue.CATALOGUE)})]
Gpu = Annotated[str | None, Field(description=(
    f"GPU type, optionally ':N' GPUs (1-{gpus.MAX_GPUS}; runs on Modal): "
    + ", ".join(params.GPU_TYPES) + ". Omit for CPU only."))]
Cpu = Annotated[float | None, Field(gt=0, le=1024, description="Physical cores (e.g. 2).")]
Memory = Annotated[int | str | None, Field(description=(
    "Memory: an integer number of MiB (4096), or a string like '512MiB' or '16GiB'."))]
Timeout = Annotated[int | str | None, Field(description=(
    "Wall-clock limit: seconds (3600) or a string like '30m', '4h', '1h30m'."))]
MaxTurns = Annotated[int | None, Field(ge=1, le=100_000, description="Maximum agent turns.")]
MaxCost = Annotated[float | str | None, Field(description=(
    "Cost cap for this task in USD, like 2.5 or '2.50' (at most 6 decimals)."))]
Model = Annotated[str | None, Field(max_length=200, description=(
    "Claude model (default: the daemon's config, else the agent's default)."))]
Limit = Annotated[int | None, Field(ge=1, le=10_000, description=(
    "At most this many (the newest ones; the daemon's default when omitted)."))]
# The event filters, as the event tools take them.
EventTypes = Annotated[list[EventType] | None, Field(description=(
    "Only these event types (task_created, agent_result, checkpoint_created, "
    "container_lost...)."))]
MinLevel = Annotated[Level | None, Field(description="Minimum level.")]
OfTask = Annotated[str | None, Field(description="Only this task's events.")]
OfSession = Annotated[str | None, Field(description="Only this session's events.")]
OfContainer = Annotated[str | None, Field(description="Only this container's events.")]
PageSize = Annotated[int, Field(ge=1, le=1000, description="At most this many events per call.")]


# --- the daemon connection ----------------------------------------------------------------

class Bridge:
    """The transport of the tools' :class:`Api`: one lazily opened :class:`Client` shared
    by all tool calls (which run on worker threads). A call that finds the daemon gone
    (E504) drops the connection, so the next call reconnects and, unless autostart is
    off, starts the daemon again; an idempotent call (a read) is tried once more at
    once."""

    def __init__(self, socket: str | None, autostart: bool) -> None:
        self._socket = socket
        self._autostart = autostart
        self._lock = threading.Lock()
        self._client: Client | None = None
        self.api = Api(self)
        self.subscriptions = live.Subscriptions(self.api)
        self.notifier = live.Notifier()

    def client(self) -> Client:
        with self._lock:
            if self._client is None:
                self._client = Client.connect(self._socket, autostart=self._autostart)
            return self._client

    def forget(self, stale: Client) -> None:
        """Drop ``stale`` (the daemon went away) so the next call connects afresh."""
        with self._lock:
            if self._client is stale:
                self._client = None
        with contextlib.suppress(Exception):
            stale.close()

    def call(self, service: str, method: str, request: Any, *,
             timeout: float | None = DEFAULT_TIMEOUT, idempotent: bool = False,
             on_progress: Progress | None = None) -> Any:
        client = self.client()
        try:
            return client.call(service, method, request, timeout=timeout,
                               on_progress=on_progress)
        except CliError as exc:
            if exc.code != "E504":
                raise
            self.forget(client)
            if not idempotent:
                raise
        return self.client().call(service, method, request, timeout=timeout,
                                  on_progress=on_progress)

    def stream(self, service: str, method: str, request: Any) -> Stream[Any]:
        """A server stream whose loss of the daemon (E504) drops the connection."""
        client = self.client()
        return _Forgetting(self, client, client.stream(service, method, request))

    def close(self) -> None:
        self.subscriptions.close_all()
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


class _Forgetting:
    """A stream of ``client`` that drops it from the bridge when the daemon goes away."""

    def __init__(self, bridge: Bridge, client: Client, stream: Stream[Any]) -> None:
        self._bridge, self._client, self._stream = bridge, client, stream

    def __iter__(self) -> _Forgetting:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._stream)
        except CliError as exc:
            if exc.code == "E504":
                self._bridge.forget(self._client)
            raise

    def close(self) -> None:
        self._stream.close()


# --- argument checks shared with the CLI (parhelia_cli.params / durations) ----------------

def _check(name: str, parse: Any, value: Any) -> Any:
    try:
        return parse(value)
    except ValueError as exc:
        raise invalid(f"{name}: {exc}") from None
    except click.BadParameter as exc:
        raise invalid(f"{name}: {exc.message}") from None


def _gpu(value: str | None) -> str | None:
    return None if value is None else _check(
        "gpu", lambda v: params.GPU.convert(v, None, None), value)


def _memory(value: int | str | None) -> int | None:
    if value is None:
        return None
    return _check("memory", durations.parse_memory_mib, str(value))


def _seconds(name: str, value: int | str | None) -> int | None:
    if value is None:
        return None
    return _check(name, durations.parse_timeout, str(value))


def _usd(value: float | str | None) -> int | None:
    if value is None:
        return None
    text = format(value, "f") if isinstance(value, float) else str(value)
    return _check("max_cost_usd", durations.parse_usd_micros, text)


def _instant(name: str, value: str | None) -> Any:
    return None if value is None else _check(name, durations.parse_instant, value)


def _event_types(values: list[str] | None) -> tuple[str, ...]:
    if not values:
        return ()
    return _check("types", lambda v: params.EVENT_TYPES.convert(",".join(v), None, None), values)


def _options(gpu: str | None, cpu: float | None, memory: int | str | None,
             timeout: int | str | None, max_turns: int | None, max_cost_usd: float | str | None,
             model: str | None, permission_mode: str | None, backend: str | None) -> Any:
    return task_options(gpu=_gpu(gpu), cpu=cpu, memory_mb=_memory(memory),
                        timeout_seconds=_seconds("timeout", timeout), max_turns=max_turns,
                        max_cost_micros=_usd(max_cost_usd), model=(model or "").strip() or None,
                        permission_mode=permission_mode, backend=backend)


# --- error mapping --------------------------------------------------------------------------

def _tool_error(exc: BaseException) -> ToolError | None:
    """The ToolError a client should see for ``exc`` (None: leave it to the SDK)."""
    if isinstance(exc, CliError):
        text = str(exc) + (f" ({exc.hint})" if exc.hint else "")
        return ToolError(text)
    if isinstance(exc, ValidationError):
        problems = []
        code = "E101"
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "arguments"
            if err["type"] == "missing":
                code = "E102"
                problems.append(f"{where}: required")
            else:
                problems.append(f"{where}: {err['msg']}")
        return ToolError(str(CliError(code, "; ".join(problems))))
    return None


class ParheliaMCP(MCPServer):
    """MCPServer whose tool (and resource) failures read like the CLI's:
    ``E### NAME: message``."""

    on_read: Any = None
    """Told each URI a client reads (resource subscriptions count that as use)."""

    async def read_resource(self, uri: Any, context: Any = None) -> Any:
        try:
            result = await super().read_resource(uri, context)
        except ResourceError as exc:
            cause = exc.__cause__
            if isinstance(cause, CliError):
                kind = ResourceNotFoundError if cause.code.startswith("E2") else ResourceError
                raise kind(str(cause)) from cause
            raise
        if self.on_read is not None:
            self.on_read(str(uri))
        return result

    async def call_tool(self, name: str, arguments: dict[str, Any],
                        context: Any = None) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            mapped = _tool_error(exc.__cause__) if exc.__cause__ is not None else None
            if mapped is None:
                raise
            raise mapped from exc.__cause__


# --- the tools ---------------------------------------------------------------------------------

def build(bridge: Bridge) -> ParheliaMCP:
    """The MCP server with every Parhelia tool, calling the daemon through ``bridge``."""
    mcp = ParheliaMCP("parhelia", title="Parhelia", version=__version__,
                      instructions=INSTRUCTIONS)

    def tool(name: str, annotations: ToolAnnotations, description: str | None = None
             ) -> Any:
        def register(fn: Any) -> Any:
            # The docstring, on one line, is the description the model reads.
            text = description if description is not None else fn.__doc__ or ""
            mcp.add_tool(fn, name=name, description=" ".join(text.split()),
                         annotations=annotations, structured_output=True)
            return fn
        return register

    api = bridge.api
    subscriptions = bridge.subscriptions

    # --- tasks ---

    @tool("parhelia_task_create", _acts(destructive=False, open_world=True,
                                        title="Create a task"))
    async def task_create(
        prompt: Annotated[str, Field(max_length=MAX_PROMPT_CHARS, description=(
            "What Claude Code should do, as you would type it to Claude Code."))],
        workspace: Annotated[str | None, Field(description=(
            "Absolute path of a directory to upload as the task's workspace (git-aware: "
            "tracked and untracked-not-ignored files). Omit to start with an empty "
            "workspace; nothing is uploaded unless you give one."))] = None,
        repo: Annotated[str | None, Field(description=(
            "Clone this repository URL inside the worker instead of uploading a "
            "workspace."))] = None,
        ref: Annotated[str | None, Field(description="Branch, tag or commit of repo.")] = None,
        gpu: Gpu = None, cpu: Cpu = None, memory: Memory = None, timeout: Timeout = None,
        max_turns: MaxTurns = None, max_cost_usd: MaxCost = None, model: Model = None,
        permission_mode: Annotated[PermissionMode | None, Field(description=(
            "Claude Code permission mode (default: the daemon's config)."))] = None,
        backend: Annotated[Backend | None, Field(description=(
            "Where to run it: local worker processes or Modal (default: config)."))] = None,
        no_dispatch: Annotated[bool, Field(description=(
            "Create it pending without starting it."))] = False,
        wait: Annotated[bool, Field(description=(
            "Wait for the task to finish and return it final, with progress notifications "
            "(turns, cost) meanwhile; cancelling the call stops the wait, not the "
            "task."))] = False,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Create a Parhelia task: Claude Code runs PROMPT in an isolated worker (local
        process or Modal sandbox), checkpointed and budget-capped. Returns at once with
        the task (status pending), or with wait the finished task; otherwise poll
        parhelia_task_show or parhelia_events_stream until it is completed, failed or
        cancelled. Same as `parhelia task create [--sync] --json` (plus notices about
        credential-looking files of the workspace)."""
        if no_dispatch and wait:
            raise invalid("wait waits for a result that no_dispatch never starts")
        created = await anyio.to_thread.run_sync(functools.partial(
            _create, api, prompt, workspace=workspace, repo=repo, ref=ref,
            options=_options(gpu, cpu, memory, timeout, max_turns, max_cost_usd, model,
                             permission_mode, backend), no_dispatch=no_dispatch))
        task, notices = created
        if wait:
            task = await _wait_for(api, task["id"], ctx)
        return with_related(task, notices=notices) if notices else task

    @tool("parhelia_task_list", READ)
    def task_list(
        status: Annotated[list[statuses.TaskStatus] | None, Field(description=(
            "Only tasks in these states."))] = None,
        limit: Limit = None,
    ) -> dict[str, Any]:
        """List tasks, newest first, with status, options, usage (turns, tokens, cost) and
        result. Same as `parhelia task list --json`."""
        resp = api.tasks.list(statuses=status, limit=limit)
        return {"tasks": [task_dict(t) for t in resp.tasks]}

    @tool("parhelia_task_show", READ)
    def task_show(task_id: TaskId) -> dict[str, Any]:
        """One task: status and reason, prompt, options, source, times, session and
        container, usage (turns, tokens, api/compute/total cost), last tool and result
        (text, error code), and resume_degraded (resumes that had to start a new
        conversation). Same as `parhelia task show ID --json`."""
        return views.task_show(api, task_id)

    @tool("parhelia_task_cancel", _acts(destructive=True, idempotent=True,
                                        title="Cancel a task"))
    def task_cancel(
        task_id: TaskId,
        grace: Annotated[int | str | None, Field(description=(
            "Time the worker gets to checkpoint before it is killed: seconds or '30s', "
            "'2m' (default: the daemon's config)."))] = None,
    ) -> dict[str, Any]:
        """Cancel a task: its worker is asked to checkpoint and stop, and is killed after
        the grace period. Returns the task. Same as `parhelia task cancel ID --json`."""
        return task_dict(api.tasks.cancel(task_id, grace_seconds=_seconds("grace", grace)))

    @tool("parhelia_task_retry", _acts(destructive=False, open_world=True,
                                       title="Retry a task"))
    def task_retry(task_id: TaskId) -> dict[str, Any]:
        """Run a finished task again, in a fresh session from its checkpoint zero (the
        uploaded workspace). Returns the task. Same as `parhelia task retry ID --json`."""
        return task_dict(api.tasks.retry(task_id))

    @tool("parhelia_task_diff", READ)
    def task_diff(
        task_id: TaskId,
        stat_only: Annotated[bool, Field(description=(
            "Only the changed files and line counts, no patch."))] = False,
        max_patch_chars: Annotated[int, Field(ge=1000, le=PATCH_CHARS_MAX, description=(
            "Cut the unified diff after this many characters (patch_truncated says "
            "so)."))] = 100_000,
    ) -> dict[str, Any]:
        """What a task changed against its uploaded workspace (checkpoint zero): files
        (path, change, sizes, lines added/removed, binary) and a unified diff. Same as
        `parhelia task diff ID --json`, plus patch_truncated."""
        return _cut_patch(to_dict(api.tasks.diff(task_id, stat_only=stat_only)),
                          max_patch_chars)

    @tool("parhelia_task_pull", _acts(destructive=False, title="Bring a task's changes back"))
    def task_pull(
        task_id: TaskId,
        branch: Annotated[str | None, Field(max_length=250, description=(
            "Branch to create in the task's repository (default: parhelia/<task id>)."))
                          ] = None,
        patch_path: Annotated[str | None, Field(max_length=4096, description=(
            "Absolute path of a patch file to write instead of creating a branch."))] = None,
        repo_path: Annotated[str | None, Field(max_length=4096, description=(
            "Absolute path of the repository to create the branch in (default: the "
            "directory the task's workspace was uploaded from)."))] = None,
        force: Annotated[bool, Field(description=(
            "Replace patch_path when the file exists."))] = False,
    ) -> dict[str, Any]:
        """Bring a finished task's changes back as a new branch (or a patch file) in the
        user's repository; the working tree and the current branch are never touched.
        Same as `parhelia task pull ID --json`."""
        if branch and patch_path:
            raise invalid("branch and patch_path are alternatives; give one")
        return to_dict(api.tasks.pull(
            task_id, branch=branch or "",
            patch_path=_absolute("patch_path", patch_path) if patch_path else "",
            repo_path=_absolute("repo_path", repo_path) if repo_path else "", force=force))

    @tool("parhelia_task_logs", READ)
    def task_logs(
        task_id: TaskId,
        lines: Annotated[int, Field(ge=1, le=LOG_LINES_MAX, description=(
            "How many of the last lines to return."))] = 100,
        max_bytes: Annotated[int, Field(ge=1024, le=LOG_BYTES_MAX, description=(
            "Upper bound on the bytes returned (older lines are dropped first)."))] = 65536,
    ) -> dict[str, Any]:
        """The tail of the agent's raw output (Claude Code stream-json, one JSON object
        per line) over every container of a task, oldest line first. Bounded: at most
        `lines` lines and `max_bytes` bytes; `truncated` says whether anything older was
        left out. Like `parhelia task logs ID`, without following."""
        return _tail_logs(api, task_id, lines, max_bytes)

    # --- containers ---

    @tool("parhelia_containers", READ)
    def containers(
        state: Annotated[list[statuses.ContainerState] | None, Field(description=(
            "Only containers in these states."))] = None,
        health: Annotated[list[statuses.Health] | None, Field(description=(
            "Only containers with this health."))] = None,
        task_id: Annotated[str | None, Field(description="Only this task's containers.")
                           ] = None,
        limit: Limit = None,
    ) -> dict[str, Any]:
        """List worker containers (one per incarnation of a task), newest first: state,
        health, heartbeats, backend, resources, cost. Same as
        `parhelia container list --json`."""
        resp = api.containers.list(states=state, health=health, task_id=task_id, limit=limit)
        return {"containers": [to_dict(c) for c in resp.containers]}

    @tool("parhelia_container_terminate", _acts(destructive=True, idempotent=True,
                                                title="Terminate a container"))
    def container_terminate(container_id: ContainerId) -> dict[str, Any]:
        """Terminate a container now (its worker checkpoints first when it can). A running
        task whose container is terminated resumes in a new container from its latest
        checkpoint; parhelia_task_cancel stops a task for good. Returns the container.
        Same as `parhelia container terminate ID -y --json`."""
        return to_dict(api.containers.terminate(container_id))

    @tool("parhelia_container_show", READ)
    def container_show(container_id: ContainerId) -> dict[str, Any]:
        """One container: state and reason, health and missed heartbeats, task, session,
        incarnation, backend id, resources, times, exit code, cost, and its recent
        heartbeats (cpu, memory, disk, agent alive, usage). Same as
        `parhelia container show ID --json`."""
        return to_dict(api.containers.get(container_id))

    @tool("parhelia_container_events", READ)
    def container_events(container_id: ContainerId, limit: Limit = None) -> dict[str, Any]:
        """A container's events, oldest first (the newest `limit`, default 50). Same as
        `parhelia container events ID --json`."""
        return views.container_events(api, container_id, limit)

    # --- events ---

    @tool("parhelia_events_list", READ)
    def events_list(
        types: EventTypes = None,
        level: MinLevel = None,
        since: Annotated[str | None, Field(description=(
            "From: a duration ago ('30m', '2d', '1w') or an RFC 3339 timestamp."))] = None,
        until: Annotated[str | None, Field(description=(
            "Until: a duration ago or an RFC 3339 timestamp."))] = None,
        task_id: OfTask = None,
        session_id: OfSession = None,
        container_id: OfContainer = None,
        limit: Limit = None,
    ) -> dict[str, Any]:
        """The newest events matching the filters (default 50), returned oldest first;
        each has a global increasing id usable with parhelia_events_since. Same as
        `parhelia events list --json`."""
        from parhelia_cli.commands.events import build_filter

        flt = build_filter((_event_types(types),), level, _instant("since", since),
                           _instant("until", until), task_id, session_id, container_id)
        return {"events": [to_dict(e) for e in api.events.list(flt, limit=limit).events]}

    @tool("parhelia_events_since", READ)
    def events_since(
        after_id: Annotated[int, Field(ge=0, le=2**63 - 1, description=(
            "Return events with an id greater than this: 0 for the beginning, else the "
            "next_after_id of your previous call (or an event id you saw)."))],
        types: EventTypes = None,
        level: MinLevel = None,
        task_id: OfTask = None,
        session_id: OfSession = None,
        container_id: OfContainer = None,
        limit: PageSize = 100,
    ) -> dict[str, Any]:
        """The pull form of an event subscription (a tool call cannot stream): the
        oldest `limit` events after `after_id` that match the filters, oldest first,
        with next_after_id to pass to the next call and has_more when more are already
        there. Call it again later to receive what happened since; nothing is skipped or
        repeated. (`parhelia events watch` is the streaming form.)"""
        flt = _filter(types, level, task_id, session_id, container_id, after_id)
        return _page(*live.pull(api, flt, limit), after_id)

    @tool("parhelia_events_replay", READ)
    def events_replay(
        container_id: Annotated[str, Field(min_length=1, max_length=200, description=(
            "Container id (c-...) or prefix; a task id replays its current (or last) "
            "container."))],
        from_start: Annotated[bool, Field(description=(
            "The container's whole history (default: its newest 50 events)."))] = False,
        since: Annotated[str | None, Field(description=(
            "From: a duration ago ('30m', '2d') or an RFC 3339 timestamp."))] = None,
        limit: Annotated[int, Field(ge=1, le=10_000, description=(
            "At most this many events (the first ones of the replay)."))] = 1000,
    ) -> dict[str, Any]:
        """A container's history in commit order, each event as `parhelia events replay
        --json` prints it (one per line there, a list here), with truncated when more
        were left out."""
        if from_start and since:
            raise invalid("from_start and since contradict each other")
        found: list[dict[str, Any]] = []
        truncated = False
        with contextlib.closing(api.events.replay(
                container_id, from_start=from_start, since=_instant("since", since))) as stream:
            for event in stream:
                if len(found) == limit:
                    truncated = True
                    break
                found.append(to_dict(event))
        return {"events": found, "truncated": truncated}

    @tool("parhelia_events_subscribe", _acts(destructive=False, idempotent=False,
                                             title="Subscribe to events"))
    def events_subscribe(
        types: EventTypes = None,
        level: MinLevel = None,
        task_id: OfTask = None,
        session_id: OfSession = None,
        container_id: OfContainer = None,
    ) -> dict[str, Any]:
        """Start following the events that match these filters: the bridge keeps a live
        watch on the daemon (with a bounded buffer) and parhelia_events_stream waits on it
        for what comes next. Returns subscription_id and after_id (the newest event id
        now, the cursor to start from). Expires after 10 minutes without a
        parhelia_events_stream call; parhelia_events_unsubscribe ends it sooner."""
        flt = _filter(types, level, task_id, session_id, container_id)
        newest = api.events.list(limit=1).events
        sub = subscriptions.open(flt)
        return {"subscription_id": sub.id, "after_id": newest[-1].id if newest else 0,
                "filter": _criteria(flt), "expires_after_idle_seconds": live.IDLE_SECONDS}

    @tool("parhelia_events_stream", READ)
    def events_stream(
        after_id: Annotated[int, Field(ge=0, le=2**63 - 1, description=(
            "Return events with an id greater than this: the after_id of "
            "parhelia_events_subscribe, then the next_after_id of your previous call."))],
        subscription_id: Annotated[str | None, Field(max_length=100, description=(
            "A subscription from parhelia_events_subscribe (its filters apply); omit it "
            "to give filters here."))] = None,
        wait_seconds: Annotated[int, Field(ge=0, le=live.WAIT_MAX_SECONDS, description=(
            "When nothing is there yet, wait up to this long for the first new event."))
                                ] = 30,
        types: EventTypes = None,
        level: MinLevel = None,
        task_id: OfTask = None,
        session_id: OfSession = None,
        container_id: OfContainer = None,
        limit: PageSize = 100,
    ) -> dict[str, Any]:
        """The long-poll form of `parhelia events watch`: the oldest `limit` matching
        events after `after_id`, waiting up to `wait_seconds` when there are none yet;
        with next_after_id for the next call and has_more. Nothing is skipped or repeated
        (events are read from the daemon's log after the cursor)."""
        feed = None
        if subscription_id is not None:
            if types or level or task_id or session_id or container_id:
                raise invalid("a subscription has its filters; give subscription_id or "
                              "filters, not both")
            sub = subscriptions.get(subscription_id)
            flt, feed = live.with_cursor(sub.filter, after_id), sub.feed
        else:
            flt = _filter(types, level, task_id, session_id, container_id, after_id)
        found, more = live.long_poll(api, flt, limit, wait_seconds, feed)
        page = _page(found, more, after_id)
        if feed is not None:
            feed.discard_through(page["next_after_id"])
        return page

    @tool("parhelia_events_unsubscribe", _acts(destructive=False, idempotent=True,
                                               title="End an event subscription"))
    def events_unsubscribe(
        subscription_id: Annotated[str, Field(min_length=1, max_length=100, description=(
            "The subscription_id parhelia_events_subscribe returned."))],
    ) -> dict[str, Any]:
        """End an event subscription (its daemon watch is closed). Unknown or expired ids
        are not an error: closed says whether this call closed it."""
        return {"subscription_id": subscription_id,
                "closed": subscriptions.close(subscription_id)}

    # --- checkpoints and sessions ---

    @tool("parhelia_checkpoint_create", _acts(destructive=False,
                                              title="Checkpoint a session"))
    def checkpoint_create(
        session_id: SessionId,
        message: Annotated[str, Field(max_length=2000, description=(
            "A note to remember it by."))] = "",
    ) -> dict[str, Any]:
        """Checkpoint a session now: workspace, conversation, environment and git state
        (a running worker snapshots; a stopped session is checkpointed from its last
        state). Manual checkpoints are kept by gc. Same as
        `parhelia checkpoint create SESSION --json`."""
        return to_dict(api.checkpoints.create(session_id, message=message))

    @tool("parhelia_checkpoint_list", READ)
    def checkpoint_list(
        session_id: Annotated[str | None, Field(description=(
            "Only this session's checkpoints (default: all sessions)."))] = None,
        limit: Limit = None,
    ) -> dict[str, Any]:
        """List checkpoints, newest first: trigger, message, manual flag, stats (files,
        bytes, new bytes), git state. Same as `parhelia checkpoint list --json`."""
        resp = api.checkpoints.list(session_id=session_id, limit=limit)
        return {"checkpoints": [to_dict(c) for c in resp.checkpoints]}

    @tool("parhelia_checkpoint_rollback", _acts(destructive=True,
                                                title="Roll a session back to a checkpoint"))
    def checkpoint_rollback(checkpoint_id: CheckpointId) -> dict[str, Any]:
        """Roll a session back: restore its workspace and conversation to the checkpoint.
        A safety checkpoint of the current state is taken first (rolling back to it
        undoes this); a running session is stopped, restored and resumed. Same as
        `parhelia checkpoint rollback CP -y --json`."""
        return to_dict(api.checkpoints.rollback(checkpoint_id))

    tool("parhelia_checkpoint_restore", _acts(destructive=True,
                                              title="Roll a session back to a checkpoint"),
         description="The earlier name of parhelia_checkpoint_rollback (same call, same "
                     "answer).")(checkpoint_rollback)

    @tool("parhelia_checkpoint_diff", READ)
    def checkpoint_diff(
        from_checkpoint_id: Annotated[str, Field(min_length=1, max_length=200, description=(
            "The older checkpoint (cp-...) or a unique prefix."))],
        to_checkpoint_id: Annotated[str, Field(min_length=1, max_length=200, description=(
            "The newer checkpoint (cp-...) or a unique prefix."))],
        files: Annotated[bool, Field(description=(
            "Include the unified diff of text files."))] = False,
        conversation: Annotated[bool, Field(description=(
            "Include the conversation turns added."))] = False,
        max_patch_chars: Annotated[int, Field(ge=1000, le=PATCH_CHARS_MAX, description=(
            "Cut the unified diff after this many characters (patch_truncated says "
            "so)."))] = 100_000,
    ) -> dict[str, Any]:
        """What changed from one checkpoint to another: files added, removed and modified
        (sizes, line counts), optionally the patch and the conversation turns added. Same
        as `parhelia checkpoint diff A B --json`, plus patch_truncated."""
        return _cut_patch(to_dict(api.checkpoints.diff(
            from_checkpoint_id, to_checkpoint_id, files=files, conversation=conversation)),
            max_patch_chars)

    @tool("parhelia_session_list", READ)
    def session_list(
        include_finished: Annotated[bool, Field(description=(
            "Include the sessions of finished tasks."))] = False,
        limit: Limit = None,
    ) -> dict[str, Any]:
        """List sessions (the long-lived execution of a task: its conversation,
        checkpoints and containers), newest first; active and stopped ones unless
        include_finished. Same as `parhelia session list --json`."""
        resp = api.sessions.list(include_finished=include_finished, limit=limit)
        return {"sessions": [to_dict(s) for s in resp.sessions]}

    @tool("parhelia_session_kill", _acts(destructive=True, idempotent=True,
                                         title="Stop a session"))
    def session_kill(session_id: SessionId) -> dict[str, Any]:
        """Stop a session: its worker checkpoints and stops; the session stays resumable
        (parhelia_session_resume). Returns the session. Same as
        `parhelia session kill SESSION -y --json`."""
        return to_dict(api.sessions.kill(session_id))

    @tool("parhelia_session_resume", _acts(destructive=False, open_world=True,
                                           title="Resume a session"))
    def session_resume(
        session_id: SessionId,
        checkpoint_id: Annotated[str | None, Field(description=(
            "Resume from this checkpoint of the session (default: the latest)."))] = None,
    ) -> dict[str, Any]:
        """Continue a stopped session in a new container: workspace and conversation are
        restored from its latest (or the given) checkpoint and Claude carries on.
        Returns the task to follow. Same as `parhelia resume SESSION --json`."""
        return task_dict(api.sessions.resume(session_id, checkpoint_id=checkpoint_id))

    @tool("parhelia_session_attach_info", READ)
    def session_attach_info(session_id: SessionId) -> dict[str, Any]:
        """How a person attaches to a session's interactive Claude Code TUI: the command to
        run in their own terminal (`command`; on Modal also `ssh_command`, a real SSH
        session), whether it can work now (`attachable`, with `reason`), how many clients
        are attached and how to detach. Reads only: it never attaches or takes over a
        headless session (the command asks the person first)."""
        from parhelia_cli.commands.session import attach_info

        s = api.sessions.get(session_id)
        return attach_info(to_dict(s), api.tasks.get(s.task_id).options.backend)

    # --- budget, health, reconciler, doctor ---

    @tool("parhelia_budget_status", READ)
    def budget_status() -> dict[str, Any]:
        """The spending ceiling and where it stands: used (compute + API), reserved,
        remaining, percentage, period, tasks, tokens, warning/exceeded flags. Same as
        `parhelia budget show --json`."""
        return to_dict(api.budget.get())

    @tool("parhelia_budget_set", _acts(destructive=True, idempotent=True,
                                       title="Set the spending ceiling"))
    def budget_set(
        amount_usd: Annotated[float | str, Field(description=(
            "The new ceiling in USD, like 50 or '12.50' (at most 6 decimals)."))],
    ) -> dict[str, Any]:
        """Set the spending ceiling (kept across restarts). Raising it resumes the tasks
        the ceiling paused; lowering it below what is used pauses running tasks. Returns
        the budget as parhelia_budget_status does. Same as
        `parhelia budget set AMOUNT --json`."""
        text = format(amount_usd, "f") if isinstance(amount_usd, float) else str(amount_usd)
        return to_dict(api.budget.set_ceiling(text.strip()))

    @tool("parhelia_budget_estimate", READ)
    def budget_estimate(
        gpu: Gpu = None, cpu: Cpu = None, memory: Memory = None, timeout: Timeout = None,
        max_turns: MaxTurns = None, max_cost_usd: MaxCost = None, model: Model = None,
        backend: Annotated[Backend | None, Field(description=(
            "Where it would run (default: config)."))] = None,
    ) -> dict[str, Any]:
        """The cost range (compute + API, low and high) of a task with these options,
        with how each part was computed. Creates nothing. Same as
        `parhelia task create ... --estimate-only --json`."""
        options = _options(gpu, cpu, memory, timeout, max_turns, max_cost_usd, model, None,
                           backend)
        return to_dict(api.tasks.estimate(options))

    @tool("parhelia_health", READ)
    def health() -> dict[str, Any]:
        """The daemon's status (version, uptime, tasks by state, backends, health and
        what needs attention) and the containers' health summary (by health and state,
        orphans, those needing attention). needs_attention mirrors the exit status of
        `parhelia status`. Same as `parhelia status --json` plus
        `parhelia container health --json`."""
        status = to_dict(api.system.status())
        summary = to_dict(api.containers.health_summary())
        attention = bool(status["health"] and status["health"]["needs_attention"])
        return {"status": status, "containers": summary, "needs_attention": attention}

    @tool("parhelia_reconciler_status", READ)
    def reconciler_status() -> dict[str, Any]:
        """The reconciler (which compares the database with what the backends really run):
        its last run (when, duration, findings: lost, orphaned, state drift), next run,
        interval, and whether orphans are terminated automatically. Same as
        `parhelia reconciler status --json`."""
        return to_dict(api.reconciler.status())

    @tool("parhelia_cleanup", _acts(destructive=True, title="End orphaned containers"))
    def cleanup(
        terminate: Annotated[bool, Field(description=(
            "Terminate every orphan found (default: a dry run that only lists them)."))
                             ] = False,
    ) -> dict[str, Any]:
        """Orphaned containers (tagged as Parhelia's on a backend, unknown to the
        database) with their age and accrued cost; with terminate they are ended. A dry
        run by default. Same as `parhelia cleanup [--terminate -y] --json`."""
        return views.cleanup(api, terminate=terminate)

    @tool("parhelia_doctor", READ)
    def doctor() -> dict[str, Any]:
        """Check what Parhelia needs: the daemon, config, agent binary, credentials, disk
        and Modal; each failed check says how to fix it; ok is false when any failed. Same
        as `parhelia doctor --json` (an unreachable daemon is a failed check, not an
        error)."""
        try:
            resp = api.system.doctor()
        except CliError as exc:
            if exc.code != "E504":
                raise
            checks = [{"name": "daemon", "status": "fail", "detail": exc.message,
                       "fix": "parhelia daemon start; parhelia daemon logs"}]
        else:
            checks = [to_dict(c) for c in resp.checks]
        return {"checks": checks, "ok": all(c["status"] != "fail" for c in checks)}

    # --- resources: what a client can read, and subscribe to ---

    @mcp.resource(TASK_RESOURCE, name="task", mime_type="application/json",
                  description="A task as parhelia_task_show returns it; subscribe to be "
                              "notified (notifications/resources/updated) as it changes.")
    def task_resource(task_id: str) -> dict[str, Any]:
        return task_dict(api.tasks.get(task_id))

    @mcp.resource(EVENTS_RESOURCE, name="events", mime_type="application/json",
                  description="The newest 50 events matching the query (task_id, session_id, "
                              "container_id, types as a comma-separated list, level), oldest "
                              "first; subscribe to be notified as new ones arrive.")
    def events_resource(task_id: str | None = None, session_id: str | None = None,
                        container_id: str | None = None, types: str | None = None,
                        level: str | None = None) -> dict[str, Any]:
        flt = _resource_filter(api, f"parhelia://events?{_query(locals())}")
        return {"events": [to_dict(e) for e in api.events.list(flt).events]}

    async def subscribe(ctx: Any, params: mcp_types.SubscribeRequestParams
                        ) -> mcp_types.EmptyResult:
        uri = str(params.uri)
        if not bridge.notifier.running:
            raise McpError(mcp_types.INTERNAL_ERROR, "resource subscriptions need the "
                                                     "stdio server's notifier")
        deliver = ctx.session.send_resource_updated

        def open_it() -> None:
            subscriptions.open(_resource_filter(api, uri), uri=uri,
                               notify=lambda sub: bridge.notifier.updated(deliver, sub))

        await _as_mcp_error(open_it)
        return mcp_types.EmptyResult()

    async def unsubscribe(ctx: Any, params: mcp_types.UnsubscribeRequestParams
                          ) -> mcp_types.EmptyResult:
        await anyio.to_thread.run_sync(subscriptions.close_uri, str(params.uri))
        return mcp_types.EmptyResult()

    bus = mcp._subscriptions
    listen = ListenHandler(bus)

    async def publish(uri: str) -> None:
        await bus.publish(ResourceUpdated(uri=uri))

    async def on_listen(ctx: Any, params: mcp_types.SubscriptionsListenRequestParams) -> Any:
        """``subscriptions/listen`` (protocol 2026-07-28): the SDK's stream, with a daemon
        watch for each parhelia:// URI it names, closed when the stream ends."""
        uris = [u for u in params.notifications.resource_subscriptions or ()
                if u.startswith("parhelia://")]

        def open_all() -> list[str]:
            opened: list[str] = []
            try:
                for uri in uris:
                    opened.append(subscriptions.open(
                        _resource_filter(api, uri), uri=uri,
                        notify=lambda s: bridge.notifier.updated(publish, s)).id)
            except BaseException:
                for sub_id in opened:
                    subscriptions.close(sub_id)
                raise
            return opened

        opened: list[str] = await _as_mcp_error(open_all) if uris else []
        try:
            return await listen(ctx, params)
        finally:
            for sub_id in opened:
                subscriptions.close(sub_id)

    lowlevel = mcp._lowlevel_server
    lowlevel.add_request_handler("subscriptions/listen",
                                 mcp_types.SubscriptionsListenRequestParams, on_listen)
    lowlevel.add_request_handler("resources/subscribe", mcp_types.SubscribeRequestParams,
                                 subscribe)
    lowlevel.add_request_handler("resources/unsubscribe",
                                 mcp_types.UnsubscribeRequestParams, unsubscribe)
    mcp.on_read = subscriptions.read
    return mcp


TASK_RESOURCE = "parhelia://tasks/{task_id}"
EVENTS_RESOURCE = "parhelia://events{?task_id,session_id,container_id,types,level}"
_EVENT_QUERY_KEYS = ("task_id", "session_id", "container_id", "types", "level")


def _query(values: dict[str, Any]) -> str:
    from urllib.parse import urlencode

    return urlencode({k: values[k] for k in _EVENT_QUERY_KEYS if values.get(k)})


def _resource_filter(api: Api, uri: str) -> Any:
    """The event filter a resource URI stands for: a task's events, or the query of
    ``parhelia://events?...`` (E101 for anything else; E201 for an unknown task)."""
    from urllib.parse import parse_qs, urlsplit

    from parhelia_cli.api import event_filter

    parts = urlsplit(uri)
    if parts.scheme != "parhelia":
        raise invalid(f"uri: {uri!r} is not a parhelia:// resource")
    if parts.netloc == "tasks" and parts.path.strip("/") and not parts.query:
        return event_filter(task_id=api.tasks.get(parts.path.strip("/")).id)
    if parts.netloc != "events" or parts.path not in ("", "/"):
        raise invalid(f"uri: {uri!r} is neither parhelia://tasks/ID nor "
                      "parhelia://events?...")
    query = parse_qs(parts.query, keep_blank_values=False)
    unknown = sorted(set(query) - set(_EVENT_QUERY_KEYS))
    if unknown:
        raise invalid(f"uri: unknown query parameter(s) {', '.join(unknown)}; use "
                      + ", ".join(_EVENT_QUERY_KEYS))
    one = {k: v[-1] for k, v in query.items()}
    level = one.get("level")
    if level is not None and level not in event_catalogue.LEVELS:
        raise invalid(f"level: must be one of {', '.join(event_catalogue.LEVELS)}")
    types = _event_types([t for t in (one.get("types") or "").split(",") if t])
    return event_filter(types=types, min_level=level, task_id=one.get("task_id"),
                        session_id=one.get("session_id"),
                        container_id=one.get("container_id"))


async def _as_mcp_error(fn: Any) -> Any:
    """``fn()`` in a worker thread; a CliError becomes the JSON-RPC error a request
    handler answers with (the code's text, as tool errors carry it)."""
    try:
        return await anyio.to_thread.run_sync(fn)
    except CliError as exc:
        code = mcp_types.INVALID_PARAMS if exc.code.startswith(("E1", "E2")) else \
            mcp_types.INTERNAL_ERROR
        raise McpError(code, str(exc)) from None


def _filter(types: list[str] | None, level: str | None, task_id: str | None,
            session_id: str | None, container_id: str | None, after_id: int = 0) -> Any:
    """The EventFilter of the event tools' filters (checked as `events list` checks them)."""
    from parhelia_cli.commands.events import build_filter

    return build_filter((_event_types(types),), level, None, None, task_id, session_id,
                        container_id, after_id)


def _page(found: list[dict[str, Any]], more: bool, after_id: int) -> dict[str, Any]:
    """A page of events after a cursor: the events, the next cursor, whether more wait."""
    return {"events": found, "next_after_id": found[-1]["id"] if found else after_id,
            "has_more": more}


def _criteria(flt: Any) -> dict[str, Any]:
    """A filter as the JSON the tools take (what is set)."""
    data = to_dict(flt)
    return {k: v for k, v in data.items() if v not in (None, [], 0) and k != "after_id"}


def _cut_patch(data: dict[str, Any], max_chars: int) -> dict[str, Any]:
    """``data["patch"]`` cut after ``max_chars`` characters, and ``patch_truncated``."""
    patch = data.get("patch") or ""
    data["patch_truncated"] = len(patch) > max_chars
    if data["patch_truncated"]:
        data["patch"] = patch[:max_chars]
    return data


def _absolute(name: str, path: str) -> str:
    """A path the daemon writes to or reads: absolute (the server's current directory is
    wherever its client started it), without NUL."""
    if "\x00" in path or not os.path.isabs(path):
        raise invalid(f"{name}: {path!r} is not an absolute path")
    return path


def _create(api: Api, prompt: str, *, workspace: str | None, repo: str | None,
            ref: str | None, options: Any, no_dispatch: bool
            ) -> tuple[dict[str, Any], list[str]]:
    """``task create``'s checks and its one "upload then create" (``submit_task``): the
    created task and the upload's notices."""
    from parhelia_cli.commands.task import submit_task

    if not prompt.strip():
        raise missing("prompt: the prompt is empty; give the task something to do")
    if repo and workspace:
        raise invalid("repo clones inside the worker; it cannot be combined with workspace")
    if ref and not repo:
        raise invalid(f"ref {ref!r} needs repo")
    directory = _workspace_dir(workspace) if workspace else None
    notices: list[str] = []
    created = submit_task(api, prompt, options, directory=directory, repo=repo, ref=ref,
                          no_dispatch=no_dispatch, quiet=True, notices=notices)
    return task_dict(created), notices


async def _wait_for(api: Api, task_id: str, ctx: Context | None) -> dict[str, Any]:
    """Follow ``WatchTask`` until the task is final, sending a progress notification per
    update (turns, tokens, cost, in words); the final task. A task that waits for the
    user (it cannot fit the budget, the budget paused it) is that error (E300...), as
    for `task create --sync`. Cancelling the call closes the watch; the task runs on."""
    from parhelia_cli.commands.task import FINAL, progress_text, stuck

    stream = api.tasks.watch(task_id)
    last: dict[str, Any] | None = None
    sent = 0
    try:
        while True:
            progress = await anyio.to_thread.run_sync(next, stream, None,
                                                      abandon_on_cancel=True)
            if progress is None:
                break
            last = task_dict(progress.task)
            if stuck(last):
                raise CliError(last["status_code"] or "E300",
                               f"task {last['id']} is {last['status']}: "
                               f"{last['status_reason']}. It stays queued; "
                               "parhelia_task_show follows it")
            if ctx is not None:  # progress must grow with each notification: a count
                sent += 1
                await ctx.report_progress(sent, None,
                                          progress_text(last, progress.elapsed_seconds))
            if last["status"] in FINAL:
                break
    finally:
        stream.close()
    if last is None or last["status"] not in FINAL:
        raise CliError("E900", f"the progress stream of task {task_id} ended before it "
                               "finished; parhelia_task_show follows it")
    return last


def _workspace_dir(workspace: str) -> Path:
    """The directory to upload: absolute, existing, a directory (E101 otherwise)."""
    path = Path(_absolute("workspace", workspace))
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist"
        raise invalid(f"workspace: {workspace} {what}")
    return path


def _tail_logs(api: Api, task_id: str, lines: int, max_bytes: int) -> dict[str, Any]:
    """The last ``lines`` lines (at most ``max_bytes``) of ``GetTaskLogs``, in bounded
    memory however long the logs are."""
    kept: deque[tuple[str, bytes]] = deque()
    kept_bytes = 0
    dropped = False
    seen: list[str] = []
    partial = b""
    current = ""

    def push(container_id: str, line: bytes) -> None:
        nonlocal kept_bytes, dropped
        if len(line) > max_bytes:
            line, dropped = line[-max_bytes:], True
        kept.append((container_id, line))
        kept_bytes += len(line)
        while len(kept) > lines or kept_bytes > max_bytes:
            kept_bytes -= len(kept.popleft()[1])
            dropped = True

    # Resolve the id first: an unknown task is E201 (not "no output"), and the answer
    # names the full id.
    task_id = api.tasks.get(task_id).id
    total = 0
    with contextlib.closing(api.tasks.logs(task_id)) as stream:
        for chunk in stream:
            total += len(chunk.data)
            if chunk.container_id != current:
                if partial:
                    push(current, partial)
                partial, current = b"", chunk.container_id
                seen.append(current)
            parts = (partial + chunk.data).split(b"\n")
            partial = parts.pop()
            if len(partial) > max_bytes:  # one enormous line: keep its tail only
                partial, dropped = partial[-max_bytes:], True
            for part in parts:
                push(current, part)
    if partial:
        push(current, partial)
    return {"task_id": task_id, "containers": seen, "bytes_total": total,
            "truncated": dropped,
            "lines": [{"container_id": c, "text": line.decode("utf-8", "replace")}
                      for c, line in kept]}


def serve(socket: str | None, autostart: bool, log_level: str = "warning") -> None:
    """Run the stdio server until the client closes stdin."""
    logging.basicConfig(stream=sys.stderr, level=log_level.upper(),
                        format="parhelia mcp-server %(levelname)s %(name)s: %(message)s")
    bridge = Bridge(socket, autostart)
    server = build(bridge)
    if sys.stdin.isatty():
        print("parhelia mcp-server speaks MCP on stdin/stdout; start it from an MCP client "
              "(e.g. `claude mcp add parhelia -- parhelia mcp-server`). Ctrl-D ends it.",
              file=sys.stderr)
    try:


        anyio.run(_serve_stdio, server, bridge.notifier)
    finally:
        bridge.close()


def malformed_reply(exc: Exception) -> Any:
    """The JSON-RPC error answering a line that is not a JSON-RPC message: -32700 (parse
    error, id null) when it is not JSON, -32600 (invalid request, with its id when it has
    a usable one) when it is JSON of the wrong shape."""
    import mcp_types as t
    from pydantic import ValidationError

    errors = exc.errors() if isinstance(exc, ValidationError) else []
    if not errors or any(e.get("type") == "json_invalid" for e in errors):
        return t.JSONRPCError(jsonrpc="2.0", id=None, error=t.ErrorData(
            code=t.PARSE_ERROR, message="Parse error: the line is not valid JSON"))
    given = next((e["input"] for e in errors if isinstance(e.get("input"), dict)), None)
    rid = given.get("id") if given is not None else None
    if isinstance(rid, bool) or not isinstance(rid, int | str):
        rid = None
    return t.JSONRPCError(jsonrpc="2.0", id=rid, error=t.ErrorData(
        code=t.INVALID_REQUEST,
        message="Invalid Request: not a JSON-RPC 2.0 request, notification or response "
                "(batches are not supported)"))


ENDLESS_METHODS = frozenset({"subscriptions/listen"})
"""Requests that never end on their own: at stdin's EOF they are stopped, not awaited."""


class Unanswered:
    """The requests a client sent that have no answer yet (the ids, as the SDK correlates
    them), so that at stdin's EOF the server finishes them instead of cancelling them."""

    def __init__(self) -> None:
        self._ids: set[mcp_types.RequestId] = set()
        self._drained: anyio.Event | None = None

    def received(self, message: mcp_types.JSONRPCMessage) -> None:
        if isinstance(message, mcp_types.JSONRPCRequest):
            if message.method not in ENDLESS_METHODS:
                self._ids.add(coerce_request_id(message.id))
        elif (isinstance(message, mcp_types.JSONRPCNotification)
              and message.method == "notifications/cancelled"):
            # The client stopped waiting: a cancelled request gets no answer.
            cancelled = cancelled_request_id_from_params(message.params)
            if cancelled is not None:
                self._settle(cancelled)

    def answered(self, message: mcp_types.JSONRPCMessage) -> None:
        if isinstance(message, mcp_types.JSONRPCResponse | mcp_types.JSONRPCError) and \
                message.id is not None:
            self._settle(message.id)

    def _settle(self, request_id: mcp_types.RequestId) -> None:
        self._ids.discard(coerce_request_id(request_id))
        if not self._ids and self._drained is not None:
            self._drained.set()

    async def drain(self) -> None:
        """Wait until every request received so far is answered (at EOF: no more come)."""
        if self._ids:
            self._drained = anyio.Event()
            await self._drained.wait()


async def _serve_stdio(server: ParheliaMCP, notifier: live.Notifier | None = None) -> None:
    """``MCPServer.run("stdio")``, except that a malformed line gets its JSON-RPC error
    (the SDK drops it silently, leaving the client waiting), and that at stdin's EOF the
    requests already received are finished and answered before the server ends (the
    SDK would cancel them): each within its own timeout; a subscriptions/listen stream
    is stopped."""

    from mcp.server.stdio import stdio_server
    from mcp.shared.message import SessionMessage

    lowlevel = server._lowlevel_server
    unanswered = Unanswered()
    async with stdio_server() as (read_stream, write_stream):
        send, receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        answer, answers = anyio.create_memory_object_stream[SessionMessage](0)

        async def pump() -> None:
            async with send:
                async for item in read_stream:
                    if isinstance(item, Exception):
                        await write_stream.send(SessionMessage(malformed_reply(item)))
                    else:
                        unanswered.received(item.message)
                        await send.send(item)
                # EOF. Closing `send` makes the SDK cancel what is still in flight:
                # first let every request received finish and be answered.
                await unanswered.drain()

        async def write() -> None:
            async with write_stream, answers:
                async for item in answers:
                    await write_stream.send(item)
                    unanswered.answered(item.message)

        async with anyio.create_task_group() as tg:
            tg.start_soon(pump)
            if notifier is not None:
                tg.start_soon(notifier.run)
            async with anyio.create_task_group() as writing:
                writing.start_soon(write)
                async with answer:  # closed, the writer ends once every answer is out
                    await lowlevel.run(receive, answer,
                                       lowlevel.create_initialization_options())
            tg.cancel_scope.cancel()
