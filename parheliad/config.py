"""Configuration: the schema, defaults and loading of ``config.toml``.

Effective configuration = defaults < user file < project file. The user file is
``parhelia.paths.Paths.config_file``; the project file is the nearest
``.parhelia/config.toml`` at or above the project directory of a request.

The schema is the dataclasses below and nothing else: every key in a file must be
one of their fields (else E101 naming key and file), of the right type (else E101),
and every field is used by the daemon. Keys that shape the whole daemon (``daemon``,
``orchestrator``, ``reconciler``, ``budget``, ``rates``, ``modal.volume_name``...) are
*daemon-wide*: a per-user daemon serves every project, so a project file may not set
them (E101 says so) — only per-task keys (``modal.cpu_count``, ``agent.*``...) can be
overridden per project.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from parhelia import ownership, sandbox
from parhelia.backends import BACKENDS, DEFAULT_BACKEND
from parhelia.credentials import GITHUB_TOKEN_VARS
from parhelia.environment import DEFAULT_NETWORK, NETWORK_LEVELS
from parhelia.errors import ParheliaError
from parhelia.gpus import GPU_TYPES
from parhelia.paths import Paths
from parhelia.permissions import DEFAULT_PERMISSION_MODE, PERMISSION_MODES
from parhelia.permissions import wider as permission_wider
from parhelia.risky import DEFAULT_RISKY_PATTERNS

PROJECT_CONFIG = Path(".parhelia") / "config.toml"
MAX_CONFIG_BYTES = 1 << 20

PROJECT_LIMITED = ("agent.permission_mode", "agent.max_turns", "modal.default_timeout_hours",
                   "modal.cpu_count", "modal.memory_mb", "orchestrator.default_backend",
                   "agent.model")
"""Per-task keys a project file (perhaps from a cloned repository) may only narrow:
lower or equal to what the user's own config allows (the backend: the same one; the
model: one priced no higher per token at the user's rates)."""

# Modal sandbox prices, USD per second (Modal's published prices, late 2026). Defaults only.
DEFAULT_GPU_RATES: dict[str, str] = dict(zip(GPU_TYPES, (
    "0.000164", "0.000222", "0.000306", "0.000542", "0.000583", "0.000694", "0.001097",
    "0.001261", "0.001736"), strict=True))
"""Per GPU, in the order of :data:`parhelia.gpus.GPU_TYPES` (T4 ... B200)."""

# Anthropic API prices, USD per million tokens, by model family (a model name containing
# the key; longest key first; "default" for anything else, e.g. the agent's own default).
# Cache writes cost 1.25x and cache reads 0.1x the input price (parheliad.core.budget).
DEFAULT_MODEL_INPUT_RATES: dict[str, str] = {"opus": "5", "sonnet": "3", "haiku": "1",
                                             "default": "5"}
DEFAULT_MODEL_OUTPUT_RATES: dict[str, str] = {"opus": "25", "sonnet": "15", "haiku": "5",
                                              "default": "25"}
MODEL_KEY_RE = r"^[a-z0-9][a-z0-9._-]{0,63}$"


def _meta(help: str, *, project: bool = False, minimum: float | None = None,
          maximum: float | None = None, choices: tuple[str, ...] | None = None,
          restart: bool = False) -> dict[str, Any]:
    """``restart``: the daemon reads the key once, at start (a reload keeps using the
    old value and says a restart is needed)."""
    return {"help": help, "project": project, "min": minimum, "max": maximum, "choices": choices,
            "restart": restart}


