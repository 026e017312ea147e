"""``help``, ``examples`` and ``completion``: answered locally, no daemon needed."""

from __future__ import annotations

import re

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
    from parhelia_cli.main import ALIASES

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


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL.

    \b
    bash:  eval "$(parhelia completion bash)"        (in ~/.bashrc)
    zsh:   eval "$(parhelia completion zsh)"         (in ~/.zshrc)
    fish:  parhelia completion fish > ~/.config/fish/completions/parhelia.fish

    Commands, options and the ids of tasks, sessions, checkpoints and containers are
    completed (ids are asked of a running daemon; none is started for it).
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None
    root = ctx.find_root().command
    render.line(cls(root, {}, "parhelia", "_PARHELIA_COMPLETE").source().rstrip("\n"))
