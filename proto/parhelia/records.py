"""The typed channel records (worker -> daemon), defined once for both sides.

A channel line is an envelope ``{"seq", "type", "at", "data"}`` (``parhelia.events``). The
records whose ``data`` the daemon acts on are dataclasses here: the worker builds them and
sends ``to_dict()``; the daemon reads them with ``from_dict``, which is the one place their
input is checked. That input comes from a sandbox running an agent on a repository nobody
vetted, so ``from_dict`` treats it as hostile: every field's type is checked, integers and
strings are bounded, identifiers must have their format, and anything else raises
:class:`RecordError` (the daemon logs the reason and skips the record). Fields a record
does not define are dropped; fields it defines but the line lacks take their defaults (an
older worker, a test's partial record).

Records that only inform (``agent_init``, ``agent_message``, ``workspace_restored`` ...)
are stored as their event's data as they are, once the envelope has bounded their size.
Pure Python, no dependencies (shipped into the worker image).
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from parhelia import events, sandbox

MAX_RECORD_BYTES = 256 << 10
"""The largest ``data`` of one record, as compact JSON: larger ones are refused."""
MAX_TEXT = 8_000
"""Free text (a result, a message): longer text is cut, not refused (the worker cuts
the agent's result at 4,000 characters; a redaction may lengthen it a little)."""
MAX_WORD = 200
"""A short word or name (a trigger, a subtype, a tool name, a status)."""
MAX_COUNT = 2**53
"""Counts, sizes and token figures: within what JSON numbers carry exactly."""
MAX_USD = 1e9
"""The largest amount of money a record may report."""
MAX_SEQ = 2**62
SEQ_WINDOW = 1000
"""How far past the last applied ``seq`` a record may be. A worker numbers its records
1, 2, 3...; a record further ahead is refused and never becomes the floor, so one forged
line cannot silence the records after it (the damage is bounded by this window)."""

CHECKPOINT_ID = re.compile(r"cp-[0-9a-f]{16}")
"""A checkpoint id (``cp-`` and 16 hex digits of the manifest's hash, ADR 0003)."""
_TIMESTAMP = re.compile(r"[0-9T:.+Z-]{10,40}")
WORKER_STATUSES = frozenset({"completed", "failed", "timeout", "stopped", "lost"})


class RecordError(ValueError):
    """A channel record the daemon refuses (the message says why)."""


# -- field readers (each checks one field of a raw mapping) --------------------------------


def _int(raw: Mapping[str, Any], key: str, default: int = 0, *, low: int = 0,
         high: int = MAX_COUNT) -> int:
    value = raw.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RecordError(f"{key} is not an integer in [{low}, {high}]")
    return value


def _opt_int(raw: Mapping[str, Any], key: str, *, low: int = 0,
             high: int = MAX_COUNT) -> int | None:
    return None if raw.get(key) is None else _int(raw, key, low=low, high=high)


def _usd(raw: Mapping[str, Any], key: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not math.isfinite(value) or not 0 <= value <= MAX_USD:
        raise RecordError(f"{key} is not an amount in [0, {MAX_USD:g}]")
    return float(value)


def _float(raw: Mapping[str, Any], key: str, high: float) -> float:
    value = raw.get(key)
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not math.isfinite(value) or not 0 <= value <= high:
        raise RecordError(f"{key} is not a number in [0, {high:g}]")
    return float(value)


def _bool(raw: Mapping[str, Any], key: str) -> bool:
    value = raw.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RecordError(f"{key} is not a boolean")
    return value


def _str(raw: Mapping[str, Any], key: str, limit: int = MAX_WORD, *, cut: bool = False) -> str:
    value = raw.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RecordError(f"{key} is not a string")
    if len(value) > limit:
        if not cut:
            raise RecordError(f"{key} is longer than {limit} characters")
        return value[:limit]
    return value


def _opt_str(raw: Mapping[str, Any], key: str, limit: int = MAX_WORD, *,
             cut: bool = False) -> str | None:
    return _str(raw, key, limit, cut=cut) if raw.get(key) is not None else None


def _checkpoint_id(raw: Mapping[str, Any], key: str, *, required: bool) -> str | None:
    value = raw.get(key)
    if value is None or (value == "" and not required):
        if required:
            raise RecordError(f"{key} is missing")
        return None
    if not isinstance(value, str) or not CHECKPOINT_ID.fullmatch(value):
        raise RecordError(f"{key} is not a checkpoint id")
    return value


def _object(raw: Mapping[str, Any], key: str, *, nullable: bool = False
            ) -> dict[str, Any] | None:
    value = raw.get(key)
    if value is None:
        return None if nullable else {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise RecordError(f"{key} is not an object")
    return value


# -- the records -------------------------------------------------------------------------

R = TypeVar("R", bound="_Record")


class _Record(ABC):
    TYPE: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[R], raw: object) -> R:
        if not isinstance(raw, Mapping):
            raise RecordError(f"{cls.TYPE}: data is not an object")
        try:
            return cls._parse(raw)
        except RecordError as exc:
            raise RecordError(f"{cls.TYPE}: {exc}") from None

    @classmethod
    @abstractmethod
    def _parse(cls: type[R], raw: Mapping[str, Any]) -> R:
        """The record from a mapping; RecordError naming the first bad field."""


@dataclass(frozen=True)
class Usage(_Record):
    """An incarnation's cumulative usage (``cost_usd``: its share of the cost, None until
    the agent reports one). Heartbeats, turns, results and transcript costs carry it."""

    TYPE: ClassVar[str] = "usage"
    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: float | None = None

    @classmethod
    def _parse(cls, raw: Mapping[str, Any]) -> Usage:
        return cls(turns=_int(raw, "turns"), input_tokens=_int(raw, "input_tokens"),
                   output_tokens=_int(raw, "output_tokens"),
                   cache_creation_input_tokens=_int(raw, "cache_creation_input_tokens"),
                   cache_read_input_tokens=_int(raw, "cache_read_input_tokens"),
                   cost_usd=_usd(raw, "cost_usd"))


USAGE_FIELDS: tuple[str, ...] = ("turns", "input_tokens", "output_tokens",
                                 "cache_creation_input_tokens", "cache_read_input_tokens")
"""The cumulative token counts of :class:`Usage` (the daemon keeps them per container)."""


def _usage_of(raw: Mapping[str, Any], cost_usd: float | None) -> Usage:
    base = Usage._parse(raw)
    return Usage(base.turns, base.input_tokens, base.output_tokens,
                 base.cache_creation_input_tokens, base.cache_read_input_tokens, cost_usd)


@dataclass(frozen=True)
class Heartbeat(_Record):
    TYPE: ClassVar[str] = events.HEARTBEAT
    cpu_percent: float = 0.0
    memory_bytes: int = 0
    disk_bytes: int = 0
    agent_alive: bool = False
    usage: Usage = field(default_factory=Usage)

    def to_dict(self) -> dict[str, Any]:
        return {"cpu_percent": self.cpu_percent, "memory_bytes": self.memory_bytes,
                "disk_bytes": self.disk_bytes, "agent_alive": self.agent_alive,
                **self.usage.to_dict()}

    @classmethod
    def _parse(cls, raw: Mapping[str, Any]) -> Heartbeat:
        return cls(cpu_percent=_float(raw, "cpu_percent", 100_000.0),
                   memory_bytes=_int(raw, "memory_bytes"), disk_bytes=_int(raw, "disk_bytes"),
                   agent_alive=_bool(raw, "agent_alive"), usage=Usage._parse(raw))


@dataclass(frozen=True)
class AgentTurnCompleted(_Record):
    TYPE: ClassVar[str] = "agent_turn_completed"
    usage: Usage = field(default_factory=Usage)

    def to_dict(self) -> dict[str, Any]:
        return self.usage.to_dict()

    @classmethod
    def _parse(cls, raw: Mapping[str, Any]) -> AgentTurnCompleted:
        return cls(usage=Usage._parse(raw))


@dataclass(frozen=True)
class AgentCost(_Record):
    """A run stopped before its result: the CLI's own cost figure from its transcript."""

    TYPE: ClassVar[str] = "agent_cost"
    usage: Usage = field(default_factory=Usage)
    total_cost_usd: float | None = None
    source: str = "transcript"

    def to_dict(self) -> dict[str, Any]:
        return {**self.usage.to_dict(), "source": self.source,
                "total_cost_usd": self.total_cost_usd}

    @classmethod
    def _parse(cls, raw: Mapping[str, Any]) -> AgentCost:
        total = _usd(raw, "total_cost_usd")
        cost = _usd(raw, "cost_usd") if "cost_usd" in raw else total
        return cls(usage=_usage_of(raw, cost), total_cost_usd=total,
                   source=_str(raw, "source") or "transcript")


@dataclass(frozen=True)
class AgentResult(_Record):
    """The agent's result. ``usage.cost_usd`` is this run's share (what the daemon books);
    ``total_cost_usd`` the CLI's figure for the whole session (a resumed run includes
    the earlier runs'); a worker that sends only the latter has it booked."""

    TYPE: ClassVar[str] = "agent_result"
    subtype: str = ""
    is_error: bool = False
    usage: Usage = field(default_factory=Usage)
    total_cost_usd: float | None = None
    duration_ms: int | None = None
    terminal_reason: str | None = None
    permission_denials: int = 0
    text: str = ""

    @property
    def succeeded(self) -> bool:
        return self.subtype == "success" and not self.is_error

    def to_dict(self) -> dict[str, Any]:
        return {"subtype": self.subtype, "is_error": self.is_error, **self.usage.to_dict(),
                "total_cost_usd": self.total_cost_usd,
                "duration_ms": self.duration_ms, "terminal_reason": self.terminal_reason,
                "permission_denials": self.permission_denials, "text": self.text}

    @classmethod
    def _parse(cls, raw: Mapping[str, Any]) -> AgentResult:
        total = _usd(raw, "total_cost_usd")
        cost = _usd(raw, "cost_usd") if "cost_usd" in raw else total
        return cls(subtype=_str(raw, "subtype"), is_error=_bool(raw, "is_error"),
                   usage=_usage_of(raw, cost), total_cost_usd=total,
                   duration_ms=_opt_int(raw, "duration_ms"),
                   terminal_reason=_opt_str(raw, "terminal_reason"),
                   permission_denials=_int(raw, "permission_denials"),
                   text=_str(raw, "text", MAX_TEXT, cut=True))


@dataclass(frozen=True)
class AgentToolUse(_Record):
    TYPE: ClassVar[str] = "agent_tool_use"
    tool: str = ""
    summary: str = ""
    tool_use_id: str | None = None

    @classmethod
    def _parse(cls, raw: Mapping[str, Any]) -> AgentToolUse:
        return cls(tool=_str(raw, "tool", cut=True), summary=_str(raw, "summary", 1000, cut=True),
                   tool_use_id=_opt_str(raw, "tool_use_id"))


@dataclass(frozen=True)
class WorkerStarted(_Record):
    TYPE: ClassVar[str] = "worker_started"
    incarnation: int = 1
    backend: str = ""
    pid: int | None = None
    hostname: str = ""
    python: str = ""
    resume: bool = False
    restore_checkpoint_id: str | None = None

    @classmethod
    def _parse(cls, raw: Mapping[str, Any]) -> WorkerStarted:
        return cls(incarnation=_int(raw, "incarnation", 1), backend=_str(raw, "backend"),
                   pid=_opt_int(raw, "pid"), hostname=_str(raw, "hostname", 255, cut=True),
                   python=_str(raw, "python"), resume=_bool(raw, "resume"),
                   restore_checkpoint_id=_checkpoint_id(raw, "restore_checkpoint_id",
                                                        required=False))


@dataclass(frozen=True)
class WorkerExited(_Record):
    """The worker's own word on how it ended (the daemon settles the container by it)."""

    TYPE: ClassVar[str] = "worker_exited"
    exit_code: int | None = None
    status: str = "failed"
    error_code: str | None = None
    error_message: str | None = None
    last_checkpoint_id: str | None = None

    @classmethod
    def _parse(cls, raw: Mapping[str, Any]) -> WorkerExited:
        status = _str(raw, "status") or "failed"
        if status not in WORKER_STATUSES:
            raise RecordError(f"status {status[:40]!r} is not one of "
                              f"{', '.join(sorted(WORKER_STATUSES))}")
        code = _opt_str(raw, "error_code", 8)
        if code is not None and code and not re.fullmatch(r"E[0-9]{3}", code):
            raise RecordError("error_code is not an error code (E and three digits)")
        return cls(exit_code=_opt_int(raw, "exit_code", low=-(2**31), high=2**31 - 1),
                   status=status, error_code=code or None,
                   error_message=_opt_str(raw, "error_message", MAX_TEXT, cut=True),
                   last_checkpoint_id=_checkpoint_id(raw, "last_checkpoint_id", required=False))


@dataclass(frozen=True)
class CheckpointStats(_Record):
    TYPE: ClassVar[str] = "checkpoint_stats"
    files: int = 0
    bytes: int = 0
    new_bytes: int = 0
    duration_ms: int = 0
    dirs: int = 0
    symlinks: int = 0
    conversation_files: int = 0
    conversation_bytes: int = 0
    rehashed_files: int = 0
    skipped: int = 0
    """How many paths were left out (the manifest names them)."""

    @classmethod
    def _parse(cls, raw: Mapping[str, Any]) -> CheckpointStats:
        return cls(**{f.name: _int(raw, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class CheckpointCreated(_Record):
    """A checkpoint is on the volume (manifest and blobs): the daemon indexes it."""

    TYPE: ClassVar[str] = "checkpoint_created"
    checkpoint_id: str
    parent_id: str | None = None
    trigger: str = ""
    message: str = ""
    created_at: str = ""
    stats: CheckpointStats = field(default_factory=CheckpointStats)
    git: dict[str, Any] | None = None
    environment: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint_id": self.checkpoint_id, "parent_id": self.parent_id,
                "trigger": self.trigger, "message": self.message,
                "created_at": self.created_at, "stats": self.stats.to_dict(), "git": self.git,
                "environment": self.environment}

    @classmethod
    def _parse(cls, raw: Mapping[str, Any]) -> CheckpointCreated:
        created = _str(raw, "created_at", 40)
        if created and not _TIMESTAMP.fullmatch(created):
            raise RecordError("created_at is not a timestamp")
        cid = _checkpoint_id(raw, "checkpoint_id", required=True)
        assert cid is not None
        stats = _object(raw, "stats")
        assert stats is not None
        env = _object(raw, "environment")
        assert env is not None
        return cls(checkpoint_id=cid,
                   parent_id=_checkpoint_id(raw, "parent_id", required=False),
                   trigger=_str(raw, "trigger"), message=_str(raw, "message", MAX_TEXT, cut=True),
                   created_at=created, stats=CheckpointStats._parse(stats),
                   git=_object(raw, "git", nullable=True), environment=env)


@dataclass(frozen=True)
class CheckpointFailed(_Record):
    TYPE: ClassVar[str] = "checkpoint_failed"
    trigger: str = ""
    error: str = ""
    message: str = ""

    @classmethod
    def _parse(cls, raw: Mapping[str, Any]) -> CheckpointFailed:
        return cls(trigger=_str(raw, "trigger"), error=_str(raw, "error", MAX_TEXT, cut=True),
                   message=_str(raw, "message", MAX_TEXT, cut=True))


@dataclass(frozen=True)
class WorkerIsolation(_Record):
    """How a local worker contains its agent (``isolation``: ``bubblewrap`` or ``none``)
    and where the model credential is (``credential``: ``local proxy`` or
    ``environment``); ``reason`` says why an agent runs uncontained
    (docs/adr/0030-local-sandbox.md)."""

    TYPE: ClassVar[str] = "worker_isolation"
    isolation: str = ""
    credential: str = ""
    reason: str = ""

    @classmethod
    def _parse(cls, raw: Mapping[str, Any]) -> WorkerIsolation:
        isolation, credential = _str(raw, "isolation"), _str(raw, "credential")
        if isolation not in (sandbox.ISOLATION_BUBBLEWRAP, sandbox.ISOLATION_NONE):
            raise RecordError(f"isolation {isolation!r} is not one a local worker reports")
        if credential not in (sandbox.CREDENTIAL_PROXY, sandbox.CREDENTIAL_ENVIRONMENT):
            raise RecordError(f"credential {credential!r} is not one a local worker reports")
        return cls(isolation=isolation, credential=credential,
                   reason=_str(raw, "reason", MAX_TEXT, cut=True))


MAX_CLIENTS = 10_000
"""The most terminal clients a record may say are attached to a session's TUI."""


@dataclass(frozen=True)
class SessionInteractive(_Record):
    """The worker runs the interactive TUI in tmux (``socket``: where its server listens,
    worker side; the daemon shows it and waits for it, never runs it)."""

    TYPE: ClassVar[str] = "session_interactive"
    socket: str = ""
    resume: bool = False
    ready: bool = False
    clients: int = 0

    @classmethod
    def _parse(cls, raw: Mapping[str, Any]) -> SessionInteractive:
        socket = _str(raw, "socket", 1024)
        if socket and (not socket.startswith("/") or "\0" in socket):
            raise RecordError("socket is not an absolute path")
        return cls(socket=socket, resume=_bool(raw, "resume"), ready=_bool(raw, "ready"),
                   clients=_int(raw, "clients", high=MAX_CLIENTS))


@dataclass(frozen=True)
class SessionAttached(_Record):
    TYPE: ClassVar[str] = "session_attached"
    clients: int = 0
    attaches: int = 0

    @classmethod
    def _parse(cls, raw: Mapping[str, Any]) -> SessionAttached:
        return cls(clients=_int(raw, "clients", high=MAX_CLIENTS), attaches=_int(raw, "attaches"))


@dataclass(frozen=True)
class SessionDetached(_Record):
    TYPE: ClassVar[str] = "session_detached"
    clients: int = 0
    detaches: int = 0

    @classmethod
    def _parse(cls, raw: Mapping[str, Any]) -> SessionDetached:
        return cls(clients=_int(raw, "clients", high=MAX_CLIENTS), detaches=_int(raw, "detaches"))


@dataclass(frozen=True)
class SessionHeadless(_Record):
    """The worker runs the headless agent again (the TUI was released)."""

    TYPE: ClassVar[str] = "session_headless"
    instruction_chars: int = 0

    @classmethod
    def _parse(cls, raw: Mapping[str, Any]) -> SessionHeadless:
        return cls(instruction_chars=_int(raw, "instruction_chars"))


SessionMode = SessionInteractive | SessionAttached | SessionDetached | SessionHeadless
"""The records that say what runs a session now (the TUI, with its clients, or not)."""

SETUP_PHASES = frozenset({"setup", "start"})
"""The phases of an environment the worker runs (:mod:`parhelia.environment`)."""
MAX_TAIL_LINES = 50
MAX_STEP_DURATION_MS = 10 * 86_400_000


def _phase(raw: Mapping[str, Any]) -> str:
    phase = _str(raw, "phase") or "setup"
    if phase not in SETUP_PHASES:
        raise RecordError(f"phase {phase!r} is not one of {sorted(SETUP_PHASES)}")
    return phase


@dataclass(frozen=True)
class SetupStarted(_Record):
    """The worker started the environment's setup (or start) commands."""

    TYPE: ClassVar[str] = "setup_started"
    phase: str = "setup"
    steps: int = 0

    @classmethod
    def _parse(cls, raw: Mapping[str, Any]) -> SetupStarted:
        return cls(phase=_phase(raw), steps=_int(raw, "steps", high=10_000))


@dataclass(frozen=True)
class SetupCompleted(_Record):
    TYPE: ClassVar[str] = "setup_completed"
    phase: str = "setup"
    steps: int = 0
    duration_ms: int = 0

    @classmethod
    def _parse(cls, raw: Mapping[str, Any]) -> SetupCompleted:
        return cls(phase=_phase(raw), steps=_int(raw, "steps", high=10_000),
                   duration_ms=_int(raw, "duration_ms", high=MAX_STEP_DURATION_MS))


@dataclass(frozen=True)
class SetupSkipped(_Record):
    """The workspace was prepared for this environment already (a warm start, a later
    incarnation on the same machine): setup did not run again."""

    TYPE: ClassVar[str] = "setup_skipped"
    hash: str = ""
    steps: int = 0

    @classmethod
    def _parse(cls, raw: Mapping[str, Any]) -> SetupSkipped:
        return cls(hash=_str(raw, "hash"), steps=_int(raw, "steps", high=10_000))


@dataclass(frozen=True)
class SetupFailed(_Record):
    """A setup or start command failed (E606); ``tail``: its last lines, redacted."""

    TYPE: ClassVar[str] = "setup_failed"
    phase: str = "setup"
    index: int = 0
    name: str = ""
    command: str = ""
    exit_code: int | None = None
    timed_out: bool = False
    duration_ms: int = 0
    tail: list[str] = field(default_factory=list)

    @classmethod
    def _parse(cls, raw: Mapping[str, Any]) -> SetupFailed:
        tail = raw.get("tail") or []
        if not isinstance(tail, list) or len(tail) > MAX_TAIL_LINES or \
                not all(isinstance(line, str) for line in tail):
            raise RecordError(f"tail is not a list of at most {MAX_TAIL_LINES} lines")
        return cls(phase=_phase(raw), index=_int(raw, "index", high=10_000),
                   name=_str(raw, "name", MAX_TEXT, cut=True),
                   command=_str(raw, "command", MAX_TEXT, cut=True),
                   exit_code=_opt_int(raw, "exit_code", low=-(2**31), high=2**31),
                   timed_out=_bool(raw, "timed_out"),
                   duration_ms=_int(raw, "duration_ms", high=MAX_STEP_DURATION_MS),
                   tail=[line[:1000] for line in tail])


SetupRecord = SetupStarted | SetupCompleted | SetupSkipped | SetupFailed
"""The records that say how the environment's setup goes."""

Typed = (Heartbeat | AgentTurnCompleted | AgentCost | AgentResult | AgentToolUse
         | WorkerStarted | WorkerExited | CheckpointCreated | CheckpointFailed | SessionMode
         | WorkerIsolation | SetupRecord)

TYPED: dict[str, type[Typed]] = {r.TYPE: r for r in (
    Heartbeat, AgentTurnCompleted, AgentCost, AgentResult, AgentToolUse, WorkerStarted,
    WorkerExited, CheckpointCreated, CheckpointFailed, SessionInteractive, SessionAttached,
    SessionDetached, SessionHeadless, WorkerIsolation, SetupStarted, SetupCompleted,
    SetupSkipped, SetupFailed)}
"""The records the daemon acts on, by type. Every other catalogue type only informs."""


@dataclass(frozen=True)
class Envelope:
    """One channel line: ``seq`` (per container, from 1), ``type``, ``at``, ``data``."""

    seq: int
    type: str
    data: dict[str, Any]
    at: str | None = None

    @classmethod
    def from_dict(cls, raw: object) -> Envelope:
        """Raises RecordError for a line that is not a record of a known type; the
        caller may still read ``seq_of(raw)`` to step over it."""
        seq = seq_of(raw)
        if seq is None:
            raise RecordError("the record has no valid seq")
        assert isinstance(raw, Mapping)
        kind = raw.get("type")
        if not isinstance(kind, str) or not is_known(kind):
            raise RecordError(f"unknown record type {str(kind)[:40]!r}")
        at = raw.get("at")
        if at is not None and (not isinstance(at, str) or not _TIMESTAMP.fullmatch(at)):
            raise RecordError("at is not a timestamp")
        data = raw.get("data", {})
        if data is None:
            data = {}
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            raise RecordError(f"{kind}: data is not an object")
        try:
            size = len(json.dumps(data, separators=(",", ":"), ensure_ascii=False))
        except (TypeError, ValueError):
            raise RecordError(f"{kind}: data is not JSON data") from None
        if size > MAX_RECORD_BYTES:
            raise RecordError(f"{kind}: data is larger than {MAX_RECORD_BYTES} bytes")
        return cls(seq=seq, type=kind, data=data, at=at)

    def typed(self) -> Typed | None:
        """The record's typed data, or None for a record that only informs. Raises
        RecordError when the data is not what its type says."""
        cls = TYPED.get(self.type)
        return cls.from_dict(self.data) if cls is not None else None


def seq_of(raw: object) -> int | None:
    """A raw line's ``seq`` when it is a valid one, else None."""
    if not isinstance(raw, Mapping):
        return None
    seq = raw.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 < seq <= MAX_SEQ:
        return None
    return seq


def is_known(kind: str) -> bool:
    """Whether ``kind`` is a channel record type (a heartbeat or a catalogue event)."""
    return kind == events.HEARTBEAT or kind in events.CATALOGUE
