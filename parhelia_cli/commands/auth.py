"""``parhelia auth set|status|clear``: the agent's credential (and, with ``--github``, the
GitHub token for private repositories and pull requests) for the daemon, without a
restart. The CLI writes the daemon's env file itself (ADR 0018): the value never
crosses the socket; the daemon re-reads the file at each use."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from parhelia import envfile
from parhelia.credentials import CREDENTIAL_VARS, GITHUB_STORED_VAR, GITHUB_TOKEN_VARS
from parhelia.errors import ParheliaError
from parhelia_cli import render
from parhelia_cli.context import json_option, settings
from parhelia_cli.errors import CliError, TaskOutcome, missing

if TYPE_CHECKING:
    from parhelia.v1 import system_pb2


@click.group()
def auth() -> None:
    """Store, show and clear the agent's Anthropic credential and the GitHub token.

    `auth set` stores it in the daemon's private env file (mode 600, beside the config
    file); the daemon reads that file again at each use, so no restart is needed.
    A variable in the daemon's own environment wins over the file. Values are never
    shown: `auth status` names the variable and where it comes from.

    The GitHub token (`auth set --github`) clones private repositories (`task create
    --repo`) and pushes branches and opens pull requests (`task pr`), always on the
    daemon's side: it never reaches a worker or its agent. Without one the daemon also
    takes GH_TOKEN/GITHUB_TOKEN from its environment, or `gh auth token` when the gh CLI
    is logged in.
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
@click.option("--name", type=click.Choice(CREDENTIAL_VARS), default=None,
              help="Which variable: an API key (the default, ANTHROPIC_API_KEY), or "
              "CLAUDE_CODE_OAUTH_TOKEN from `claude setup-token`.")
@click.option("--github", is_flag=True,
              help=f"Store a GitHub token ({GITHUB_STORED_VAR}) instead: for private "
              "repositories and pull requests (Contents and Pull requests write access; a "
              "classic token: the `repo` scope).")
@click.option("--stdin", "from_stdin", is_flag=True,
              help="Read the value from stdin (the default when stdin is not a terminal).")
def auth_set(name: str | None, github: bool, from_stdin: bool) -> None:
    """Store the credential (asked without echo, or read from stdin)."""
    if github and name:
        raise CliError("E101", "--github stores the GitHub token; --name chooses the "
                               "agent's credential: give one of them")
    name = GITHUB_STORED_VAR if github else (name or CREDENTIAL_VARS[0])
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
                "use; no restart needed.")
    group = GITHUB_TOKEN_VARS if github else CREDENTIAL_VARS
    own = [n for n in group if n != name and os.environ.get(n)]
    if own:
        render.info("Note: a variable in the daemon's own environment wins over the file; "
                    "`parhelia auth status` shows which one the daemon uses.")


@auth.command("status")
@json_option
def auth_status() -> None:
    """Which credential the daemon will use and where it comes from (never its value),
    and which GitHub token (private repositories, `task pr`).

    Exits 1 when the daemon has no agent credential.
    """
    resp = _daemon_status()
    shadowed = _shadowed(resp)
    gh = settings().api().system.github_credential()
    data = {"credential_name": resp.credential_name or None,
            "credential_source": resp.credential_source or None,
            "env_file": resp.env_file, "problem": resp.credential_problem or None,
            "shadowed": shadowed,
            "github": {
                "host": gh.host, "name": gh.name or None, "source": gh.source or None,
                "problem": gh.problem or None, "modal_secret": gh.modal_secret,
                "modal_secret_found": gh.modal_secret_found, "hosts": list(gh.hosts)}}
    if settings().json:
        render.emit_json(data)
        if not resp.credential_name:
            raise TaskOutcome(1)
        return
    if resp.credential_problem:
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
    render.line(_github_line(gh))
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


def _github_line(gh: system_pb2.GetGitHubCredentialResponse) -> str:
    """What `auth status` says of the GitHub token."""
    secret = (f" Modal tasks may also clone with the Modal secret {gh.modal_secret!r}."
              if gh.modal_secret_found else "")
    if gh.problem:
        return f"GitHub: the env file cannot be used: {gh.problem}.{secret}"
    if gh.source == "gh":
        return f"GitHub ({gh.host}): the token of the gh CLI's login (`gh auth token`).{secret}"
    if gh.name:
        return (f"GitHub ({gh.host}): " + _where(gh.name, gh.source, gh.env_file)
                + f" (value not shown).{secret}")
    return (f"GitHub ({gh.host}): no token. Private repositories and `task pr` need one: "
            f"`parhelia auth set --github`, {GITHUB_STORED_VAR} or {GITHUB_TOKEN_VARS[0]} "
            f"where the daemon runs, or `gh auth login`.{secret}")


@auth.command("clear")
@click.option("--github", is_flag=True, help="Remove the GitHub token instead.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def auth_clear(github: bool, yes: bool) -> None:
    """Remove the stored credential (or, with --github, the GitHub token) from the
    daemon's env file (asks first unless -y; tasks dispatched afterwards have no
    credential unless the daemon's environment holds one)."""
    from parhelia_cli import confirm

    path = _env_path()
    what = "GitHub token" if github else "credential"
    label = "the GitHub token" if github else "the agent's credential"
    confirm.confirm(f"Remove {label} from {path}?", yes, f"clearing {label}")
    try:
        removed = envfile.clear_credentials(path, GITHUB_TOKEN_VARS if github
                                            else CREDENTIAL_VARS)
    except ParheliaError as exc:
        raise CliError(exc.code, exc.message) from None
    render.line(f"Removed the {what} from {path}." if removed
                else f"No {what} stored in {path}; nothing to do.")
    if github:
        return
    resp = _daemon_status()
    if resp.credential_name:
        render.info("The daemon still has " + _where(resp.credential_name,
                                                     resp.credential_source, resp.env_file)
                    + "; stop the daemon (`parhelia daemon stop`) and start it from a shell "
                    "without it to drop it.")
