"""Per-invocation settings shared by all commands (``ctx.obj``) and common options."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from parhelia_cli.api import Api
    from parhelia_cli.client import Client

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Settings:
    socket: str | None = None
    json: bool = False
    _client: Client | None = field(default=None, repr=False)

    def client(self, autostart: bool = True) -> Client:
        """The connected client (connects, autostarting the daemon, on first use)."""
        if self._client is None:
            from parhelia_cli.client import Client

            self._client = Client.connect(self.socket, autostart=autostart)
        return self._client

    def api(self, autostart: bool = True) -> Api:
        """The typed calls (:mod:`parhelia_cli.api`) over :meth:`client`."""
        return self.client(autostart).api

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


_open: list[Settings] = []


def settings() -> Settings:
    """The current invocation's settings (created on demand, e.g. under CliRunner)."""
    ctx = click.get_current_context()
    root = ctx.find_root()
    if not isinstance(root.obj, Settings):
        root.obj = Settings()
        _open.append(root.obj)
    return root.obj


def close_all() -> None:
    """Close the connections opened during this invocation."""
    while _open:
        _open.pop().close()


def set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        settings().json = True


def quiet_option(f: F) -> F:
    """``-q/--quiet`` on lists: only the ids, one per line (as ``docker ps -q``)."""
    return click.option("-q", "--quiet", is_flag=True,
                        help="Print only the ids, one per line.")(f)


def json_option(f: F) -> F:
    """``--json``: machine-readable output (stable snake_case fields)."""
    return click.option("--json", "json_output", is_flag=True, expose_value=False,
                        callback=set_json,
                        help="Print JSON (stable snake_case fields) instead of a table.")(f)
