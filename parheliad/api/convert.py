"""Rows <-> protobuf messages. The only module that knows both shapes.

Store rows use ``None`` for absent values and microsecond integers for time; proto
messages use empty strings/zeros and unset ``Timestamp`` fields.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from parhelia import events as catalogue
from parhelia import statuses
from parhelia.errors import invalid, missing
from parhelia.v1 import common_pb2
from parheliad.core.states import SESSION_INTERACTIVE, ContainerState, Health, TaskStatus
from parheliad.core.tasks import TaskOptions, TaskSource
from parheliad.environments import service as environments
from parheliad.store import ContainerRow, EventFilter, EventRow, SessionRow, TaskRow, ids
from parheliad.store.rows import CheckpointRow


def set_ts(target: Timestamp, us: int | None) -> None:
    if us is not None:
        target.FromMicroseconds(us)


_TS_MIN, _TS_MAX = -62135596800, 253402300799  # 0001-01-01 .. 9999-12-31 (RFC 3339)


def ts_us(ts: Timestamp, present: bool, field: str = "timestamp") -> int | None:
    """Microseconds of a request's timestamp; E101 outside what RFC 3339 can write."""
    if not present:
        return None
    if not _TS_MIN <= ts.seconds <= _TS_MAX or not 0 <= ts.nanos < 1_000_000_000:
        raise invalid(f"{field}: must be between year 1 and year 9999", field=field)
    return ts.ToMicroseconds()


def word_to_proto(kind: statuses.Vocabulary, enum: Any, word: str) -> Any:
    """The number of a status word in its generated enum (``running`` -> 2)."""
    return enum.Value(statuses.proto_name(kind, word))


def word_from_proto(kind: statuses.Vocabulary, enum: Any, value: int, what: str,
                    field: str) -> str:
    """The status word of a request's enum number; E101 for UNSPECIFIED or an unknown one."""
    try:
        name = enum.Name(value)
    except ValueError:
        name = ""
    word = statuses.word_of(kind, name)
    if word is None:
        raise invalid(f"{what} {value}", field=field)
    return word


def status_to_proto(status: str) -> common_pb2.TaskStatus.ValueType:
    return word_to_proto(TaskStatus, common_pb2.TaskStatus, status)


def status_from_proto(value: int) -> str:
    return word_from_proto(TaskStatus, common_pb2.TaskStatus, value,
                           "status: unknown task status", "statuses")


def _option_sources(text: str) -> dict[str, str]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def task_to_proto(row: TaskRow) -> common_pb2.Task:
    msg = common_pb2.Task(
        id=row.id, prompt=row.prompt, status=status_to_proto(row.status),
        status_reason=row.status_reason, session_id=row.session_id or "",
        container_id=row.container_id or "", last_tool=row.last_tool, restarts=row.restarts,
        base_commit=row.base_commit, workspace_path=row.workspace_path,
        status_code=row.status_code, needs_user=row.needs_user, held=row.held,
        option_sources=_option_sources(row.option_sources),
        options=common_pb2.TaskOptions(
            gpu=row.gpu, cpu=row.cpu, memory_mb=row.memory_mb,
            timeout_seconds=row.timeout_seconds, max_turns=row.max_turns,
            max_cost_micros=row.max_cost_micros, model=row.model,
            permission_mode=row.permission_mode, interactive=row.interactive,
            backend=row.backend),
        source=common_pb2.TaskSource(workspace_id=row.source_workspace_id,
                                     repo_url=row.source_repo_url,
                                     repo_ref=row.source_repo_ref),
        usage=common_pb2.Usage(
            input_tokens=row.input_tokens, output_tokens=row.output_tokens,
            cache_creation_input_tokens=row.cache_creation_input_tokens,
            cache_read_input_tokens=row.cache_read_input_tokens, turns=row.turns,
            api_cost_micros=row.api_cost_micros, compute_cost_micros=row.compute_cost_micros),
    )
    msg.open_pr = row.open_pr
    if row.pr_branch:
        msg.pull_request.CopyFrom(common_pb2.PullRequest(
            url=row.pr_url, number=row.pr_number, branch=row.pr_branch, commit=row.pr_commit,
            base=row.pr_base, remote=row.pr_remote))
    if row.result_subtype or row.result_exit_code is not None or row.result_error_code:
        msg.result.CopyFrom(common_pb2.TaskResult(
            subtype=row.result_subtype, is_error=row.result_is_error, text=row.result_text,
            exit_code=row.result_exit_code or 0, error_code=row.result_error_code,
            error_message=row.result_error_message))
    environment = environments.stored(row)
    if environment is not None:
        mode, why = environments.permission(row)
        msg.environment.CopyFrom(common_pb2.TaskEnvironment(
            hash=environment.hash, image_hash=environment.image_hash,
            source=environment.source, source_file=environment.source_file,
            base=environment.base.describe(), network=environment.network,
            setup_steps=len(environment.setup), start_steps=len(environment.start),
            setup_status=row.setup_status, setup_ms=row.setup_ms, permission_mode=mode,
            permission_reason=why, allow_commands=list(environment.allow_commands)))
    set_ts(msg.created_at, row.created_at)
    set_ts(msg.started_at, row.started_at)
    set_ts(msg.finished_at, row.finished_at)
    set_ts(msg.updated_at, row.updated_at)
    set_ts(msg.dispatch_after, row.dispatch_after)
    return msg