@dataclass(frozen=True)
class ModalConfig:
    app_name: str = field(default="parhelia", metadata=_meta(
        "Modal app the sandboxes run under (created by `parhelia modal setup`).", restart=True))
    volume_name: str = field(default="parhelia-data", metadata=_meta(
        "Name of the modal.Volume holding checkpoints and results.", restart=True))
    secret_name: str = field(default="anthropic-api-key", metadata=_meta(
        "Modal secret holding ANTHROPIC_API_KEY (or CLAUDE_CODE_OAUTH_TOKEN) for workers; "
        "without it the daemon's own credential is sent as an ephemeral secret.", restart=True))
    github_secret_name: str = field(default="github-token", metadata=_meta(
        "Modal secret holding GITHUB_TOKEN: when the daemon has no GitHub token of its own, "
        "a Modal task's private repository is cloned in a short-lived sandbox of its own "
        "with this secret (never in the agent's sandbox)."))
    call_timeout_seconds: float = field(default=60.0, metadata=_meta(
        "Limit for one Modal API call; past it Modal counts as unreachable (nothing is "
        "stopped).", minimum=1, maximum=600, restart=True))
    launch_timeout_seconds: float = field(default=1500.0, metadata=_meta(
        "Limit for creating a sandbox (a GPU can wait ~21 minutes for capacity).",
        minimum=10, maximum=7200, restart=True))
    cpu_count: float = field(default=4.0, metadata=_meta(
        "Default physical cores per task container.", project=True, minimum=0.125, maximum=64))
    memory_mb: int = field(default=16384, metadata=_meta(
        "Default memory per task container, MiB.", project=True, minimum=128, maximum=1048576))
    default_timeout_hours: float = field(default=4.0, metadata=_meta(
        "Default task timeout, hours.", project=True, minimum=0.001, maximum=24))


@dataclass(frozen=True)
class BudgetConfig:
    default_ceiling_usd: Decimal = field(default=Decimal("50"), metadata=_meta(
        "Spending ceiling until `parhelia budget set` changes it.", minimum=0))
    warning_threshold_percent: int = field(default=80, metadata=_meta(
        "Emit E301 once spending crosses this share of the ceiling.", minimum=1, maximum=100))
    period: str = field(default="month", metadata=_meta(
        "Budget period: the ceiling applies per calendar month (UTC) or in total.",
        choices=("month", "total")))
    accrual_interval_seconds: float = field(default=10.0, metadata=_meta(
        "How often compute is accrued and the ceiling, warning and per-task caps are "
        "enforced.", minimum=0.2, maximum=3600))
    agent_max_ceiling_usd: Decimal = field(default=Decimal("0"), metadata=_meta(
        "The highest ceiling an agent may set through the MCP bridge (parhelia_budget_set); "
        "0 = an agent may lower the ceiling but never raise it. Daemon-wide.", minimum=0))
    usage_settle_seconds: float = field(default=600.0, metadata=_meta(
        "How long after a Modal container ends before the reconciler replaces its compute "
        "estimate (at the [rates]) with Modal's own usage figure, which lags a few minutes.",
        minimum=0, maximum=86400))


@dataclass(frozen=True)
class OrchestratorConfig:
    db_path: str = field(default="parheliad.db", metadata=_meta(
        "SQLite database; a relative path is under the state directory.", restart=True))
    max_concurrent_workers: int = field(default=10, metadata=_meta(
        "Tasks running at once, over all backends.", minimum=1, maximum=1000))
    default_backend: str = field(default=DEFAULT_BACKEND, metadata=_meta(
        "Backend for tasks that do not choose one.", project=True, choices=BACKENDS))
    dispatch_interval_seconds: float = field(default=5.0, metadata=_meta(
        "How often pending tasks are considered besides on create.", minimum=0.1, maximum=3600))
    cancel_grace_seconds: float = field(default=10.0, metadata=_meta(
        "Time a cancelled worker gets to checkpoint before it is killed.", minimum=0, maximum=600))


@dataclass(frozen=True)
class ReconcilerConfig:
    poll_interval_seconds: float = field(default=60.0, metadata=_meta(
        "How often the database is compared with the backends.", minimum=1, maximum=86400))
    stale_threshold_seconds: float = field(default=300.0, metadata=_meta(
        "Silence after which a running container counts as lost.", minimum=1, maximum=86400))
    auto_terminate_orphans: bool = field(default=False, metadata=_meta(
        "Terminate owner-tagged containers the database does not own."))


