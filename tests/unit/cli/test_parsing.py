"""Parsing and client-side validation: no daemon is needed (autostart is off, and a
refused value never reaches the connection)."""

from __future__ import annotations

import json

import pytest

BAD_VALUES = [
    (["task", "create", "x", "--gpu", "X100"], "X100"),
    (["task", "create", "x", "--gpu", "A10G:9"], "A10G:9"),
    (["task", "create", "x", "--gpu", "A10G:two"], "A10G:two"),
    (["task", "create", "x", "--cpu", "0"], "0"),
    (["task", "create", "x", "--cpu", "lots"], "lots"),
    (["task", "create", "x", "--memory", "0"], "0"),
    (["task", "create", "x", "--memory", "16 furlongs"], "16 furlongs"),
    (["task", "create", "x", "--timeout", "soon"], "soon"),
    (["task", "create", "x", "--timeout", "0"], "0"),
    (["task", "create", "x", "--max-turns", "0"], "0"),
    (["task", "create", "x", "--max-cost", "-1"], "-1"),
    (["task", "create", "x", "--max-cost", "cheap"], "cheap"),
    (["task", "create", "x", "--max-cost", "0.0000001"], "0.0000001"),
    (["task", "create", "x", "--permission-mode", "yolo"], "yolo"),
    (["task", "create", "x", "--backend", "k8s"], "k8s"),
    (["task", "create", "x", "--workspace", "/no/such/dir"], "/no/such/dir"),
    (["task", "list", "--status", "sleeping"], "sleeping"),
    (["task", "list", "--limit", "0"], "0"),
    (["task", "cancel", "t-1", "--grace", "later"], "later"),
    (["events", "list", "--since", "yesterday"], "yesterday"),
    (["events", "list", "--since", "2026-11-28T10:00:00"], "2026-11-28T10:00:00"),
    (["events", "list", "--until", "3 fortnights"], "3 fortnights"),
    (["events", "list", "--level", "loud"], "loud"),
    (["events", "list", "--type", "task_exploded"], "task_exploded"),
    (["events", "watch", "--type", "task_created,nope"], "nope"),
    (["daemon", "install", "--manager", "upstart"], "upstart"),
    (["completion", "tcsh"], "tcsh"),
]


@pytest.mark.parametrize(("args", "value"), BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_bad_values_are_e101_exit_2_naming_the_value(run, args, value):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert "Error E101 INVALID_ARGUMENT:" in result.stderr
    assert value in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("args", "value"), BAD_VALUES[:3])
def test_bad_values_with_json_print_a_json_error(run, args, value):
    result = run(*args, "--json")
    assert result.exit_code == 2
    payload = json.loads(result.stderr.strip().splitlines()[-1])
    assert payload["error"]["code"] == "E101"
    assert payload["error"]["name"] == "INVALID_ARGUMENT"
    assert value in payload["error"]["message"]


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
def test_empty_prompt_is_e102(run, prompt):
    result = run("task", "create", prompt)
    assert result.exit_code == 2
    assert "E102 MISSING_REQUIRED" in result.stderr


def test_empty_prompt_from_stdin_is_e102(run):
    result = run("task", "create", "-", input="")
    assert result.exit_code == 2
    assert "E102" in result.stderr


def test_missing_argument_is_e102(run):
    result = run("task", "show")
    assert result.exit_code == 2
    assert "E102 MISSING_REQUIRED" in result.stderr


@pytest.mark.parametrize("args", [
    ["task", "create", "x", "--repo", "https://example.com/r.git", "--workspace", "."],
    ["task", "create", "x", "--repo", "https://example.com/r.git", "--no-workspace"],
    ["task", "create", "x", "--workspace", ".", "--no-workspace"],
    ["task", "create", "x", "--ref", "main"],
    ["task", "create", "x", "--branch", "main"],
    ["task", "create", "x", "--sync", "--no-dispatch"],
    ["task", "pull", "t-1", "--branch", "b", "--patch", "x.patch"],
    # "-" is stdout for events export; here it made a file named "-" in the repository.
    ["task", "pull", "t-1", "--patch", "-"],
])
def test_contradicting_options_are_e101(run, args):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert "E101" in result.stderr


def test_did_you_mean(run):
    result = run("tsak", "list")
    assert result.exit_code == 2
    assert "Did you mean 'task'?" in result.stderr
    result = run("task", "lst")
    assert result.exit_code == 2


def test_unknown_option_is_usage_error(run):
    result = run("task", "list", "--colour")
    assert result.exit_code == 2
    assert "--colour" in result.stderr


def test_planned_groups_say_not_available(run, monkeypatch):
    from parhelia_cli import main

    monkeypatch.setattr(main, "PLANNED", main.PLANNED | {"warp"})
    for name in main.PLANNED:
        result = run(name, "list")
        assert result.exit_code == 2
        assert "not available in this version" in result.stderr
        assert f"parhelia {name}" in result.stderr


def test_help_lists_commands_and_aliases(run):
    result = run("--help")
    assert result.exit_code == 0
    for name in ("task (t)", "events (e)", "status", "daemon", "help", "examples", "completion",
                 "doctor", "config"):
        assert name in result.stdout
    assert "t = task" in result.stdout


def test_aliases_resolve(run):
    assert run("t", "--help").stdout == run("task", "--help").stdout
    assert run("e", "--help").stdout == run("events", "--help").stdout


def test_every_command_has_help(run):
    import click

    from parhelia_cli.main import COMMANDS, load_command

    for name in COMMANDS:
        result = run(name, "--help")
        assert result.exit_code == 0, (name, result.output)
        command = load_command(name)
        if isinstance(command, click.Group):
            for sub in command.commands:
                result = run(name, sub, "--help")
                assert result.exit_code == 0, (name, sub, result.output)


def test_estimate_only_is_documented(run):
    assert "--estimate-only" in run("task", "create", "--help").stdout


def test_gpu_is_normalised(monkeypatch):
    from parhelia_cli import params

    assert params.GPU.convert("a10g", None, None) == "A10G"
    assert params.GPU.convert("h100:2", None, None) == "H100:2"
    assert params.GPU.convert("A100-80gb", None, None) == "A100-80GB"
