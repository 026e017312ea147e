"""``parhelia auth set|status|clear``: the agent's credential for the daemon, without a
restart. The CLI writes the daemon's env file itself (ADR 0018): the value never
crosses the socket; the daemon re-reads the file at each dispatch."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from parhelia import envfile
from parhelia.credentials import CREDENTIAL_VARS
from parhelia.errors import ParheliaError
from parhelia_cli import render
from parhelia_cli.context import json_option, settings
from parhelia_cli.errors import CliError, TaskOutcome, missing

if TYPE_CHECKING:
    from parhelia.v1 import system_pb2


@click.group()
def auth() -> None:
    """Store, show and clear the agent's Anthropic credential for the daemon.

    `auth set` stores it in the daemon's private env file (mode 600, beside the config
    file); the daemon reads that file again at each dispatch, so no restart is needed.
    A variable in the daemon's own environment wins over the file. Values are never
    shown: `auth status` names the variable and where it comes from.
    """


def _env_path() -> Path:
    from parhelia import paths

    return envfile.env_file(paths.resolve(settings().socket))


def _daemon_status() -> system_pb2.GetStatusResponse:
    return settings().api().system.status()


def _where(name: str, source: str, env_file: str) -> str:
    origin = "the daemon's environment" if source == envfile.ENVIRONMENT else \
        f"the env file {env_file}"
    return f"{name} from {origin}"


@auth.command("set")
@click.option("--name", type=click.Choice(CREDENTIAL_VARS), default=CREDENTIAL_VARS[0],
              show_default=True, help="Which variable: an API key, or CLAUDE_CODE_OAUTH_TOKEN "
              "from `claude setup-token`.")
@click.option("--stdin", "from_stdin", is_flag=True,
              help="Read the value from stdin (the default when stdin is not a terminal).")
def auth_set(name: str, from_stdin: bool) -> None:
    """Store the credential (asked without echo, or read from stdin)."""
    if from_stdin or not sys.stdin.isatty():
        value = sys.stdin.readline().strip()
    else:
        value = click.prompt(name, hide_input=True, prompt_suffix=" (not shown): ").strip()
    if not value:
        raise missing("no value given; nothing stored")
    path = _env_path()
    try:
        envfile.set_credential(path, name, value)
    except ParheliaError as exc:
        raise CliError(exc.code, exc.message) from None
    except OSError as exc:
        raise CliError("E101", f"could not write {path}: {exc.strerror}") from None
    render.line(f"Stored {name} in {path} (mode 600). The daemon reads it at the next "
                "dispatch; no restart needed.")
    own = [n for n in CREDENTIAL_VARS if n != name and os.environ.get(n)]
    if own:
        render.info("Note: a variable in the daemon's own environment wins over the file; "
                    "`parhelia auth status` shows which one the daemon uses.")


@auth.command("status")
@json_option
def auth_status() -> None:
    """Which credential the daemon will use and where it comes from (never its value).

    Exits 1 when the daemon has none.
    """
    resp = _daemon_status()
    shadowed = _shadowed(resp)
    data = {"credential_name": resp.credential_name or None,
            "credential_source": resp.credential_source or None,
            "env_file": resp.env_file, "problem": resp.credential_problem or None,
            "shadowed": shadowed}
    if settings().json:
        render.emit_json(data)
    elif resp.credential_problem:
        render.line(f"The env file cannot be used: {resp.credential_problem}")
    elif resp.credential_name:
        render.line("The daemon uses " + _where(resp.credential_name,
                                                resp.credential_source, resp.env_file)
                    + " (value not shown).")
        if shadowed:
            render.line(f"The credential stored in {resp.env_file} ({', '.join(shadowed)}) "
                        f"is not used: {resp.credential_name} in the daemon's own "
                        "environment shadows it, so `parhelia auth set` and `auth clear` "
                        "change nothing until the daemon runs without it (`parhelia daemon "
                        f"stop`, unset {resp.credential_name}, start it again).")
    else:
        render.line("The daemon has no credential (none of " + ", ".join(CREDENTIAL_VARS)
                    + "). Store one with `parhelia auth set`.")
    if not resp.credential_name:
        raise TaskOutcome(1)


def _shadowed(resp: system_pb2.GetStatusResponse) -> list[str]:
    """The credentials stored in the env file that the daemon does not use because a
    variable of its own environment wins (names only)."""
    if resp.credential_source != envfile.ENVIRONMENT or not resp.env_file:
        return []
    try:
        stored = envfile.read(Path(resp.env_file))
    except (ParheliaError, OSError):
        return []  # `auth status` says what is wrong with the file otherwise
    return [n for n in CREDENTIAL_VARS if stored.get(n)]


@auth.command("clear")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def auth_clear(yes: bool) -> None:
    """Remove the stored credential from the daemon's env file (asks first unless -y;
    tasks dispatched afterwards have no credential unless the daemon's environment
    holds one)."""
    from parhelia_cli import confirm

    path = _env_path()
    confirm.confirm(f"Remove the agent's credential from {path}?", yes,
                    "clearing the stored credential")
    try:
        removed = envfile.clear_credentials(path)
    except ParheliaError as exc:
        raise CliError(exc.code, exc.message) from None
    render.line(f"Removed the credential from {path}." if removed
                else f"No credential stored in {path}; nothing to do.")
    resp = _daemon_status()
    if resp.credential_name:
        render.info("The daemon still has " + _where(resp.credential_name,
                                                     resp.credential_source, resp.env_file)
                    + "; stop the daemon (`parhelia daemon stop`) and start it from a shell "
                    "without it to drop it.")


