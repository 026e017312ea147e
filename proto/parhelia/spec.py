"""Worker spec (daemon -> worker), result file (worker -> daemon) and exit codes.

The daemon writes ``specs/<container_id>.json`` and starts
``python -m modal_worker run SPEC``; the worker writes ``results/<container_id>.json``
before it exits with a code from ``ExitCode``. See docs/contracts.md.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

from parhelia.backends import BACKENDS, DEFAULT_BACKEND
from parhelia.credentials import CREDENTIAL_VARS
from parhelia.environment import (
    DEFAULT_SETUP_TIMEOUT_SECONDS,
    MAX_STEP_CHARS,
    MAX_STEPS,
    Step,
    WorkerEnvironment,
    variable_problem,
)
from parhelia.errors import ParheliaError
from parhelia.permissions import DEFAULT_PERMISSION_MODE, PERMISSION_MODES
from parhelia.risky import DEFAULT_RISKY_PATTERNS
from parhelia.sandbox import MODE_AUTO, MODE_REQUIRED, SandboxSpec
from parhelia.sshkey import InvalidPublicKey, check_public_key
from parhelia.volume import atomic_write_bytes, validate_key

SPEC_VERSION = 1
RESULT_VERSION = 1
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ExitCode(IntEnum):
    """Worker exit codes (docs/contracts.md)."""

    COMPLETED = 0
    FAILED = 1
    INVALID_SPEC = 2
    NO_CREDENTIALS = 3
    AGENT_NOT_FOUND = 4
    RESTORE_FAILED = 5
    SETUP_FAILED = 6
    TIMEOUT = 124
    STOPPED = 130
    TERMINATED = 143

    @property
    def status(self) -> str:
        """The ``status`` written to the result file for this code."""
        if self is ExitCode.COMPLETED:
            return "completed"
        if self is ExitCode.TIMEOUT:
            return "timeout"
        if self in (ExitCode.STOPPED, ExitCode.TERMINATED):
            return "stopped"
        return "failed"

    @property
    def error_code(self) -> str | None:
        """The catalogue code that goes with this exit code, if any."""
        return _ERROR_CODES.get(self)


RESULT_STATUSES = frozenset(code.status for code in ExitCode)
"""The ``status`` words a result file may carry."""
MAX_RESULT_TEXT = 8000


_ERROR_CODES = {
    ExitCode.INVALID_SPEC: "E100",
    ExitCode.NO_CREDENTIALS: "E400",
    ExitCode.AGENT_NOT_FOUND: "E500",
    ExitCode.RESTORE_FAILED: "E600",
    ExitCode.SETUP_FAILED: "E606",
    ExitCode.TIMEOUT: "E501",
}


@dataclass
class AgentSpec:
    session_uuid: str
    command: list[str] = field(default_factory=lambda: ["claude"])
    resume: bool = False
    model: str | None = None
    permission_mode: str = DEFAULT_PERMISSION_MODE
    max_turns: int | None = 50
    max_budget_usd: float | None = None
    timeout_seconds: float = 3600
    project_settings: bool = False
    """Load the workspace's own Claude Code settings (.claude/settings*.json: hooks, env,
    apiKeyHelper, permissions; .mcp.json; project skills and CLAUDE.md). Only for a project
    the user trusts: otherwise the agent runs with ``--setting-sources user`` and gets the
    project's CLAUDE.md as text (docs/adr/0019-project-claude-settings.md)."""
    interactive: bool = False
    """Run the interactive TUI in tmux (:mod:`modal_worker.tui`) instead of ``claude -p``."""
    permission_mode_contained: str | None = None
    """The mode when the agent runs contained (a Modal sandbox; the local worker's
    container): the sandbox is the boundary, so a task that did not choose its mode gets
    ``bypassPermissions`` there. None: ``permission_mode`` either way."""
    allowed_tools: list[str] = field(default_factory=list)
    """``--allowedTools`` entries (``Bash(pytest:*)``): the environment's ``allow_commands``
    within what the user allows, for an agent that runs with a narrower mode."""


@dataclass
class CheckpointPolicy:
    interval_seconds: float = 300
    risky_patterns: list[str] = field(default_factory=lambda: list(DEFAULT_RISKY_PATTERNS))


CHANNEL_KINDS = frozenset({"spool"})


