"""Typed rows: one frozen dataclass per table, field names equal to column names.

Timestamps are integer microseconds since the epoch UTC (``None`` when absent),
money integer micro-dollars. Status-like columns hold the lower-case names used by
:mod:`parheliad.core.states`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class TaskRow:
    id: str
    seq: int
    prompt: str
    gpu: str
    cpu: float
    memory_mb: int
    timeout_seconds: int
    max_turns: int
    max_cost_micros: int
    model: str
    permission_mode: str
    interactive: bool
    backend: str
    source_workspace_id: str
    source_repo_url: str
    source_repo_ref: str
    status: str
    status_reason: str
    created_at: int
    updated_at: int
    started_at: int | None
    finished_at: int | None
    session_id: str | None
    container_id: str | None
    turns: int
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    api_cost_micros: int
    compute_cost_micros: int
    result_subtype: str
    result_is_error: bool
    result_text: str
    result_exit_code: int | None
    result_error_code: str
    result_error_message: str
    last_tool: str
    restarts: int
    base_commit: str
    workspace_path: str
    status_code: str = ""  # catalogue code of a waiting task's status_reason
    needs_user: bool = False  # the wait ends only by the user's hand
    held: bool = False  # created with --no-dispatch: only `task dispatch` starts it
    dispatch_after: int | None = None  # no dispatch attempt before (backoff)
    option_sources: str = "{}"  # JSON: option -> flag | default | user:<file> | project:<file>
    trust_project: bool = False  # the project's .parhelia and .claude/ configuration trusted
    environment_hash: str = ""  # the environment it runs in (parheliad.environments)
    environment_json: str = ""  # that environment, resolved at creation (JSON)
    setup_status: str = ""  # "" | running | completed | skipped | failed
    setup_ms: int = 0  # how long its last setup took
    open_pr: bool = False  # `task create --pr`: open a pull request when it completes
    pr_remote: str = ""  # the repository URL its branch was pushed to
    pr_branch: str = ""  # the branch pushed (`task pr`)
    pr_commit: str = ""  # the commit pushed last (the lease of the next push)
    pr_base: str = ""  # the branch the pull request goes into
    pr_number: int = 0  # the pull request's number on its forge (0: none)
    pr_url: str = ""  # the pull request's page, or a compare page ("" when none)


@dataclass(frozen=True)
class SessionRow:
    id: str
    task_id: str
    agent_session_id: str
    status: str  # parheliad.core.states.SessionStatus
    latest_checkpoint_id: str | None
    current_container_id: str | None
    created_at: int
    updated_at: int
    attached_clients: int = 0  # tmux clients attached to its interactive TUI
    tmux_socket: str = ""  # where its running TUI's tmux server listens (worker side), or ""


@dataclass(frozen=True)
class ContainerRow:
    id: str
    backend: str
    backend_id: str
    task_id: str
    session_id: str | None
    incarnation: int
    state: str
    health: str
    cpu: float
    memory_mb: int
    gpu: str
    created_at: int
    updated_at: int
    started_at: int | None
    stopped_at: int | None
    exit_code: int | None
    reason: str
    last_heartbeat_at: int | None
    consecutive_failures: int
    cost_micros: int
    spool_offset: int
    last_seq: int
    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    api_cost_micros: int = 0
    api_priced_at_report_micros: int = 0
    """Its tokens priced at the [rates] when its agent last reported a cost."""
    isolation: str = ""
    """How its agent is contained (``parhelia.sandbox``: bubblewrap, none, modal sandbox)."""
    credential: str = ""
    """Where the model credential is (``parhelia.sandbox``: local proxy, outbound policy,
    environment, modal secret)."""


@dataclass(frozen=True)
class HeartbeatRow:
    id: int
    container_id: str
    at: int
    cpu_percent: float
    memory_bytes: int
    disk_bytes: int
    agent_alive: bool
    metrics_json: str

    @property
    def metrics(self) -> dict[str, Any]:
        return _loads(self.metrics_json)


@dataclass(frozen=True)
class CheckpointRow:
    id: str
    session_id: str
    container_id: str
    parent_id: str
    trigger: str
    message: str
    created_at: int
    files: int
    bytes: int
    new_bytes: int
    duration_ms: int
    environment_json: str
    git_json: str
    config_bundle_id: str
    manual: bool

    @property
    def environment(self) -> dict[str, Any]:
        return _loads(self.environment_json)

    @property
    def git(self) -> dict[str, Any]:
        return _loads(self.git_json)


@dataclass(frozen=True)
class EventRow:
    id: int
    type: str
    level: str
    at: int
    task_id: str | None
    session_id: str | None
    container_id: str | None
    message: str
    data_json: str
    container_seq: int

    @property
    def data(self) -> dict[str, Any]:
        return _loads(self.data_json)


@dataclass(frozen=True)
class LedgerRow:
    id: int
    at: int
    kind: str  # compute | api | adjustment
    amount_micros: int
    task_id: str | None
    container_id: str | None
    input_tokens: int
    output_tokens: int
    cache_tokens: int
    note: str


@dataclass(frozen=True)
class EnvironmentImageRow:
    """An environment's image on a backend (built once per image hash)."""

    image_hash: str
    backend: str
    status: str  # building | built | failed
    image_id: str
    description: str
    error: str
    started_at: int
    built_at: int | None
    build_ms: int
    last_used_at: int | None


