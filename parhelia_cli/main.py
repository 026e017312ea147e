"""The root ``parhelia`` group: global options, aliases, "did you mean", error rendering.

Command modules are imported only when their command runs (or help lists them), and
none of them imports grpc at module level.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from parhelia import errors as catalogue
from parhelia_cli import __version__, render
from parhelia_cli.context import close_all, set_json, settings
from parhelia_cli.errors import CliError, TaskOutcome
from parhelia_cli.names import ALIASES
from parhelia_cli.quick import INTERRUPTED

# name -> (module, attribute, one-line help). The help lives here so that `parhelia --help`
# lists every command without importing its module.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "task": ("parhelia_cli.commands.task", "task", "Create, follow and manage tasks."),
    "top": ("parhelia_cli.commands.top", "top",
            "A live full-screen view of running and recent tasks (watch, logs, cancel)."),
    "auth": ("parhelia_cli.commands.auth", "auth",
             "Store, show and clear the agent's credential for the daemon (no restart)."),
    "budget": ("parhelia_cli.commands.budget", "budget",
               "Show and set the spending ceiling; spend history and ledger."),
    "events": ("parhelia_cli.commands.events", "events",
               "Query, follow, export and replay the event log."),
    "container": ("parhelia_cli.commands.container", "container",
                  "List, inspect, watch and terminate worker containers."),
    "reconciler": ("parhelia_cli.commands.reconciler", "reconciler",
                   "Compare the database with what the backends run; status and runs."),
    "cleanup": ("parhelia_cli.commands.reconciler", "cleanup",
                "List orphaned containers with age and cost; --terminate ends them."),
    "session": ("parhelia_cli.commands.session", "session",
                "List, inspect, stop and recover sessions."),
    "checkpoint": ("parhelia_cli.commands.checkpoint", "checkpoint",
                   "Create, inspect, compare, roll back and verify checkpoints."),
    "resume": ("parhelia_cli.commands.session", "resume",
               "Continue a stopped session from its latest (or a given) checkpoint."),
    "status": ("parhelia_cli.commands.system", "status", "Show the daemon's status and health."),
    "doctor": ("parhelia_cli.commands.system", "doctor",
               "Check what Parhelia needs (daemon, agent, credentials, disk)."),
    "config": ("parhelia_cli.commands.system", "config",
               "Show the configuration; sync your Claude Code setup to workers."),
    "daemon": ("parhelia_cli.commands.daemon", "daemon",
               "Start, stop, inspect and install the parheliad daemon."),
    "env": ("parhelia_cli.commands.env", "env",
            "A repository's environment: show, build ahead, list and prune caches."),
    "modal": ("parhelia_cli.commands.modal", "modal",
              "Set up Modal (token, app, volume, secret, worker image) for --backend modal."),
    "mcp-server": ("parhelia_cli.commands.mcp", "mcp_server",
                   "Serve Parhelia's tools to MCP clients (Claude Code...) over stdio."),
    "help": ("parhelia_cli.commands.docs", "help_command", "Help on a topic or an error code."),
    "examples": ("parhelia_cli.commands.docs", "examples", "Runnable examples for a topic."),
    "completion": ("parhelia_cli.commands.docs", "completion",
                   "Print or install the shell completion script (bash, zsh, fish)."),
}

# Groups of the original command surface that a later version registers (once the daemon
# implements their RPCs); naming one says so instead of "no such command".
PLANNED: set[str] = set()


def load_command(name: str) -> click.Command:
    module, attr, _ = COMMANDS[name]
    command = getattr(importlib.import_module(module), attr)
    assert isinstance(command, click.Command)
    return command


class ParheliaGroup(click.Group):
    """Lazy subcommands with aliases, suggestions and Parhelia-style error output."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        name = ALIASES.get(cmd_name, cmd_name)
        if name in COMMANDS:
            return load_command(name)
        return None

    def resolve_command(self, ctx: click.Context,
                        args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0]
        command = self.get_command(ctx, name)
        if command is None and not ctx.resilient_parsing and name in PLANNED:
            ctx.fail(f"`parhelia {ALIASES.get(name, name)}` is not available in this version "
                     f"yet; `parhelia help {ALIASES.get(name, name)}` describes it.")
        if command is None and not ctx.resilient_parsing:
            import difflib

            choices = sorted(set(COMMANDS) | set(ALIASES))
            close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
            hint = f" Did you mean {ALIASES.get(close[0], close[0])!r}?" if close else ""
            ctx.fail(f"No such command {name!r}.{hint}")
        return (command.name if command else None), command, args[1:]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        reverse = {v: k for k, v in ALIASES.items()}
        rows = []
        for name in self.list_commands(ctx):
            label = f"{name} ({reverse[name]})" if name in reverse else name
            rows.append((label, COMMANDS[name][2]))
        with formatter.section("Commands"):
            formatter.write_dl(rows)
        formatter.write_paragraph()
        formatter.write_text("Aliases: " + ", ".join(f"{k} = {v}" for k, v in ALIASES.items()
                                                     if v in COMMANDS)
                             + ". `parhelia help TOPIC` and `parhelia examples TOPIC` "
                               "have guides and runnable examples.")

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        as_json = "--json" in (argv[: argv.index("--")] if "--" in argv else argv)
        try:
            rv = super().main(argv, prog_name=prog_name or "parhelia",
                              complete_var=complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except click.UsageError as exc:
            code = _usage_error(exc, as_json)
        except CliError as exc:
            render.error(exc, as_json)
            code = exc.exit_code
        except catalogue.ParheliaError as exc:  # raised by shared code run in the CLI
            cli_exc = CliError(exc.code, exc.message)
            render.error(cli_exc, as_json)
            code = cli_exc.exit_code
        except TaskOutcome as exc:
            code = exc.exit_code
        except click.ClickException as exc:
            exc.show()
            code = exc.exit_code
        except (click.Abort, KeyboardInterrupt):
            click.echo(INTERRUPTED, err=True)
            code = 130
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise
            # The reader went away (`| head`): stop quietly, and keep Python from
            # complaining when it flushes stdout at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            code = 0
        finally:
            close_all()
        if standalone_mode:
            sys.exit(code)
        return code


def _usage_error(exc: click.UsageError, as_json: bool) -> int:
    """Click's usage line, then the error as E101 (bad value) or E102 (missing)."""
    code: catalogue.Code = "E102" if isinstance(exc, click.MissingParameter) else "E101"
    if exc.ctx is not None and not as_json:
        click.echo(exc.ctx.get_usage(), err=True)
        if exc.ctx.command.get_help_option(exc.ctx) is not None:
            click.echo(f"Try '{exc.ctx.command_path} --help' for help.\n", err=True)
    render.error(CliError(code, exc.format_message(), hint=""), as_json)
    return 2


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from parhelia_cli import client

    obj = settings()
    p = client.Client.resolve(obj.socket)
    click.echo(f"parhelia {__version__}")
    version = client.probe(p.socket)
    if version is None:
        click.echo(f"parheliad: not running ({client.address(p.socket)})")
    else:
        click.echo(f"parheliad {version.version or 'unknown'} ({client.address(p.socket)}, "
                   f"api {version.api or 'unknown'})")
        client.check_version(version, p.socket)
    ctx.exit(0)


def _set_socket(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        settings().socket = value


@click.group(cls=ParheliaGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--socket", metavar="PATH", envvar="PARHELIA_SOCKET", is_eager=True,
              expose_value=False, callback=_set_socket,
              help="Daemon socket (default: $PARHELIA_SOCKET, else the per-user runtime dir).")
@click.option("--json", "json_output", is_flag=True, expose_value=False, callback=set_json,
              help="Print JSON on every read command (same as the command's --json).")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_show_version, help="Show the client and daemon versions.")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Run Claude Code tasks in isolated local workers or Modal sandboxes, checkpointed,
    resumable and budget-capped.

    `parhelia` talks to the per-user daemon `parheliad` over a Unix socket and starts
    it when it is not running (set PARHELIA_NO_AUTOSTART=1 to opt out).
    """
    settings()


def main() -> NoReturn:
    """Console-script entry point.

    Exits with ``os._exit`` after flushing: the interpreter's teardown of grpc's
    threads costs ~15 ms per invocation and there is nothing left to clean up.
    """
    code = cli.main(prog_name="parhelia", standalone_mode=False)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(code if isinstance(code, int) else 1)