@dataclass
class ChannelSpec:
    """How the worker talks to the daemon (docs/contracts.md): ``spool`` = JSON lines
    appended to ``spool_key`` on the volume; control messages read from ``control_key``.
    Empty keys mean the defaults for the container (``spool/<id>.jsonl``...)."""

    kind: str = "spool"
    spool_key: str = ""
    control_key: str = ""


@dataclass
class WorkerSpec:
    container_id: str
    task_id: str
    session_id: str
    volume_dir: str
    workspace_dir: str
    claude_config_dir: str
    prompt: str
    agent: AgentSpec
    incarnation: int = 1
    backend: str = DEFAULT_BACKEND
    restore_checkpoint_id: str | None = None
    heartbeat_interval_seconds: float = 5
    checkpoint: CheckpointPolicy = field(default_factory=CheckpointPolicy)
    config_bundle_id: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    task_prompt: str | None = None
    """The task's own prompt (``prompt`` is the continuation prompt on a resume): what a
    resume that cannot continue the stored conversation starts over from."""
    channel: ChannelSpec = field(default_factory=ChannelSpec)
    volume_sync_argv: list[str] = field(default_factory=list)
    """Run after each checkpoint and after the result so the daemon's side of the volume
    sees them (``sync /vol`` on Modal); empty where both sides are one directory."""
    tmux_socket: str | None = None
    """Where the interactive TUI's tmux server listens (its directory is made private);
    None: :func:`parhelia.tuisocket.socket_path` of the container."""
    ssh_authorized_key: str | None = None
    """The session's public key (``ssh-ed25519 ...``): the worker runs sshd for `session
    attach --ssh` and reports its host key (:mod:`modal_worker.sshd`). Never a private key."""
    sandbox: SandboxSpec | None = None
    """Contain the agent in a bubblewrap container (local workers: :mod:`parhelia.container`);
    None: run it as the worker's own child, uncontained (Modal, where the sandbox is the
    container, or ``sandbox.local = "off"``)."""
    environment: WorkerEnvironment | None = None
    """What the task's environment asks of the worker (:mod:`parhelia.environment`):
    env, setup and start commands, setup secrets, caches. None: nothing to apply."""
    version: int = SPEC_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: object) -> WorkerSpec:
        """Parse and validate; raises ``ParheliaError('E100')`` naming the bad field."""
        return _parse_spec(raw)


