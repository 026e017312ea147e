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


def test_examples_use_only_real_options():
    """Every `parhelia task ...` example parses (against the real Click commands)."""
    import shlex

    from parhelia_cli.main import cli

    for topic, examples in EXAMPLES.items():
        for _, command in examples:
            for part in command.split("&&"):
                words = shlex.split(part.replace("$(", "").replace(")", ""))
                if "parhelia" not in words:
                    continue
                words = words[words.index("parhelia") + 1:]
                if words[:1] not in (["task"], ["events"], ["config"], ["daemon"]):
                    continue
                words = [w for w in words if w not in ("|", ">", "events.json", "done;")]
                cut = next((i for i, w in enumerate(words) if w in ("|", ">", ";")), len(words))
                ctx = cli.make_context("parhelia", list(words[:cut]), resilient_parsing=True)
                assert ctx is not None, (topic, command)


def test_unknown_examples_topic(run):
    result = run("examples", "quantum")
    assert result.exit_code == 2
    assert "E101" in result.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(run, shell):
    result = run("completion", shell)
    assert result.exit_code == 0
    assert "_PARHELIA_COMPLETE" in result.stdout