@dataclass(frozen=True)
class EnvironmentSnapshotRow:
    """A prepared sandbox filesystem kept for warm starts (a cache with an expiry)."""

    environment_hash: str
    base: str  # the base commit the prepared workspace was at ("" without git)
    backend: str
    image_id: str
    container_id: str
    created_at: int
    expires_at: int
    last_used_at: int | None


@dataclass(frozen=True)
class EnvironmentCacheRow:
    """A repository's dependency cache volume."""

    name: str
    backend: str
    repository: str
    created_at: int
    last_used_at: int | None


@dataclass(frozen=True)
class ReservationRow:
    """What a running task's dispatch reserved of the budget (docs/adr/0008-budget.md):
    ``micros`` when it was dispatched, its spend then being ``base_micros``."""

    task_id: str
    micros: int
    base_micros: int
    reserved_at: int


@dataclass(frozen=True)
class OrphanRow:
    """An owner-tagged container found on a backend that the database does not own."""

    id: int
    backend: str
    backend_id: str
    container_id: str  # as the backend reports it ('' if unknown)
    known: bool  # a container row with this id exists (and was already finished)
    state: str  # present | terminated | gone
    first_seen_at: int
    last_seen_at: int
    started_at: int | None
    ended_at: int | None
    cost_micros: int
    detail: str


def _loads(text: str) -> dict[str, Any]:
    value = json.loads(text or "{}")
    return value if isinstance(value, dict) else {}


def dumps(value: Mapping[str, Any] | None) -> str:
    """Compact, deterministic JSON for ``*_json`` columns."""
    return json.dumps(dict(value or {}), separators=(",", ":"), sort_keys=True, default=str)


_COLUMNS: dict[type, tuple[str, ...]] = {}
_BOOL_INDEXES: dict[type, tuple[int, ...]] = {}


def columns(cls: type) -> tuple[str, ...]:
    """The column names of a row class (cached: every row read goes through here)."""
    names = _COLUMNS.get(cls)
    if names is None:
        names = _COLUMNS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _bool_indexes(cls: type) -> tuple[int, ...]:
    found = _BOOL_INDEXES.get(cls)
    if found is None:
        found = _BOOL_INDEXES[cls] = tuple(
            i for i, f in enumerate(dataclasses.fields(cls)) if f.type in ("bool", bool))
    return found


def from_row(cls: type[R], row: Any) -> R:
    """Build a row dataclass from a sqlite row, turning 0/1 into bools where declared.

    Rows selected with ``sql.select(cls)`` (the columns in field order) are built
    positionally — several times faster than by name, which matters when listing
    thousands; any other row is read by column name.
    """
    names = columns(cls)
    if isinstance(row, tuple) or tuple(row.keys()) == names:
        values = list(row)
    else:
        values = [row[name] for name in names]
    for i in _bool_indexes(cls):
        values[i] = bool(values[i])
    return cls(*values)