def load_spec(path: Path | str) -> WorkerSpec:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParheliaError("E100", f"worker spec not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise ParheliaError("E100", f"worker spec {path} is not valid JSON: {exc}") from None
    return _parse_spec(raw)


def dump_spec(spec: WorkerSpec, path: Path | str) -> None:
    _parse_spec(spec.to_dict())  # never write a spec the worker would refuse
    data = json.dumps(spec.to_dict(), indent=2, sort_keys=True).encode()
    atomic_write_bytes(Path(path), data + b"\n", mode=0o600)


# -- validation -------------------------------------------------------------------------


def _bad(name: str, why: str) -> ParheliaError:
    return ParheliaError("E100", f"worker spec field {name!r}: {why}", field=name)


class _Fields:
    def __init__(self, raw: object, prefix: str) -> None:
        if not isinstance(raw, Mapping):
            raise _bad(prefix or "spec", "must be a JSON object")
        self.raw = raw
        self.prefix = prefix

    def name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def get(self, key: str, default: object = ...) -> object:
        if key not in self.raw or self.raw[key] is None:
            if default is ...:
                raise _bad(self.name(key), "is required")
            return default
        return self.raw[key]

    def str_(self, key: str, default: object = ..., *,
             pattern: re.Pattern[str] | None = None) -> Any:
        if key not in self.raw or self.raw[key] is None:
            return self.get(key, default)
        value = self.raw[key]
        if not isinstance(value, str) or not value:
            raise _bad(self.name(key), "must be a non-empty string")
        if pattern is not None and not pattern.match(value):
            raise _bad(self.name(key), f"has an invalid format: {value!r}")
        return value

    def abs_path(self, key: str) -> str:
        value = self.str_(key)
        if not value.startswith("/") or "\0" in value:
            raise _bad(self.name(key), "must be an absolute path")
        return str(value)

    def number(self, key: str, default: object = ..., *, integer: bool = False,
               positive: bool = True) -> Any:
        value = self.get(key, default)
        if value is None:
            return None
        ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok_type:
            raise _bad(self.name(key), "must be an integer" if integer else "must be a number")
        if not math.isfinite(value):
            raise _bad(self.name(key), "must be finite")
        if positive and value <= 0:
            raise _bad(self.name(key), "must be positive")
        return value


def _parse_agent(raw: object) -> AgentSpec:
    f = _Fields(raw, "agent")
    command = f.get("command", ["claude"])
    if (not isinstance(command, list) or not command
            or not all(isinstance(a, str) and a and "\0" not in a for a in command)):
        raise _bad("agent.command", "must be a non-empty list of non-empty strings")
    session_uuid = f.str_("session_uuid")
    try:
        uuid.UUID(session_uuid)
    except ValueError:
        raise _bad("agent.session_uuid", "must be a UUID") from None
    resume = f.get("resume", False)
    if not isinstance(resume, bool):
        raise _bad("agent.resume", "must be true or false")
    mode = f.str_("permission_mode", DEFAULT_PERMISSION_MODE)
    if mode not in PERMISSION_MODES:
        raise _bad("agent.permission_mode", f"must be one of {list(PERMISSION_MODES)}")
    project_settings = f.get("project_settings", False)
    if not isinstance(project_settings, bool):
        raise _bad("agent.project_settings", "must be true or false")
    interactive = f.get("interactive", False)
    if not isinstance(interactive, bool):
        raise _bad("agent.interactive", "must be true or false")
    contained = f.str_("permission_mode_contained", None)
    if contained is not None and contained not in PERMISSION_MODES:
        raise _bad("agent.permission_mode_contained",
                   f"must be one of {list(PERMISSION_MODES)}")
    allowed = f.get("allowed_tools", [])
    if not isinstance(allowed, list) or not all(
            isinstance(t, str) and t and "\0" not in t and len(t) <= MAX_STEP_CHARS
            for t in allowed):
        raise _bad("agent.allowed_tools", "must be a list of non-empty strings")
    return AgentSpec(
        session_uuid=session_uuid,
        command=list(command),
        resume=resume,
        model=f.str_("model", None),
        permission_mode=mode,
        max_turns=f.number("max_turns", None, integer=True),
        max_budget_usd=f.number("max_budget_usd", None),
        timeout_seconds=f.number("timeout_seconds", 3600),
        project_settings=project_settings,
        interactive=interactive,
        permission_mode_contained=contained,
        allowed_tools=list(allowed),
    )


def _parse_policy(raw: object) -> CheckpointPolicy:
    f = _Fields(raw, "checkpoint")
    patterns = f.get("risky_patterns", CheckpointPolicy().risky_patterns)
    if not isinstance(patterns, list) or not all(isinstance(p, str) and p for p in patterns):
        raise _bad("checkpoint.risky_patterns", "must be a list of non-empty strings")
    return CheckpointPolicy(
        interval_seconds=f.number("interval_seconds", 300),
        risky_patterns=list(patterns),
    )


def _parse_env(raw: object, name: str = "env") -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise _bad(name, "must be an object of strings")
    env: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not _ENV_NAME_RE.match(key):
            raise _bad(name, f"invalid variable name {key!r}")
        if key in CREDENTIAL_VARS:
            raise _bad(f"{name}.{key}",
                       "credentials never go in a spec; use the worker environment")
        if not isinstance(value, str) or "\0" in value:
            raise _bad(f"{name}.{key}", "must be a string")
        env[key] = value
    return env


def _parse_steps(raw: object, name: str) -> tuple[Step, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list | tuple) or len(raw) > MAX_STEPS:
        raise _bad(name, f"must be a list of at most {MAX_STEPS} commands")
    steps = []
    for i, item in enumerate(raw):
        f = _Fields(item, f"{name}[{i}]")
        run = f.get("run", "")
        argv = f.get("argv", [])
        label = f.get("name", f"{name}[{i + 1}]")
        if not isinstance(run, str) or "\0" in run or len(run) > MAX_STEP_CHARS:
            raise _bad(f"{name}[{i}].run", "must be a command line")
        if not isinstance(argv, list | tuple) or not all(
                isinstance(a, str) and "\0" not in a and len(a) <= MAX_STEP_CHARS
                for a in argv) or (argv and not argv[0]):
            raise _bad(f"{name}[{i}].argv", "must be a list of strings, the first non-empty")
        if bool(run) == bool(argv):
            raise _bad(f"{name}[{i}]", "needs either run or argv")
        if not isinstance(label, str) or not label or len(label) > 200:
            raise _bad(f"{name}[{i}].name", "must be a short non-empty string")
        steps.append(Step(name=label, run=run, argv=tuple(argv)))
    return tuple(steps)


def _parse_environment(raw: object) -> WorkerEnvironment | None:
    if raw is None:
        return None
    f = _Fields(raw, "environment")
    secrets = f.get("setup_secrets", [])
    if not isinstance(secrets, list | tuple) or not all(
            isinstance(n, str) and _ENV_NAME_RE.match(n) for n in secrets):
        raise _bad("environment.setup_secrets", "must be a list of variable names")
    cache_dirs = f.get("cache_dirs", [])
    if not isinstance(cache_dirs, list | tuple) or not all(
            isinstance(d, str) and d and "\0" not in d and (d.startswith(("/", "~/")))
            and ".." not in d.split("/") for d in cache_dirs):
        raise _bad("environment.cache_dirs", "must be a list of absolute or ~/ directories")
    cache_root = f.abs_path("cache_root") if f.get("cache_root", None) else None
    env = _parse_env(f.get("env", {}), "environment.env")
    for name in [*env, *secrets]:
        why = variable_problem(name)
        if why is not None:
            raise _bad(f"environment.{name}", why)
    for name in secrets:
        if name in env:
            raise _bad("environment.env", f"{name} is a setup secret; it cannot also be set")
    return WorkerEnvironment(
        hash=f.str_("hash", pattern=_ID_RE), env=env,
        setup=_parse_steps(f.get("setup", []), "environment.setup"),
        start=_parse_steps(f.get("start", []), "environment.start"),
        setup_secrets=tuple(secrets), cache_root=cache_root, cache_dirs=tuple(cache_dirs),
        setup_timeout_seconds=f.number("setup_timeout_seconds",
                                       DEFAULT_SETUP_TIMEOUT_SECONDS))


def _parse_channel(raw: object) -> ChannelSpec:
    f = _Fields(raw, "channel")
    kind = f.str_("kind", "spool")
    if kind not in CHANNEL_KINDS:
        raise _bad("channel.kind", f"must be one of {sorted(CHANNEL_KINDS)}")
    keys = {}
    for name in ("spool_key", "control_key"):
        value = f.get(name, "")
        if not isinstance(value, str):
            raise _bad(f"channel.{name}", "must be a string")
        if value:
            try:
                validate_key(value)
            except ValueError as exc:
                raise _bad(f"channel.{name}", str(exc)) from None
        keys[name] = value
    return ChannelSpec(kind=kind, **keys)


def _parse_argv(raw: object, name: str) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(a, str) and a and "\0" not in a
                                            for a in raw):
        raise _bad(name, "must be a list of non-empty strings")
    return list(raw)


