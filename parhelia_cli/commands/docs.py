"""``help``, ``examples`` and ``completion``: answered locally, no daemon needed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import click

from parhelia_cli import render
from parhelia_cli.errors import CliError

_ERROR_CODE = re.compile(r"^[Ee]\d{3}$")
SHELLS = ("bash", "zsh", "fish")


def _available() -> set[str]:
    from parhelia_cli.main import COMMANDS

    return set(COMMANDS)


def _topic_list() -> str:
    from parhelia_cli.help_topics import TOPICS

    width = max(len(t) for t in TOPICS)
    return "\n".join(f"  {t.name:<{width}}  {t.summary}" for t in TOPICS.values())


@click.command("help")
@click.argument("topic", required=False)
@click.pass_context
def help_command(ctx: click.Context, topic: str | None) -> None:
    """Help on TOPIC (task, session, checkpoint, ...) or an error code (E201).

    Without TOPIC, lists the topics.
    """
    from parhelia import errors
    from parhelia_cli.help_topics import TOPICS, render_error_code, render_topic

    if topic is None:
        render.line("Topics (`parhelia help TOPIC`):\n" + _topic_list())
        render.line("\nError codes: `parhelia help errors` lists them; `parhelia help E201` "
                    "explains one.\nCommands: `parhelia COMMAND --help`.")
        return
    if _ERROR_CODE.match(topic):
        if topic.upper() not in errors.CATALOGUE:
            raise CliError("E101", f"unknown error code {topic!r}; `parhelia help errors` lists "
                                   "them.", hint="")
        render.line(render_error_code(topic).rstrip("\n"))
        return
    name = topic.lower()
    if name in TOPICS:
        render.line(render_topic(name, _available()).rstrip("\n"))
        return
    from parhelia_cli.names import ALIASES

    if name in ALIASES and ALIASES[name] in TOPICS:
        render.line(render_topic(ALIASES[name], _available()).rstrip("\n"))
        return
    raise CliError("E101", f"unknown help topic {topic!r}. Topics:\n{_topic_list()}", hint="")


@click.command()
@click.argument("topic", required=False)
def examples(topic: str | None) -> None:
    """Runnable command examples for TOPIC (without TOPIC, lists the topics)."""
    from parhelia_cli.examples import EXAMPLES, render_examples

    if topic is None:
        render.line("Example topics (`parhelia examples TOPIC`): " + ", ".join(EXAMPLES))
        return
    name = topic.lower()
    if name not in EXAMPLES:
        raise CliError("E101", f"no examples for {topic!r}; topics: {', '.join(EXAMPLES)}",
                       hint="")
    render.line(render_examples(name, _available()).rstrip("\n"))


class _CompletionGroup(click.Group):
    """``completion SHELL`` prints a script; ``completion install`` installs one."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*SHELLS, "install"]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in SHELLS:
            return _print_command(cmd_name)
        return completion_install if cmd_name == "install" else None


@click.group(cls=_CompletionGroup)
def completion() -> None:
    """Print or install the shell completion script (bash, zsh, fish).

    \b
    parhelia completion install      (for your $SHELL; or --shell bash|zsh|fish)
    bash:  eval "$(parhelia completion bash)"        (in ~/.bashrc)
    zsh:   eval "$(parhelia completion zsh)"         (in ~/.zshrc)
    fish:  parhelia completion fish > ~/.config/fish/completions/parhelia.fish

    Commands, options and the ids of tasks, sessions, checkpoints and containers are
    completed (ids are asked of a running daemon; none is started for it).
    """


def _script(shell: str) -> str:
    from click.shell_completion import get_completion_class

    from parhelia_cli.main import cli

    cls = get_completion_class(shell)
    assert cls is not None
    return cls(cli, {}, "parhelia", "_PARHELIA_COMPLETE").source().rstrip("\n") + "\n"


def _print_command(shell: str) -> click.Command:
    @click.command(shell, help=f"Print the {shell} completion script.")
    def show() -> None:
        render.line(_script(shell).rstrip("\n"))
    return show


def completion_path(shell: str, environ: Mapping[str, str]) -> Path:
    """Where each shell looks for a user's completion scripts by itself: bash-completion's
    user directory, fish's completions directory, and for zsh a ``~/.zfunc`` on fpath."""
    home = Path(environ.get("HOME") or Path.home())
    data = Path(environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    config = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    if shell == "bash":
        base = Path(environ["BASH_COMPLETION_USER_DIR"]) \
            if environ.get("BASH_COMPLETION_USER_DIR") else data / "bash-completion"
        return base / "completions" / "parhelia"
    if shell == "fish":
        return config / "fish" / "completions" / "parhelia.fish"
    return Path(environ.get("ZDOTDIR") or home) / ".zfunc" / "_parhelia"


@click.command("install")
@click.option("--shell", type=click.Choice(SHELLS),
              help="Which shell (default: the one in $SHELL).")
def completion_install(shell: str | None) -> None:
    """Install the completion script where your shell finds it; running it again
    changes nothing (it says so)."""
    import os

    if shell is None:
        shell = Path(os.environ.get("SHELL", "")).name
        if shell not in SHELLS:
            raise CliError("E101", f"cannot tell your shell from SHELL={shell!r}; pass "
                           "--shell bash, zsh or fish")
    path = completion_path(shell, os.environ)
    script = _script(shell)
    try:
        old = path.read_text() if path.is_file() else None
        if old == script:
            render.line(f"The {shell} completion is already installed in {path}; "
                        "nothing changed.")
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(script)
        tmp.replace(path)
    except OSError as exc:
        raise CliError("E101", f"could not write {path}: {exc.strerror}") from None
    render.line(f"{'Updated' if old is not None else 'Installed'} the {shell} completion "
                f"in {path}.")
    if shell == "bash":
        render.line("New bash shells load it (with the bash-completion package); in this "
                    f"one: source {path}")
    elif shell == "zsh":
        render.line(f"zsh loads it when {path.parent} is on fpath; if it is not, add to "
                    f"~/.zshrc, before compinit:  fpath=({path.parent} $fpath); autoload "
                    "-Uz compinit && compinit")
    else:
        render.line("New fish shells load it.")
