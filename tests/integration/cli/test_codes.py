"""Each situation gets the error code that describes it, through the real CLI against a
real parheliad: a taken branch name, a task that changed nothing, ``help E101``."""

from __future__ import annotations

from pathlib import Path

import pytest

from parhelia import errors
from tests.helpers.gitrepo import init_repo
from tests.helpers.harness import Harness, fake_prompt

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def h(harness_factory) -> Harness:  # noqa: F811
    return harness_factory()


def test_pull_codes_say_what_happened(h: Harness, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    init_repo(repo, {"app.py": "print('v1')\n"})
    prompt = fake_prompt({"write": "app.py", "content": "print('v2')\n"}, {"turn": True})
    proc = h.run("task", "create", prompt, "--sync", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert "task pull" in proc.stdout  # it changed something: pulling is suggested
    task_id = h.json("task", "list")["tasks"][0]["id"]
    h.run("task", "pull", task_id, cwd=repo, check=True)

    again = h.run("task", "pull", task_id, cwd=repo)
    assert "E103 ALREADY_EXISTS" in again.stderr and "already exists" in again.stderr
    assert again.returncode == 1 and "E101" not in again.stderr
    assert "--branch" in h.run("help", "E103").stdout

    # A run that changed nothing: the summary does not suggest pulling, and pulling
    # says so with its own code.
    proc = h.run("task", "create", fake_prompt({"turn": True}), "--sync", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert "task pull" not in proc.stdout and "changed no files" in proc.stdout
    idle = h.json("task", "list")["tasks"][0]["id"]
    nothing = h.run("task", "pull", idle, cwd=repo)
    assert "E605 NO_CHANGES" in nothing.stderr and "nothing to pull" in nothing.stderr
    assert nothing.returncode == 1


def test_help_e101_describes_an_invalid_argument(h: Harness) -> None:
    text = h.run("help", "E101", check=True).stdout
    assert "INVALID_ARGUMENT" in text and "argument" in text and "--help" in text
    # Every code the daemon raises for a taken name or an empty result is its own.
    assert errors.spec("E103").grpc_status == "ALREADY_EXISTS"
    assert errors.spec("E605").exit == errors.Exit.ERROR