DEFAULT_ALLOW_COMMANDS = ("pytest", "python -m pytest", "python3 -m pytest", "uv run pytest",
                          "tox", "npm test", "npm run test", "pnpm test", "yarn test",
                          "cargo test", "cargo build", "go test", "go build", "make test",
                          "bundle exec rspec")
"""Test and build runners a project may pre-approve by default (``agent.allow_commands``)."""


@dataclass(frozen=True)
class AgentConfig:
    command: list[str] = field(default_factory=lambda: ["claude"], metadata=_meta(
        "Agent argv prefix (a string is one program path). Daemon-wide: a project file "
        "(perhaps from a cloned repository) never chooses what the daemon executes."))
    model: str = field(default="", metadata=_meta(
        "Default model (--model); empty = the agent's own default.", project=True))
    permission_mode: str = field(default=DEFAULT_PERMISSION_MODE, metadata=_meta(
        "Default --permission-mode.", project=True, choices=PERMISSION_MODES))
    max_turns: int = field(default=50, metadata=_meta(
        "Default --max-turns: an agent never stops by itself without it.", project=True,
        minimum=1, maximum=1000))
    allow_commands: list[str] = field(default_factory=lambda: list(DEFAULT_ALLOW_COMMANDS),
                                      metadata=_meta(
        "Commands a repository's environment may let the agent run without asking when it "
        "runs uncontained (its allow_commands must be among these, or start with one and a "
        "space). Only your own config sets it."))
    trusted_projects: list[str] = field(default_factory=list, metadata=_meta(
        "Absolute directories (~ allowed) whose projects you trust as with "
        "--trust-project-config: their .parhelia config may widen options and Claude Code "
        "loads their .claude/ settings, hooks and .mcp.json. Only your own config sets it."))


@dataclass(frozen=True)
class EnvironmentConfig:
    network: str = field(default=DEFAULT_NETWORK, metadata=_meta(
        "The widest network level a task's agent gets (full | trusted | none); a "
        "repository's environment file may only narrow it.", choices=NETWORK_LEVELS))
    setup_timeout_minutes: float = field(default=30.0, metadata=_meta(
        "How long an environment's setup and start commands may take in all, unless its "
        "file says otherwise.", minimum=1, maximum=240))
    cache: bool = field(default=True, metadata=_meta(
        "Keep dependency caches (pip, uv, npm, cargo...) between tasks of a repository on a "
        "Modal volume of its own."))
    snapshot_ttl_hours: float = field(default=72.0, metadata=_meta(
        "How long a prepared sandbox filesystem is kept for warm starts (a cache; "
        "checkpoints stay the truth).", minimum=1, maximum=720))
    build_timeout_minutes: float = field(default=60.0, metadata=_meta(
        "Limit for building one environment image on Modal.", minimum=1, maximum=240))


@dataclass(frozen=True)
class CheckpointConfig:
    interval_seconds: float = field(default=300.0, metadata=_meta(
        "Periodic checkpoint interval.", minimum=5, maximum=86400))
    risky_patterns: list[str] = field(
        default_factory=lambda: list(DEFAULT_RISKY_PATTERNS), metadata=_meta(
        "Bash commands matching these substrings are checkpointed before they run."))
    keep_last: int = field(default=20, metadata=_meta(
        "checkpoint gc keeps this many newest automatic checkpoints per session.",
        minimum=1, maximum=100000))
    max_age_days: float = field(default=30.0, metadata=_meta(
        "checkpoint gc removes automatic checkpoints older than this (beyond keep_last).",
        minimum=0.01, maximum=36500))