def _parse_sandbox(raw: object) -> SandboxSpec | None:
    if raw is None:
        return None
    f = _Fields(raw, "sandbox")
    mode = f.str_("mode", MODE_AUTO)
    if mode not in (MODE_AUTO, MODE_REQUIRED):
        raise _bad("sandbox.mode", f"must be {MODE_AUTO} or {MODE_REQUIRED}")
    lists = {}
    for name in ("hide", "read_only"):
        value = f.get(name, [])
        if not isinstance(value, list) or not all(
                isinstance(p, str) and p.startswith("/") and "\0" not in p for p in value):
            raise _bad(f"sandbox.{name}", "must be a list of absolute paths")
        lists[name] = list(value)
    return SandboxSpec(mode=mode, **lists)


def _parse_spec(raw: object) -> WorkerSpec:
    f = _Fields(raw, "")
    version = f.get("version", SPEC_VERSION)
    if version != SPEC_VERSION:
        raise _bad("version", f"unsupported version {version!r} (this worker reads {SPEC_VERSION})")
    backend = f.str_("backend", DEFAULT_BACKEND)
    if backend not in BACKENDS:
        raise _bad("backend", f"must be one of {list(BACKENDS)}")
    spec = WorkerSpec(
        container_id=f.str_("container_id", pattern=_ID_RE),
        task_id=f.str_("task_id", pattern=_ID_RE),
        session_id=f.str_("session_id", pattern=_ID_RE),
        incarnation=f.number("incarnation", 1, integer=True),
        backend=backend,
        volume_dir=f.abs_path("volume_dir"),
        workspace_dir=f.abs_path("workspace_dir"),
        claude_config_dir=f.abs_path("claude_config_dir"),
        restore_checkpoint_id=f.str_("restore_checkpoint_id", None, pattern=_ID_RE),
        prompt=f.str_("prompt"),
        agent=_parse_agent(f.get("agent")),
        heartbeat_interval_seconds=f.number("heartbeat_interval_seconds", 5),
        checkpoint=_parse_policy(f.get("checkpoint", {})),
        config_bundle_id=f.str_("config_bundle_id", None, pattern=_ID_RE),
        env=_parse_env(f.get("env", {})),
        task_prompt=f.str_("task_prompt", None),
        channel=_parse_channel(f.get("channel", {})),
        volume_sync_argv=_parse_argv(f.get("volume_sync_argv", []), "volume_sync_argv"),
        tmux_socket=f.abs_path("tmux_socket") if f.get("tmux_socket", None) else None,
        ssh_authorized_key=f.str_("ssh_authorized_key", None),
        sandbox=_parse_sandbox(f.get("sandbox", None)),
        environment=_parse_environment(f.get("environment", None)),
    )
    if spec.ssh_authorized_key is not None:
        try:
            check_public_key(spec.ssh_authorized_key)
        except InvalidPublicKey as exc:
            raise _bad("ssh_authorized_key", str(exc)) from None
    if "\0" in spec.prompt:
        raise _bad("prompt", "must not contain NUL characters")
    if spec.task_prompt is not None and "\0" in spec.task_prompt:
        raise _bad("task_prompt", "must not contain NUL characters")
    if Path(spec.workspace_dir) == Path(spec.workspace_dir).parent:
        raise _bad("workspace_dir", "must not be the filesystem root")
    return spec