def options_from_proto(msg: common_pb2.TaskOptions) -> TaskOptions:
    return TaskOptions(gpu=msg.gpu, cpu=msg.cpu, memory_mb=msg.memory_mb,
                       timeout_seconds=msg.timeout_seconds, max_turns=msg.max_turns,
                       max_cost_micros=msg.max_cost_micros, model=msg.model,
                       permission_mode=msg.permission_mode, interactive=msg.interactive,
                       backend=msg.backend)


def source_from_proto(msg: common_pb2.TaskSource) -> TaskSource:
    return TaskSource(workspace_id=msg.workspace_id, repo_url=msg.repo_url,
                      repo_ref=msg.repo_ref)


def event_to_proto(row: EventRow) -> common_pb2.Event:
    msg = common_pb2.Event(
        id=row.id, type=row.type, level=row.level, task_id=row.task_id or "",
        session_id=row.session_id or "", container_id=row.container_id or "",
        message=row.message, data_json=row.data_json, container_seq=row.container_seq)
    set_ts(msg.at, row.at)
    return msg


def filter_from_proto(msg: common_pb2.EventFilter) -> EventFilter:
    """Validate an EventFilter (E101 naming the field) into the store's filter."""
    types = tuple(dict.fromkeys(t.strip() for t in msg.types if t.strip()))
    unknown = [t for t in types if t not in catalogue.CATALOGUE]
    if unknown:
        raise invalid(f"types: unknown event type(s) {', '.join(unknown)}; see "
                      "`parhelia help events`", field="types")
    level = msg.min_level.strip().lower()
    if level and level not in catalogue.LEVELS:
        raise invalid(f"min_level: must be one of {', '.join(catalogue.LEVELS)}",
                      field="min_level")
    if msg.after_id < 0:
        raise invalid("after_id: must not be negative", field="after_id")
    since = ts_us(msg.since, msg.HasField("since"), "since")
    until = ts_us(msg.until, msg.HasField("until"), "until")
    if since is not None and until is not None and until < since:
        raise invalid("until: must not be before since", field="until")
    return EventFilter(types=types, min_level=level, since_us=since, until_us=until,
                       task_id=msg.task_id.strip(), session_id=msg.session_id.strip(),
                       container_id=msg.container_id.strip(), after_id=msg.after_id)


def session_to_proto(row: SessionRow) -> common_pb2.Session:
    msg = common_pb2.Session(id=row.id, task_id=row.task_id,
                             agent_session_id=row.agent_session_id, status=row.status,
                             latest_checkpoint_id=row.latest_checkpoint_id or "",
                             current_container_id=row.current_container_id or "",
                             attached_clients=row.attached_clients,
                             interactive=row.status in SESSION_INTERACTIVE)
    set_ts(msg.created_at, row.created_at)
    set_ts(msg.updated_at, row.updated_at)
    return msg


def container_to_proto(row: ContainerRow) -> common_pb2.Container:
    msg = common_pb2.Container(
        id=row.id, backend=row.backend, backend_id=row.backend_id, task_id=row.task_id,
        session_id=row.session_id or "",
        state=word_to_proto(ContainerState, common_pb2.ContainerState, row.state),
        health=word_to_proto(Health, common_pb2.Health, row.health),
        cpu=row.cpu, memory_mb=row.memory_mb, gpu=row.gpu, exit_code=row.exit_code or 0,
        has_exit_code=row.exit_code is not None, reason=row.reason,
        consecutive_failures=row.consecutive_failures, cost_micros=row.cost_micros,
        incarnation=row.incarnation, isolation=row.isolation, credential=row.credential)
    set_ts(msg.created_at, row.created_at)
    set_ts(msg.started_at, row.started_at)
    set_ts(msg.stopped_at, row.stopped_at)
    set_ts(msg.last_heartbeat_at, row.last_heartbeat_at)
    return msg


def checkpoint_to_proto(row: CheckpointRow) -> common_pb2.Checkpoint:
    env = row.environment
    git = row.git
    msg = common_pb2.Checkpoint(
        id=row.id, session_id=row.session_id, parent_id=row.parent_id, trigger=row.trigger,
        message=row.message,
        stats=common_pb2.CheckpointStats(files=row.files, bytes=row.bytes,
                                         new_bytes=row.new_bytes, duration_ms=row.duration_ms),
        agent_version=str(env.get("agent_version") or ""), model=str(env.get("model") or ""),
        git_branch=str(git.get("branch") or ""), git_head=str(git.get("head") or ""),
        git_dirty=[str(d.get("path") if isinstance(d, dict) else d)
                   for d in git.get("dirty") or []],
        config_bundle_id=row.config_bundle_id, manual=row.manual,
        container_id=row.container_id)
    set_ts(msg.created_at, row.created_at)
    return msg


def require_ref(value: str, field: str) -> str:
    """A full id or unique prefix from a request; E102 naming the field when empty."""
    if not value.strip():
        raise missing(f"{field}: give an id or a unique prefix", field=field)
    ids.check_ref(value, field)
    return value.strip()
