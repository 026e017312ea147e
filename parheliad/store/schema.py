"""The database schema as an ordered list of migrations.

``MIGRATIONS[i]`` brings the database from ``PRAGMA user_version`` ``i`` to ``i + 1``.
Append new steps at the end; never edit a step that has shipped. A step is either a
tuple of SQL statements and/or a callable taking the ``sqlite3`` connection (for
data migrations); each step runs in its own ``BEGIN IMMEDIATE`` transaction together with
the ``user_version`` bump (see :mod:`parheliad.store.migrate`).

Conventions: timestamps are integer microseconds since the epoch UTC (``*_at``
columns, NULL when absent); money is integer micro-dollars (``*_micros``); JSON
is stored as TEXT in ``*_json`` columns; booleans are 0/1 INTEGERs. Events and the
ledger have no foreign keys: history and spend survive the deletion of a task.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    name: str
    statements: tuple[str, ...] = ()
    run: Callable[[sqlite3.Connection], None] | None = None


_V1 = (
    """
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL UNIQUE,
        prompt TEXT NOT NULL,
        gpu TEXT NOT NULL DEFAULT '',
        cpu REAL NOT NULL,
        memory_mb INTEGER NOT NULL,
        timeout_seconds INTEGER NOT NULL,
        max_turns INTEGER NOT NULL,
        max_cost_micros INTEGER NOT NULL DEFAULT 0,
        model TEXT NOT NULL DEFAULT '',
        permission_mode TEXT NOT NULL,
        interactive INTEGER NOT NULL DEFAULT 0,
        backend TEXT NOT NULL,
        source_workspace_id TEXT NOT NULL DEFAULT '',
        source_repo_url TEXT NOT NULL DEFAULT '',
        source_repo_ref TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL,
        status_reason TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        started_at INTEGER,
        finished_at INTEGER,
        session_id TEXT,
        container_id TEXT,
        turns INTEGER NOT NULL DEFAULT 0,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cache_creation_input_tokens INTEGER NOT NULL DEFAULT 0,
        cache_read_input_tokens INTEGER NOT NULL DEFAULT 0,
        api_cost_micros INTEGER NOT NULL DEFAULT 0,
        compute_cost_micros INTEGER NOT NULL DEFAULT 0,
        result_subtype TEXT NOT NULL DEFAULT '',
        result_is_error INTEGER NOT NULL DEFAULT 0,
        result_text TEXT NOT NULL DEFAULT '',
        result_exit_code INTEGER,
        result_error_code TEXT NOT NULL DEFAULT '',
        result_error_message TEXT NOT NULL DEFAULT '',
        last_tool TEXT NOT NULL DEFAULT '',
        restarts INTEGER NOT NULL DEFAULT 0,
        base_commit TEXT NOT NULL DEFAULT '',
        workspace_path TEXT NOT NULL DEFAULT ''
    )
    """,
    "CREATE INDEX tasks_status_seq ON tasks(status, seq)",
    "CREATE INDEX tasks_created_at ON tasks(created_at)",
    """
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
        agent_session_id TEXT NOT NULL,
        status TEXT NOT NULL,
        latest_checkpoint_id TEXT,
        current_container_id TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    )
    """,
    "CREATE INDEX sessions_task ON sessions(task_id)",
    """
    CREATE TABLE containers (
        id TEXT PRIMARY KEY,
        backend TEXT NOT NULL,
        backend_id TEXT NOT NULL DEFAULT '',
        task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
        session_id TEXT REFERENCES sessions(id) ON DELETE CASCADE,
        incarnation INTEGER NOT NULL DEFAULT 1,
        state TEXT NOT NULL,
        health TEXT NOT NULL DEFAULT 'unknown',
        cpu REAL NOT NULL DEFAULT 0,
        memory_mb INTEGER NOT NULL DEFAULT 0,
        gpu TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        started_at INTEGER,
        stopped_at INTEGER,
        exit_code INTEGER,
        reason TEXT NOT NULL DEFAULT '',
        last_heartbeat_at INTEGER,
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        cost_micros INTEGER NOT NULL DEFAULT 0,
        spool_offset INTEGER NOT NULL DEFAULT 0,
        last_seq INTEGER NOT NULL DEFAULT 0
    )
    """,
    "CREATE INDEX containers_task ON containers(task_id)",
    "CREATE INDEX containers_session ON containers(session_id)",
    "CREATE INDEX containers_state ON containers(state)",
    """
    CREATE TABLE heartbeats (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
        at INTEGER NOT NULL,
        cpu_percent REAL NOT NULL DEFAULT 0,
        memory_bytes INTEGER NOT NULL DEFAULT 0,
        disk_bytes INTEGER NOT NULL DEFAULT 0,
        agent_alive INTEGER NOT NULL DEFAULT 0,
        metrics_json TEXT NOT NULL DEFAULT '{}'
    )
    """,
    "CREATE INDEX heartbeats_container_at ON heartbeats(container_id, at)",
    """
    CREATE TABLE checkpoints (
        id TEXT PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        container_id TEXT NOT NULL DEFAULT '',
        parent_id TEXT NOT NULL DEFAULT '',
        trigger TEXT NOT NULL,
        message TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        files INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0,
        new_bytes INTEGER NOT NULL DEFAULT 0,
        duration_ms INTEGER NOT NULL DEFAULT 0,
        environment_json TEXT NOT NULL DEFAULT '{}',
        git_json TEXT NOT NULL DEFAULT '{}',
        config_bundle_id TEXT NOT NULL DEFAULT '',
        manual INTEGER NOT NULL DEFAULT 0
    )
    """,
    "CREATE INDEX checkpoints_session_created ON checkpoints(session_id, created_at)",
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        type TEXT NOT NULL,
        level TEXT NOT NULL,
        at INTEGER NOT NULL,
        task_id TEXT,
        session_id TEXT,
        container_id TEXT,
        message TEXT NOT NULL DEFAULT '',
        data_json TEXT NOT NULL DEFAULT '{}',
        container_seq INTEGER NOT NULL DEFAULT 0
    )
    """,
    # Exactly-once application of worker records: one row per (container, seq).
    """
    CREATE UNIQUE INDEX events_container_seq ON events(container_id, container_seq)
    WHERE container_seq > 0
    """,
    "CREATE INDEX events_type ON events(type)",
    "CREATE INDEX events_level ON events(level)",
    "CREATE INDEX events_at ON events(at)",
    "CREATE INDEX events_task ON events(task_id)",
    "CREATE INDEX events_session ON events(session_id)",
    "CREATE INDEX events_container ON events(container_id)",
    """
    CREATE TABLE ledger (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        amount_micros INTEGER NOT NULL,
        task_id TEXT,
        container_id TEXT,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cache_tokens INTEGER NOT NULL DEFAULT 0,
        note TEXT NOT NULL DEFAULT ''
    )
    """,
    "CREATE INDEX ledger_at ON ledger(at)",
    "CREATE INDEX ledger_task ON ledger(task_id)",
    "CREATE INDEX ledger_container ON ledger(container_id)",
    """
    CREATE TABLE kv (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    )
    """,
)

