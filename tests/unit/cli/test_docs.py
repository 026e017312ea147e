"""help topics, error codes, examples and completion scripts (answered locally)."""

from __future__ import annotations

import pytest

from parhelia import errors
from parhelia_cli.examples import EXAMPLES
from parhelia_cli.help_topics import TOPICS

README_TOPICS = ["task", "session", "checkpoint", "budget", "container", "events", "config",
                 "reconciler", "gpu", "parallel", "daemon", "errors"]
EXAMPLE_TOPICS = ["gpu", "checkpoint", "budget", "parallel", "task", "session", "events",
                  "container", "config", "recovery"]


def test_every_topic_exists():
    assert set(README_TOPICS) <= set(TOPICS)
    assert set(EXAMPLE_TOPICS) <= set(EXAMPLES)


@pytest.mark.parametrize("topic", README_TOPICS)
def test_help_topic(run, topic):
    result = run("help", topic)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) >= 8
    for placeholder in ("{event_types}", "{error_codes}", "{{"):
        assert placeholder not in result.stdout


def test_help_errors_lists_every_code(run):
    out = run("help", "errors").stdout
    for code in errors.CATALOGUE:
        assert code in out


def test_help_events_lists_every_type(run):
    from parhelia import events

    out = run("help", "events").stdout
    for name in events.CATALOGUE:
        assert name in out


@pytest.mark.parametrize("code", list(errors.CATALOGUE))
def test_help_error_code(run, code):
    spec = errors.CATALOGUE[code]
    result = run("help", code.lower())
    assert result.exit_code == 0
    for part in (spec.code, spec.name, spec.what, spec.why, spec.recover):
        assert part in result.stdout
    assert f"exit code {int(spec.exit)}" in result.stdout


def test_unknown_topic_is_e101_with_the_list(run):
    result = run("help", "kubernetes")
    assert result.exit_code == 2
    assert "E101" in result.stderr
    for topic in README_TOPICS:
        assert topic in result.stderr


def test_unknown_error_code(run):
    result = run("help", "E999")
    assert result.exit_code == 2
    assert "E101" in result.stderr


def test_help_without_topic_and_aliases(run):
    assert "checkpoint" in run("help").stdout
    assert run("help", "t").stdout == run("help", "task").stdout


def test_unavailable_commands_are_flagged(run):
    from parhelia_cli.help_topics import render_topic
    from parhelia_cli.main import COMMANDS

    out = render_topic("session", set(COMMANDS) - {"session", "resume"})
    assert "not available in this version yet" in out
    for topic in ("task", "session", "checkpoint"):
        assert "not available" not in run("help", topic).stdout


@pytest.mark.parametrize("topic", EXAMPLE_TOPICS)
def test_examples(run, topic):
    result = run("examples", topic)
    assert result.exit_code == 0
    assert result.stdout.count("parhelia ") >= 3


SHELL_SEPARATORS = frozenset({"&&", "||", "|", ";", "(", ")", "$(", ">", ">>", "<"})
XARGS_PLACEHOLDER = "ID_FROM_XARGS"
INSPECTOR_OPTIONS = frozenset({"--method", "--tool-name", "--tool-arg", "--uri",
                               "--prompt-name", "--prompt-args"})
"""What the MCP Inspector's ``--cli`` takes after the server's command line."""


def parhelia_command_lines(command: str) -> list[list[str]]:
    """The arguments of every ``parhelia`` invocation in a shell command line: split at
    ``&&``, ``|``, ``;``, ``$(...)`` and redirections, inside loops too; one run by
    ``xargs`` gets the argument xargs appends."""
    import shlex

    lexer = shlex.shlex(command.replace("$(", " $( "), posix=True, punctuation_chars="|&;()<>")
    lexer.whitespace_split = True
    simple: list[list[str]] = [[]]
    for token in lexer:
        if token in SHELL_SEPARATORS or token.endswith("$"):
            simple.append([])
        else:
            simple[-1].append(token)
    out = []
    for words in simple:
        if "parhelia" not in words:
            continue
        # The last one: `claude mcp add parhelia -- parhelia mcp-server` names a server
        # "parhelia", then runs the command.
        at = len(words) - 1 - words[::-1].index("parhelia")
        args = words[at + 1:]
        if "xargs" in words[:at]:
            args.append(XARGS_PLACEHOLDER)
        if words[at - 1:at] == ["--cli"]:  # the MCP Inspector: its own options follow
            args = args[:next((i for i, w in enumerate(args) if w in INSPECTOR_OPTIONS),
                              len(args))]
        out.append(args)
    return out


def parse_parhelia(args: list[str]) -> None:
    """Parse a whole command line against the real Click commands, down to the leaf
    command: an unknown option or command, a bad value or a missing argument raises
    ``click.UsageError``."""
    import click

    from parhelia_cli.main import cli

    ctx = cli.make_context("parhelia", list(args))
    while isinstance(ctx.command, click.Group):
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        if not rest:
            return
        name, command, rest = ctx.command.resolve_command(ctx, rest)
        assert command is not None and name is not None
        ctx = command.make_context(name, rest, parent=ctx)


def bad_examples(examples: dict[str, list[tuple[str, str]]]) -> list[str]:
    """``topic: command line: why`` for every ``parhelia`` invocation of an example that
    does not parse."""
    import click

    bad = []
    for topic, lines in examples.items():
        for _, command in lines:
            for args in parhelia_command_lines(command):
                try:
                    parse_parhelia(args)
                except click.UsageError as exc:
                    bad.append(f"{topic}: parhelia {' '.join(args)}: {exc.format_message()}")
    return bad


def test_examples_use_only_real_options():
    """Every ``parhelia ...`` of every example parses whole, down to the leaf command
    (against the real Click commands)."""
    assert sum(len(parhelia_command_lines(c)) for lines in EXAMPLES.values()
               for _, c in lines) > 50
    assert bad_examples(EXAMPLES) == []


@pytest.mark.parametrize(("command", "why"), [
    ('parhelia task create "Fix it" --no-such-flag', "No such option '--no-such-flag'"),
    ("parhelia checkpoint gc --dry-run && parhelia checkpoint gc --frobnicate",
     "--frobnicate"),
    ("parhelia task list --status nonsense", "nonsense"),
    ('ID=$(parhelia task create "x" --timeout forever)', "forever"),
    ("parhelia task list --json | xargs -n1 parhelia task pul", "No such command 'pul'"),
    ("parhelia budget sett 50", "No such command 'sett'"),
    ("claude mcp add parhelia -- parhelia mcp-server --autostart-never", "--autostart-never"),
    ("npx @modelcontextprotocol/inspector --cli parhelia mcp-serve --method tools/list",
     "No such command 'mcp-serve'"),
], ids=["flag", "after-and", "choice", "in-substitution", "under-xargs", "subcommand",
        "mcp-add", "inspector"])
def test_the_examples_guard_sees_a_planted_bad_example(monkeypatch, command, why):
    """Planted in EXAMPLES (and removed again by monkeypatch)."""
    monkeypatch.setitem(EXAMPLES, "planted", [("a planted example", command)])
    found = [b for b in bad_examples(EXAMPLES) if b.startswith("planted: ")]
    assert len(found) == 1 and why in found[0], found


def test_unknown_examples_topic(run):
    result = run("examples", "quantum")
    assert result.exit_code == 2
    assert "E101" in result.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(run, shell):
    result = run("completion", shell)
    assert result.exit_code == 0
    assert "_PARHELIA_COMPLETE" in result.stdout
