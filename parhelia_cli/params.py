"""Click parameter types for the values Parhelia validates client-side.

A value they refuse is a usage error: rendered as E101 naming the option and the
value, exit 2 (see :func:`parhelia_cli.main.ParheliaGroup.main`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click

from parhelia import events as event_catalogue
from parhelia import gpus, limits
from parhelia.backends import BACKENDS as BACKENDS
from parhelia.permissions import PERMISSION_MODES as PERMISSION_MODES
from parhelia_cli import durations

GPU_TYPES: tuple[str, ...] = gpus.ACCEPTED

F = TypeVar("F", bound=Callable[..., Any])


def _suggest(value: str, choices: list[str] | tuple[str, ...]) -> str:
    import difflib

    close = difflib.get_close_matches(value, list(choices), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


class GpuType(click.ParamType):
    """``A10G``, ``h100:2``: a Modal GPU type, optionally ``:N`` GPUs (1-8)."""

    name = "gpu"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "TYPE[:N]"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        text = str(value).strip()
        kind = text.partition(":")[0]
        try:
            parsed = gpus.parse_gpu(text)
        except ValueError as exc:
            self.fail(f"{text!r}: {exc}.{_suggest(kind.upper(), GPU_TYPES)}", param, ctx)
        return gpus.format_gpu(parsed)


class _Parsed(click.ParamType):
    """A type backed by one of the :mod:`parhelia_cli.durations` parsers."""

    def parse(self, text: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Memory(_Parsed):
    name = "memory"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "MIB|16GiB"

    def parse(self, text: str) -> int:
        return durations.parse_memory_mib(text)


class Timeout(_Parsed):
    name = "timeout"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "SECONDS|30m|4h"

    def parse(self, text: str) -> int:
        return durations.parse_timeout(text)


class Seconds(_Parsed):
    name = "seconds"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "SECONDS|30s|2m"

    def parse(self, text: str) -> int:
        return durations.parse_timeout(text)


class Usd(_Parsed):
    """An amount in USD, converted to integer micro-dollars."""

    name = "usd"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "USD"

    def parse(self, text: str) -> int:
        return durations.parse_usd_micros(text)


class Instant(_Parsed):
    """``30m``/``2d``/``1w`` ago or an RFC 3339 timestamp -> aware UTC datetime."""

    name = "instant"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "30m|2d|RFC3339"

    def parse(self, text: str) -> datetime:
        return durations.parse_instant(text)


class EventTypes(click.ParamType):
    """One or more comma-separated event types from :mod:`parhelia.events`."""

    name = "type"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        out = []
        for item in str(value).split(","):
            item = item.strip()
            if not item:
                continue
            if item not in event_catalogue.CATALOGUE:
                hint = _suggest(item, list(event_catalogue.CATALOGUE))
                self.fail(f"{item!r} is not an event type.{hint} `parhelia help events` lists "
                          "them.", param, ctx)
            out.append(item)
        return tuple(out)

    def shell_complete(self, ctx: click.Context, param: click.Parameter,
                       incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        return [CompletionItem(t) for t in event_catalogue.CATALOGUE if t.startswith(incomplete)]


class Cores(click.FloatRange):
    """CPU cores: a finite number above zero (``nan`` and ``inf`` are refused)."""

    name = "cores"

    def __init__(self) -> None:
        super().__init__(min=0, min_open=True, max=1024)

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        import math

        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number of cores.", param, ctx)
        return rv


LIMIT = click.IntRange(min=1, max=limits.MAX_LIST)
"""``--limit N``: rows of a list, 1 to the API's maximum."""


def page_option(f: F) -> F:
    """``--page-token TOKEN``: a list's next page (the token its previous page gave)."""
    return click.option("--page-token", "page_token", default="", metavar="TOKEN",
                        help="The next page: the token the previous page gave "
                             "(next_page_token).")(f)
BACKLOG = click.IntRange(min=0, max=limits.MAX_LIST)
COUNT = click.IntRange(min=1, max=limits.INT32_MAX)
"""A positive count sent in an int32 field (``--max-turns``): the daemon checks the
real range; this keeps a huge number from overflowing the field."""
WAIT = click.FloatRange(min=0, max=3600)
"""Seconds a command waits for the daemon (``daemon start/stop --wait``)."""
LINES = click.IntRange(min=0, max=1_000_000)
CORES = Cores()
GPU = GpuType()
MEMORY = Memory()
TIMEOUT = Timeout()
SECONDS = Seconds()
USD = Usd()
INSTANT = Instant()
EVENT_TYPES = EventTypes()
LEVEL = click.Choice(event_catalogue.LEVELS, case_sensitive=False)


def sizing_options(f: Any) -> Any:
    """What a task runs on and may spend: --gpu, --cpu, --memory, --timeout, --max-turns,
    --max-cost, --model (`task create` and `budget estimate` take the same)."""
    for option in reversed((
            click.option("--gpu", type=GPU,
                         help=f"GPU type, optionally :N ({', '.join(GPU_TYPES)})."),
            click.option("--cpu", type=CORES, help="Physical cores."),
            click.option("--memory", type=MEMORY, help="Memory: MiB, or 512MiB / 16GiB."),
            click.option("--timeout", type=TIMEOUT,
                         help="Wall-clock limit: seconds, 30m, 4h."),
            click.option("--max-turns", type=COUNT, help="Maximum agent turns."),
            click.option("--max-cost", type=USD,
                         help="Cost cap for this task, USD (e.g. 2.50)."),
            click.option("--model",
                         help="Claude model (default: config, else the agent's default).")),
    ):
        f = option(f)
    return f