# Per-incarnation agent usage: a task's totals are the sums over its containers, so a
# resumed session adds to them instead of overwriting them, and replays change nothing.
_V2 = tuple(
    f"ALTER TABLE containers ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0"
    for column in ("turns", "input_tokens", "output_tokens", "cache_creation_input_tokens",
                   "cache_read_input_tokens", "api_cost_micros")
)

# Orphans: owner-tagged containers a backend runs that the database does not own (no
# container row, or one already finished). Kept apart from ``containers`` because an
# unknown orphan has no task (docs/adr/0011-control-plane.md).
_V3 = (
    """
    CREATE TABLE orphans (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        backend TEXT NOT NULL,
        backend_id TEXT NOT NULL,
        container_id TEXT NOT NULL DEFAULT '',
        known INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL,
        first_seen_at INTEGER NOT NULL,
        last_seen_at INTEGER NOT NULL,
        started_at INTEGER,
        ended_at INTEGER,
        cost_micros INTEGER NOT NULL DEFAULT 0,
        detail TEXT NOT NULL DEFAULT ''
    )
    """,
    "CREATE UNIQUE INDEX orphans_backend_id ON orphans(backend, backend_id)",
    "CREATE INDEX orphans_state ON orphans(state)",
)

# Why a task waits (parheliad.core.waiting): the catalogue code of its status reason,
# whether only the user can end the wait, a hold (created with --no-dispatch: only
# `task dispatch` starts it), and the earliest next dispatch attempt (backoff).
_V4 = (
    "ALTER TABLE tasks ADD COLUMN status_code TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE tasks ADD COLUMN needs_user INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE tasks ADD COLUMN held INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE tasks ADD COLUMN dispatch_after INTEGER",
)

# Where each of a task's options came from (a flag, the default, the user's or a
# project's config file), as JSON: `task show` says which file set what.
_V5 = ("ALTER TABLE tasks ADD COLUMN option_sources TEXT NOT NULL DEFAULT '{}'",)
# A session whose task completed is "completed", the task's word (it was "finished").
_V6 = ("UPDATE sessions SET status = 'completed' WHERE status = 'finished'",)
# The user trusted the task's project configuration (--trust-project-config): its
# .parhelia config may widen options, and Claude Code loads the repository's own .claude/
# settings, hooks and .mcp.json (docs/adr/0019-project-claude-settings.md).
_V7 = ("ALTER TABLE tasks ADD COLUMN trust_project INTEGER NOT NULL DEFAULT 0",)

# Sessions say what runs them (parheliad.core.states.SessionStatus): "active" becomes
# "headless" (no interactive session existed before); an interactive one records the
# tmux socket of its TUI and how many clients are attached.
_V8 = (
    "UPDATE sessions SET status = 'headless' WHERE status = 'active'",
    "ALTER TABLE sessions ADD COLUMN attached_clients INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE sessions ADD COLUMN tmux_socket TEXT NOT NULL DEFAULT ''",
)