# -- result file ------------------------------------------------------------------------


@dataclass
class WorkerResult:
    """``results/<container_id>.json``: the durable outcome of one incarnation."""

    container_id: str
    task_id: str
    session_id: str
    incarnation: int
    exit_code: int
    status: str
    started_at: str
    finished_at: str
    error_code: str | None = None
    error_message: str | None = None
    last_checkpoint_id: str | None = None
    checkpoints: list[str] = field(default_factory=list)
    agent: dict[str, Any] | None = None
    version: int = RESULT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: object) -> WorkerResult:
        """Parse a result file. It is written inside the sandbox, where the agent runs: a
        wrong type, an unknown status, an id of the wrong form or an oversized text is a
        ``ValueError`` (the daemon then treats the container as ending without a result);
        texts are cut at :data:`MAX_RESULT_TEXT`."""
        if not isinstance(raw, Mapping):
            raise ValueError("a result is a JSON object")
        got = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        for name in ("container_id", "task_id", "session_id"):
            value = got.get(name)
            # (a worker whose spec was unreadable knows only its container id)
            if not isinstance(value, str) or not (_ID_RE.match(value) or (
                    value == "" and name != "container_id")):
                raise ValueError(f"result.{name}: not an id")
        for name in ("incarnation", "exit_code", "version"):
            value = got.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, int) or abs(value) > 2**31:
                raise ValueError(f"result.{name}: not an integer")
        if got.get("status") not in RESULT_STATUSES:
            raise ValueError("result.status: unknown")
        for name in ("started_at", "finished_at", "error_code", "error_message",
                     "last_checkpoint_id"):
            value = got.get(name)
            if value is None and name not in ("started_at", "finished_at"):
                continue
            if not isinstance(value, str):
                raise ValueError(f"result.{name}: not text")
            got[name] = value[:MAX_RESULT_TEXT]
        checkpoints = got.get("checkpoints", [])
        if not isinstance(checkpoints, list) or len(checkpoints) > 100_000 or not all(
                isinstance(c, str) and _ID_RE.match(c) for c in checkpoints):
            raise ValueError("result.checkpoints: not a list of ids")
        if got.get("agent") is not None and not isinstance(got["agent"], dict):
            raise ValueError("result.agent: not an object")
        return cls(**got)


def dump_result(result: WorkerResult, path: Path | str) -> None:
    data = json.dumps(result.to_dict(), indent=2, sort_keys=True).encode()
    atomic_write_bytes(Path(path), data + b"\n")


def load_result(path: Path | str) -> WorkerResult:
    return WorkerResult.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