@dataclass(frozen=True)
class RecoveryConfig:
    max_restarts: int = field(default=3, metadata=_meta(
        "Automatic resumes of a task whose worker died.", minimum=0, maximum=100))
    backoff_seconds: float = field(default=5.0, metadata=_meta(
        "Delay before the first automatic resume; doubles each time.", minimum=0, maximum=3600))
    backoff_max_seconds: float = field(default=300.0, metadata=_meta(
        "Cap on the resume delay.", minimum=0, maximum=86400))


@dataclass(frozen=True)
class HeartbeatConfig:
    interval_seconds: float = field(default=5.0, metadata=_meta(
        "Worker heartbeat interval; health counts missed intervals.", minimum=0.1, maximum=600))
    retention_per_container: int = field(default=1000, metadata=_meta(
        "Heartbeats kept per container.", minimum=10, maximum=1000000))


@dataclass(frozen=True)
class SyncConfig:
    pass_env: list[str] = field(default_factory=list, metadata=_meta(
        "Names of settings/MCP env values passed to workers as environment variables."))
    exclude_mcp: list[str] = field(default_factory=list, metadata=_meta(
        "MCP servers never sent to workers."))


@dataclass(frozen=True)
class SandboxConfig:
    local: str = field(default=sandbox.DEFAULT_MODE, metadata=_meta(
        "How a local worker contains its agent (docs/adr/0030-local-sandbox.md): auto = in "
        "a bubblewrap container when one can be made here, else uncontained and said so; "
        "required = a task that cannot be contained fails (E609); off = never. "
        "Daemon-wide.", choices=sandbox.MODES, restart=True))
    read_only: list[str] = field(default_factory=list, metadata=_meta(
        "Absolute paths (~ allowed) below your home the contained agent may read, such as "
        "a toolchain it needs (~/.nvm, ~/.cargo). Daemon-wide.", restart=True))


@dataclass(frozen=True)
class NotifyConfig:
    command: list[str] = field(default_factory=list, metadata=_meta(
        "Program (argv list, never a shell) run when a task ends or needs you; the task as "
        "JSON on stdin, a minimal environment without credentials. Daemon-wide: a project "
        "file never chooses what the daemon executes."))
    desktop: bool = field(default=False, metadata=_meta(
        "Also show a desktop notification (notify-send, or osascript on macOS) when one "
        "is available."))
    timeout_seconds: float = field(default=10.0, metadata=_meta(
        "Limit for the notification command; past it the command is killed.",
        minimum=0.1, maximum=600))


@dataclass(frozen=True)
class RatesConfig:
    cpu_core_per_second: Decimal = field(default=Decimal("0.00003942"), metadata=_meta(
        "USD per physical core per second.", minimum=0))
    memory_gib_per_second: Decimal = field(default=Decimal("0.00000672"), metadata=_meta(
        "USD per GiB of memory per second.", minimum=0))
    gpu: dict[str, Decimal] = field(default_factory=lambda: {
        k: Decimal(v) for k, v in DEFAULT_GPU_RATES.items()}, metadata=_meta(
        "USD per GPU per second, by GPU type."))
    model_input_per_mtok: dict[str, Decimal] = field(default_factory=lambda: {
        k: Decimal(v) for k, v in DEFAULT_MODEL_INPUT_RATES.items()}, metadata=_meta(
        "USD per million input tokens by model family (opus, sonnet, haiku, default); "
        "prices in-flight API spend and estimates."))
    model_output_per_mtok: dict[str, Decimal] = field(default_factory=lambda: {
        k: Decimal(v) for k, v in DEFAULT_MODEL_OUTPUT_RATES.items()}, metadata=_meta(
        "USD per million output tokens by model family (opus, sonnet, haiku, default)."))


def model_family(rates: RatesConfig, model: str) -> str:
    """The price key for ``model``: the longest key contained in its name, else default."""
    name = model.lower()
    keys = sorted((k for k in rates.model_input_per_mtok if k != "default"),
                  key=len, reverse=True)
    return next((k for k in keys if k in name), "default")


