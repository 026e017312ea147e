"""``task pr``: the task's branch (the same commits as ``task pull``) pushed from the
daemon's side, and its pull request opened, then updated; ``task create --pr``; the
refusals, each with its code."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.fake_github import FakeGitHub
from tests.helpers.git_server import GitServer
from tests.helpers.gitrepo import git
from tests.helpers.harness import Harness, fake_prompt
from tests.integration.repos.common import FILES, NAME, OWNER, start

ANSWER = "I changed the greeting and documented it."
WORK = [{"write": "app.py", "content": "print('v2')\n"},
        {"write": "docs/greeting.md", "content": "# Greeting\nIt says v2.\n"},
        {"turn": True}]


def user_clone(git_server: GitServer, where: Path, *, dirty: bool = False) -> Path:
    """The user's own clone of the server's repository (origin = the server's URL)."""
    bare = git_server.repo(OWNER, NAME)
    subprocess.run(["git", "clone", "-q", str(bare), str(where)], check=True)
    git(where, "remote", "set-url", "origin", git_server.url(OWNER, NAME))
    git(where, "config", "user.name", "Dev")
    git(where, "config", "user.email", "dev@example.com")
    if dirty:
        (where / "README.md").write_text("# secret app\nwork in progress\n")
    return where


TITLE = "Make the greeting say v2"


def prompt(answer: str = ANSWER) -> str:
    return fake_prompt(*WORK, {"answer": answer}, text=TITLE)


def run_task(harness: Harness, cwd: Path, *args: str) -> str:
    task_id = json.loads(harness.run("task", "create", prompt(), *args, "--json", cwd=cwd,
                                     check=True).stdout)["id"]
    done = harness.wait(task_id, timeout=90)
    assert done["status"] == "completed", done
    return str(task_id)


def pr_json(harness: Harness, task_id: str, *args: str) -> dict[str, Any]:
    return json.loads(harness.run("task", "pr", task_id, *args, "--json", check=True).stdout)


def test_task_pr_pushes_the_pull_branch_opens_then_updates(
        harness_factory: Callable[..., Harness], git_server: GitServer,
        fake_github: FakeGitHub, tmp_path: Path) -> None:
    git_server.create(OWNER, NAME, FILES)
    harness = start(harness_factory, git_server, fake_github)
    clone = user_clone(git_server, tmp_path / "clone", dirty=True)
    task_id = run_task(harness, clone)

    pulled = harness.json("task", "pull", task_id, "--branch", "pulled")
    out = pr_json(harness, task_id)
    pr = out["pull_request"]
    branch = f"parhelia/{task_id}"
    assert out["pushed"] and out["created"] and out["forge"] == "github"
    assert pr["branch"] == branch and pr["base"] == "main" and pr["number"] >= 1
    # Byte-identical: the pushed branch is the commit `task pull` made, and the server
    # has exactly that commit (and its parent, the user's uncommitted changes).
    assert git_server.ref(OWNER, NAME, f"refs/heads/{branch}") == pulled["commit"] == pr["commit"]
    assert git(clone, "rev-parse", "pulled^") == pulled["upload_commit"]
    assert git_server.ref(OWNER, NAME, f"{branch}^") == pulled["upload_commit"]
    # Nothing was written to the user's clone by `task pr` (only `task pull`'s branch).
    assert git(clone, "for-each-ref", "--format=%(refname)", "refs/heads") == \
        "refs/heads/main\nrefs/heads/pulled"

    made = fake_github.pull(OWNER, NAME, pr["number"])
    body = made["body"]
    assert made["head"]["ref"] == branch and made["base"]["ref"] == "main"
    assert made["title"] == TITLE
    assert ANSWER in body and "app.py" in body and "docs/greeting.md" in body
    assert "Cost" in body and "$" in body and "Turns" in body and "Duration" in body
    task = harness.task(task_id)
    assert f"parhelia resume {task['session_id']}" in body
    assert task["pull_request"]["url"] == made["html_url"] == pr["url"]
    listed = harness.json("task", "list")["tasks"][0]
    assert listed["pull_request"]["url"] == made["html_url"]
    shown = harness.run("task", "show", task_id, check=True).stdout
    assert f"#{pr['number']} {made['html_url']}" in shown
    opened = harness.events("--task", task_id, "--type", "pull_request_opened")
    assert [e["data"]["number"] for e in opened] == [pr["number"]]

    # A second `task pr`: nothing new to push, the same pull request updated.
    again = pr_json(harness, task_id, "--title", "Better title")
    assert again["pull_request"]["number"] == pr["number"] and not again["created"]
    assert not again["pushed"]
    assert fake_github.pull(OWNER, NAME, pr["number"])["title"] == "Better title"
    assert len(fake_github.calls("POST")) == 1 and fake_github.calls("PATCH")

    # The task runs again (retry): a new result, so a new commit; the branch is replaced
    # (Parhelia's own earlier push, under the lease) and the same pull request updated.
    harness.run("task", "retry", task_id, check=True)
    assert harness.wait(task_id, timeout=90)["status"] == "completed"
    third = pr_json(harness, task_id)
    assert third["pushed"] and not third["created"]
    assert third["pull_request"]["number"] == pr["number"]
    assert third["pull_request"]["commit"] != pr["commit"]
    assert git_server.ref(OWNER, NAME, f"refs/heads/{branch}") == third["pull_request"]["commit"]
    assert len(fake_github.calls("POST")) == 1
    assert len(fake_github.pulls[f"{OWNER}/{NAME}"]) == 1