# The budget's reservations (docs/adr/0008-budget.md) get their own table; they were kv
# rows keyed "budget.reservation.<task id>" holding {"micros", "base_micros", "at"}.
_V9 = (
    """
    CREATE TABLE reservations (
        task_id TEXT PRIMARY KEY,
        micros INTEGER NOT NULL,
        base_micros INTEGER NOT NULL DEFAULT 0,
        reserved_at INTEGER NOT NULL
    )
    """,
)
KV_RESERVATION_PREFIX = "budget.reservation."

# What a container's API spend came to, priced from its tokens at the [rates], when its
# agent last reported a cost: its in-flight spend is what its tokens have cost since
# (parheliad.core.budget), so a reported figure is never counted twice.
_V10 = ("ALTER TABLE containers ADD COLUMN api_priced_at_report_micros INTEGER NOT NULL "
        "DEFAULT 0",)

# How each container's agent is contained and where its model credential is
# (docs/adr/0030-local-sandbox.md, parhelia.sandbox): `task show` and `container show`.
_V11 = (
    "ALTER TABLE containers ADD COLUMN isolation TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE containers ADD COLUMN credential TEXT NOT NULL DEFAULT ''",
)

# Environments (docs/adr/0050-environments.md): the one a task runs in, how its setup
# went; images built per image hash and backend, prepared filesystems kept for warm
# starts, and the per-repository dependency caches.
_ENVIRONMENTS = (
    "ALTER TABLE tasks ADD COLUMN environment_hash TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE tasks ADD COLUMN environment_json TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE tasks ADD COLUMN setup_status TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE tasks ADD COLUMN setup_ms INTEGER NOT NULL DEFAULT 0",
    """
    CREATE TABLE environment_images (
        image_hash TEXT NOT NULL,
        backend TEXT NOT NULL,
        status TEXT NOT NULL,
        image_id TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        error TEXT NOT NULL DEFAULT '',
        started_at INTEGER NOT NULL,
        built_at INTEGER,
        build_ms INTEGER NOT NULL DEFAULT 0,
        last_used_at INTEGER,
        PRIMARY KEY (image_hash, backend)
    )
    """,
    """
    CREATE TABLE environment_snapshots (
        environment_hash TEXT NOT NULL,
        base TEXT NOT NULL,
        backend TEXT NOT NULL,
        image_id TEXT NOT NULL,
        container_id TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        last_used_at INTEGER,
        PRIMARY KEY (environment_hash, base, backend)
    )
    """,
    """
    CREATE TABLE environment_caches (
        name TEXT NOT NULL,
        backend TEXT NOT NULL,
        repository TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER,
        PRIMARY KEY (name, backend)
    )
    """,
)

# Results as pull requests (docs/adr/0055-private-repositories-and-pull-requests.md):
# `task create --pr` opens one at completion; the branch pushed, the commit it was
# pushed at (the lease of the next push), the remote and the pull request opened.
_V12 = (
    "ALTER TABLE tasks ADD COLUMN open_pr INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE tasks ADD COLUMN pr_remote TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE tasks ADD COLUMN pr_branch TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE tasks ADD COLUMN pr_commit TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE tasks ADD COLUMN pr_base TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE tasks ADD COLUMN pr_number INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE tasks ADD COLUMN pr_url TEXT NOT NULL DEFAULT ''",
)


def _reservations_from_kv(conn: sqlite3.Connection) -> None:
    end = KV_RESERVATION_PREFIX[:-1] + chr(ord(KV_RESERVATION_PREFIX[-1]) + 1)
    rows = conn.execute("SELECT key, value, updated_at FROM kv WHERE key >= ? AND key < ?",
                        (KV_RESERVATION_PREFIX, end)).fetchall()
    for key, value, updated_at in rows:
        try:
            data = json.loads(value)
        except ValueError:
            data = None
        if isinstance(data, dict):
            conn.execute(
                "INSERT OR REPLACE INTO reservations (task_id, micros, base_micros, "
                "reserved_at) VALUES (?, ?, ?, ?)",
                (key[len(KV_RESERVATION_PREFIX):], _int(data.get("micros")),
                 _int(data.get("base_micros")), _int(data.get("at")) or int(updated_at)))
        conn.execute("DELETE FROM kv WHERE key = ?", (key,))


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


MIGRATIONS: list[Migration] = [
    Migration("initial schema", _V1),
    Migration("container usage", _V2),
    Migration("orphans", _V3),
    Migration("task waits", _V4),
    Migration("task option sources", _V5),
    Migration("session word completed", _V6),
    Migration("task trusts its project", _V7),
    Migration("session modes", _V8),
    Migration("budget reservations", _V9, _reservations_from_kv),
    Migration("container spend priced at its report", _V10),
    Migration("container isolation", _V11),
    Migration("environments", _ENVIRONMENTS),
    Migration("task pull requests", _V12),
]
"""Append-only. ``len(MIGRATIONS)`` is the schema version this code expects."""