Prices = tuple[str, Decimal, Decimal]
"""(family, USD per million input tokens, per million output tokens)."""


def model_prices(rates: RatesConfig, model: str) -> Prices:
    """(family, USD per million input tokens, per million output tokens)."""
    family = model_family(rates, model)
    default_in = rates.model_input_per_mtok.get("default", Decimal(0))
    default_out = rates.model_output_per_mtok.get("default", Decimal(0))
    return (family, rates.model_input_per_mtok.get(family, default_in),
            rates.model_output_per_mtok.get(family, default_out))


def pricier_model(rates: RatesConfig, theirs: str, mine: str) -> bool:
    """Whether ``theirs`` costs more per input or output token than ``mine`` at the
    user's rates ("" is the agent's own default, priced as the ``default`` family)."""
    _, their_in, their_out = model_prices(rates, theirs)
    _, my_in, my_out = model_prices(rates, mine)
    return their_in > my_in or their_out > my_out


@dataclass(frozen=True)
class GitHubConfig:
    hosts: list[str] = field(default_factory=lambda: ["github.com"], metadata=_meta(
        "Hosts (host or host:port) whose repositories are on GitHub: their clones and "
        "pushes get the GitHub token, and `task pr` opens pull requests through GitHub's "
        "REST API. Add a GitHub Enterprise Server host here."))
    api_url: str = field(default="", metadata=_meta(
        "REST API base of the hosts other than github.com (\"\" = https://HOST/api/v3); "
        "github.com always uses https://api.github.com."))
    draft: bool = field(default=False, metadata=_meta(
        "Open pull requests as drafts unless `task pr --ready` says otherwise."))


@dataclass(frozen=True)
class DaemonConfig:
    log_level: str = field(default="info", metadata=_meta(
        "Log level of parheliad.", choices=("debug", "info", "warning", "error"), restart=True))


