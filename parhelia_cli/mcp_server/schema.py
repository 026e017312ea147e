"""What the tools take and give: parameter types (their descriptions are what the model
reads), annotations, the argument checks the CLI makes (parhelia_cli.params, durations),
and the shaping of long answers."""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

import click
from mcp.types import ToolAnnotations
from pydantic import Field

from parhelia import events as event_catalogue
from parhelia import gpus
from parhelia_cli import durations, params
from parhelia_cli.api import task_options
from parhelia_cli.errors import invalid

# The choices of the CLI as Literal types, so the input schemas carry them as enums:
# Backend and PermissionMode come from the contract package (parhelia.backends,
# parhelia.permissions). Status words are the contract's enums (parhelia.statuses):
# pydantic validates them and the schemas list them.
Level = Literal["debug", "info", "warning", "error"]

LOG_LINES_MAX = 2000
LOG_BYTES_MAX = 1 << 20
PATCH_CHARS_MAX = 2_000_000

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                       open_world_hint=False)


def acts(*, destructive: bool, idempotent: bool = False, open_world: bool = False,
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
PageToken = Annotated[str | None, Field(max_length=512, description=(
    "The next_page_token of the previous call, for the next (older) page; the other "
    "arguments stay the same."))]
# The event filters, as the event tools take them.
EventTypes = Annotated[list[EventType] | None, Field(description=(
    "Only these event types (task_created, agent_result, checkpoint_created, "
    "container_lost...)."))]
MinLevel = Annotated[Level | None, Field(description="Minimum level.")]
OfTask = Annotated[str | None, Field(description="Only this task's events.")]
OfSession = Annotated[str | None, Field(description="Only this session's events.")]
OfContainer = Annotated[str | None, Field(description="Only this container's events.")]
PageSize = Annotated[int, Field(ge=1, le=1000, description="At most this many events per call.")]


def check(name: str, parse: Any, value: Any) -> Any:
    try:
        return parse(value)
    except ValueError as exc:
        raise invalid(f"{name}: {exc}") from None
    except click.BadParameter as exc:
        raise invalid(f"{name}: {exc.message}") from None


def parse_gpu(value: str | None) -> str | None:
    return None if value is None else check(
        "gpu", lambda v: params.GPU.convert(v, None, None), value)


def parse_memory(value: int | str | None) -> int | None:
    if value is None:
        return None
    return check("memory", durations.parse_memory_mib, str(value))


def parse_seconds(name: str, value: int | str | None) -> int | None:
    if value is None:
        return None
    return check(name, durations.parse_timeout, str(value))


def parse_usd(value: float | str | None) -> int | None:
    if value is None:
        return None
    text = format(value, "f") if isinstance(value, float) else str(value)
    return check("max_cost_usd", durations.parse_usd_micros, text)


def parse_instant(name: str, value: str | None) -> Any:
    return None if value is None else check(name, durations.parse_instant, value)


def parse_event_types(values: list[str] | None) -> tuple[str, ...]:
    if not values:
        return ()
    return check("types", lambda v: params.EVENT_TYPES.convert(",".join(v), None, None), values)


def task_options_of(gpu: str | None, cpu: float | None, memory: int | str | None,
                    timeout: int | str | None, max_turns: int | None,
                    max_cost_usd: float | str | None, model: str | None,
                    permission_mode: str | None, backend: str | None) -> Any:
    """The ``TaskOptions`` of the tools' arguments, checked as the CLI checks its options."""
    return task_options(gpu=parse_gpu(gpu), cpu=cpu, memory_mb=parse_memory(memory),
                        timeout_seconds=parse_seconds("timeout", timeout),
                        max_turns=max_turns, max_cost_micros=parse_usd(max_cost_usd),
                        model=(model or "").strip() or None,
                        permission_mode=permission_mode, backend=backend)



def cut_patch(data: dict[str, Any], max_chars: int) -> dict[str, Any]:
    """``data["patch"]`` cut after ``max_chars`` characters, and ``patch_truncated``."""
    patch = data.get("patch") or ""
    data["patch_truncated"] = len(patch) > max_chars
    if data["patch_truncated"]:
        data["patch"] = patch[:max_chars]
    return data


def absolute_path(name: str, path: str) -> str:
    """A path the daemon writes to or reads: absolute (the server's current directory is
    wherever its client started it), without NUL."""
    if "\x00" in path or not os.path.isabs(path):
        raise invalid(f"{name}: {path!r} is not an absolute path")
    return path