@dataclass(frozen=True)
class Config:
    modal: ModalConfig = field(default_factory=ModalConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    orchestrator: OrchestratorConfig = field(default_factory=OrchestratorConfig)
    reconciler: ReconcilerConfig = field(default_factory=ReconcilerConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    environment: EnvironmentConfig = field(default_factory=EnvironmentConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    rates: RatesConfig = field(default_factory=RatesConfig)
    github: GitHubConfig = field(default_factory=GitHubConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)
    files: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)
    """What the files hold that is accepted but ignored (:data:`RETIRED` keys)."""

    def source(self, key: str) -> str:
        return self.sources.get(key, "default")


RETIRED: dict[str, str] = {
    "checkpoint.min_turn_interval_seconds": "no longer used (every completed turn is "
                                            "checkpointed): remove it",
}
"""Keys a configuration file may still hold from an older version: accepted and ignored,
each with a warning (``Config.warnings``: the daemon's log at start, ``config show``)."""


def find_project_file(project_dir: Path | None) -> Path | None:
    """The nearest ``.parhelia/config.toml`` at or above ``project_dir``."""
    if project_dir is None:
        return None
    here = project_dir.resolve()
    for d in (here, *here.parents):
        candidate = d / PROJECT_CONFIG
        if candidate.is_file():
            return candidate
    return None


def load_config(paths: Paths, project_dir: Path | None = None) -> Config:
    """Load the effective configuration; raises ParheliaError(E101) on a bad file."""
    layers: list[tuple[str, Path, dict[str, Any]]] = []
    if paths.config_file.is_file():
        layers.append(("user", paths.config_file, _read_toml(paths.config_file)))
    project_file = find_project_file(project_dir)
    if project_file is not None and project_file.resolve() != paths.config_file.resolve():
        layers.append(("project", project_file, _read_toml(project_file)))

    values: dict[str, dict[str, Any]] = {}
    sources: dict[str, str] = {}
    warnings: list[str] = []
    section_types = _section_types()
    for scope, path, doc in layers:
        for section, body in doc.items():
            if section not in section_types:
                raise _bad(path, section, f"unknown section [{section}]; known: "
                           + ", ".join(section_types))
            if not isinstance(body, dict):
                raise _bad(path, section, "must be a table")
            cls = section_types[section]
            hints = get_type_hints(cls)
            known = {f.name: f for f in fields(cls)}
            for key, raw in body.items():
                dotted = f"{section}.{key}"
                if key not in known and dotted in RETIRED:
                    warnings.append(f"{path}: {dotted}: {RETIRED[dotted]}")
                    continue
                if key not in known:
                    raise _bad(path, dotted, "unknown key; known keys of [" + section + "]: "
                               + ", ".join(known))
                meta = known[key].metadata
                if scope == "project" and not meta["project"]:
                    raise _bad(path, dotted, "is daemon-wide and can only be set in the user "
                               f"config ({paths.config_file}); a project file may set only "
                               "per-task keys (see `parhelia help config`)")
                values.setdefault(section, {})[key] = _coerce(path, dotted, raw, hints[key], meta)
                sources[dotted] = f"{scope}:{path}"
    built = {name: cls(**values.get(name, {})) for name, cls in section_types.items()}
    return Config(**built, sources=sources, files=tuple(str(p) for _, p, _ in layers),
                  warnings=tuple(warnings))


def project_widenings(user: Config, effective: Config) -> list[tuple[str, Any, Any, str]]:
    """``(key, user value, project value, project file)`` for every key of
    :data:`PROJECT_LIMITED` that the project file sets beyond what ``user`` allows."""
    out: list[tuple[str, Any, Any, str]] = []
    for key in PROJECT_LIMITED:
        source = effective.source(key)
        if not source.startswith("project:"):
            continue
        mine, theirs = _get(user, key), _get(effective, key)
        if key == "agent.permission_mode":
            wider = permission_wider(theirs, mine)
        elif key == "orchestrator.default_backend":
            wider = theirs != mine
        elif key == "agent.model":
            wider = pricier_model(user.rates, theirs, mine)
        else:
            wider = theirs > mine
        if wider:
            out.append((key, mine, theirs, source.partition(":")[2]))
    return out


def trusts_project(user: Config, project: Path | None) -> bool:
    """Whether the user's own config (``agent.trusted_projects``) trusts ``project``:
    it is one of the listed directories or inside one. E101 on a relative entry."""
    if project is None:
        return False
    here = project.resolve()
    for entry in user.agent.trusted_projects:
        root = Path(entry).expanduser()
        if not root.is_absolute():
            raise ParheliaError(
                "E101", f"agent.trusted_projects: {entry!r} is not an absolute directory "
                f"({user.source('agent.trusted_projects')})", key="agent.trusted_projects")
        if here.is_relative_to(root.resolve()):
            return True
    return False


def _get(cfg: Config, key: str) -> Any:
    section, _, name = key.partition(".")
    return getattr(getattr(cfg, section), name)


def config_items(cfg: Config) -> list[tuple[str, Any, str]]:
    """(dotted key, value, source) for every key, in schema order."""
    out: list[tuple[str, Any, str]] = []
    for name in _section_types():
        section = getattr(cfg, name)
        for f in fields(section):
            key = f"{name}.{f.name}"
            out.append((key, getattr(section, f.name), cfg.source(key)))
    return out


class LiveConfig:
    """The configuration a running daemon uses. Its parts read it through :meth:`get`
    when they act, so a reload (which replaces :attr:`current`) reaches all of them."""

    def __init__(self, config: Config) -> None:
        self.current = config

    def get(self) -> Config:
        return self.current


def needs_restart(key: str) -> bool:
    """Whether the daemon reads ``key`` only at start (see ``_meta``)."""
    section, _, name = key.partition(".")
    cls = _section_types().get(section)
    known = {f.name: f for f in fields(cls)} if cls is not None else {}
    return name in known and bool(known[name].metadata.get("restart"))


@dataclass(frozen=True)
class ConfigChange:
    key: str
    before: Any
    after: Any


def config_changes(old: Config, new: Config) -> list[ConfigChange]:
    """The keys whose value differs between ``old`` and ``new``, in schema order."""
    before = {k: v for k, v, _ in config_items(old)}
    return [ConfigChange(k, before[k], v) for k, v, _ in config_items(new) if before[k] != v]


def reloaded(old: Config, new: Config) -> tuple[Config, list[ConfigChange], list[ConfigChange]]:
    """What a running daemon uses after re-reading its files: ``new`` except the keys
    read only at start, which keep their ``old`` values. Returns (the config to use,
    the changes applied, the changes that wait for a restart)."""
    changes = config_changes(old, new)
    later = [c for c in changes if needs_restart(c.key)]
    sections: dict[str, Any] = {}
    for change in later:
        section, _, name = change.key.partition(".")
        current = sections.get(section, getattr(new, section))
        sections[section] = dataclasses.replace(current, **{name: change.before})
    used = dataclasses.replace(new, **sections)
    if later:
        sources = dict(new.sources)
        for change in later:
            sources[change.key] = old.source(change.key)
        used = dataclasses.replace(used, sources=sources)
    return used, [c for c in changes if not needs_restart(c.key)], later


def to_jsonable(value: Any) -> Any:
    """Config values as JSON: Decimals become strings so money stays exact."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def db_path(cfg: Config, paths: Paths) -> Path:
    p = Path(cfg.orchestrator.db_path).expanduser()
    return p if p.is_absolute() else paths.state_dir / p


def _section_types() -> dict[str, type]:
    hints = get_type_hints(Config)
    return {f.name: hints[f.name] for f in fields(Config)
            if dataclasses.is_dataclass(hints[f.name])}


def _read_toml(path: Path) -> dict[str, Any]:
    why = ownership.file_problem(path)
    if why is not None:
        raise ParheliaError("E401", f"{path}: not trusted: {why}. Its settings choose what "
                            "runs and how much it may do; fix the owner or mode.",
                            file=str(path))
    try:
        with path.open("rb") as fh:
            if os.fstat(fh.fileno()).st_size > MAX_CONFIG_BYTES:
                raise ParheliaError("E101", f"{path}: too large for a configuration file "
                                    f"(over {MAX_CONFIG_BYTES >> 10} KiB)", file=str(path))
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ParheliaError("E101", f"{path}: not valid TOML: {exc}", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ParheliaError("E101", f"{path}: not valid TOML: not UTF-8 text (byte "
                            f"{exc.start})", file=str(path)) from None
    except OSError as exc:
        raise ParheliaError("E101", f"{path}: cannot be read: {exc.strerror}",
                            file=str(path)) from None


def _bad(path: Path, key: str, why: str) -> ParheliaError:
    return ParheliaError("E101", f"{path}: {key}: {why}", key=key, file=str(path))


def _coerce(path: Path, key: str, raw: Any, typ: Any, meta: Mapping[str, Any]) -> Any:
    origin = get_origin(typ)
    if typ is bool:
        if not isinstance(raw, bool):
            raise _bad(path, key, f"must be true or false, not {raw!r}")
        return raw
    if typ is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise _bad(path, key, f"must be an integer, not {raw!r}")
        return _bounded(path, key, raw, meta)
    if typ is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise _bad(path, key, f"must be a number, not {raw!r}")
        return _bounded(path, key, float(raw), meta)
    if typ is Decimal:
        return _bounded(path, key, _decimal(path, key, raw), meta)
    if typ is str:
        if not isinstance(raw, str):
            raise _bad(path, key, f"must be a string, not {raw!r}")
        choices = meta.get("choices")
        if choices and raw not in choices:
            raise _bad(path, key, f"must be one of {', '.join(choices)}, not {raw!r}")
        if key == "github.api_url" and raw and not _API_URL.match(raw):
            raise _bad(path, key, "must be an https:// URL (http:// only to 127.0.0.1 or "
                       "localhost), without credentials")
        return raw
    if origin is list:
        if key == "agent.command" and isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
            raise _bad(path, key, "must be a list of non-empty strings")
        if key == "agent.command" and not raw:
            raise _bad(path, key, "must not be empty")
        if key == "sandbox.read_only":
            bad = [x for x in raw if not Path(x).expanduser().is_absolute() or "\0" in x]
            if bad:
                raise _bad(path, key, f"{bad[0]!r} is not an absolute path (~ allowed)")
            return [str(Path(x).expanduser()) for x in raw]
        if key == "github.hosts":
            bad = [h for h in raw if not _HOST.match(h)]
            if bad:
                raise _bad(path, key, f"{bad[0]!r} is not a host or host:port")
            return [h.lower() for h in raw]
        if key == "sync.pass_env":
            token = next((n for n in raw if n in GITHUB_TOKEN_VARS), None)
            if token:
                raise _bad(path, key, f"{token} is the daemon's GitHub token: it is used on "
                           "the daemon's side only (clones, task pr) and never reaches a "
                           "worker or its agent (docs/adr/0055)")
        return list(raw)
    if origin is dict:
        (_, vtyp) = get_args(typ)
        if not isinstance(raw, dict):
            raise _bad(path, key, "must be a table")
        out = dict(_DICT_DEFAULTS.get(key, {}))
        for k, v in raw.items():
            if key == "rates.gpu" and k not in DEFAULT_GPU_RATES:
                raise _bad(path, f"{key}.{k}", "unknown GPU type; known: "
                           + ", ".join(DEFAULT_GPU_RATES))
            if key.startswith("rates.model_") and not re.fullmatch(MODEL_KEY_RE, k):
                raise _bad(path, f"{key}.{k}", "a model family is lower-case letters, "
                           "digits, '.', '_' or '-' (e.g. sonnet, opus, default)")
            out[k] = _coerce(path, f"{key}.{k}", v, vtyp, {"min": 0, "max": None})
        return out
    raise _bad(path, key, f"unsupported type {typ!r}")  # pragma: no cover - schema bug


_API_URL = re.compile(r"^(https://[A-Za-z0-9.-]+(:[0-9]{1,5})?|"
                      r"http://(127\.0\.0\.1|localhost)(:[0-9]{1,5})?)(/[^\s?#@]*)?$")
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")

DEFAULT_GPU_RATES_DEC = {k: Decimal(v) for k, v in DEFAULT_GPU_RATES.items()}
_DICT_DEFAULTS: dict[str, dict[str, Decimal]] = {
    "rates.gpu": DEFAULT_GPU_RATES_DEC,
    "rates.model_input_per_mtok": {k: Decimal(v) for k, v in DEFAULT_MODEL_INPUT_RATES.items()},
    "rates.model_output_per_mtok": {k: Decimal(v)
                                    for k, v in DEFAULT_MODEL_OUTPUT_RATES.items()},
}


def _decimal(path: Path, key: str, raw: Any) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise _bad(path, key, f"must be a number, not {raw!r}")
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise _bad(path, key, f"must be a number, not {raw!r}") from None
    if not value.is_finite():
        raise _bad(path, key, f"must be finite, not {raw!r}")
    return value


def _bounded(path: Path, key: str, value: Any, meta: Mapping[str, Any]) -> Any:
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and value < lo:
        raise _bad(path, key, f"must be at least {lo}, not {value}")
    if hi is not None and value > hi:
        raise _bad(path, key, f"must be at most {hi}, not {value}")
    return value
