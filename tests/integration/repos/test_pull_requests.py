"""``task pr``: the task's branch (the same commits as ``task pull``) pushed from the
daemon's side, and its pull request opened, then updated; ``task create --pr``; the
refusals, each with its code."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.helpers.fake_github import FakeGitHub
from tests.helpers.git_server import GitServer
from tests.helpers.gitrepo import git
from tests.helpers.harness import Harness, fake_prompt
from tests.integration.repos.common import FILES, NAME, OWNER, start

ANSWER = "I changed the greeting and documented it."
WORK = [{"write": "app.py", "content": "print('v2')\n"},
        {"write": "guide/greeting.md", "content": "# Greeting\nIt says v2.\n"},
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
    assert ANSWER in body and "app.py" in body and "guide/greeting.md" in body
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

    # --draft on the open pull request turns it into a draft (GraphQL: REST cannot).
    assert fake_github.pull(OWNER, NAME, pr["number"])["draft"] is False
    said = harness.run("task", "pr", task_id, "--draft", check=True).stdout
    assert f"Updated draft pull request #{pr['number']} into main" in said
    assert fake_github.pull(OWNER, NAME, pr["number"])["draft"] is True



NOTIFY = """#!/bin/sh
cat >> "$(dirname "$0")/notified.jsonl"
echo >> "$(dirname "$0")/notified.jsonl"
"""


def test_create_with_pr_opens_it_at_completion_from_the_mirror(
        harness_factory: Callable[..., Harness], git_server: GitServer,
        fake_github: FakeGitHub, tmp_path: Path) -> None:
    """A ``--repo --pr`` task: at completion the daemon pushes the branch from its mirror
    and opens the pull request; the branch is the commit `task pull` makes; one
    notification, carrying the pull request."""
    git_server.create(OWNER, NAME, FILES)
    notifier = tmp_path / "notify" / "notify.sh"
    notifier.parent.mkdir()
    notifier.write_text(NOTIFY)
    notifier.chmod(0o755)
    harness = start(harness_factory, git_server, fake_github,
                    extra=f"[notify]\ncommand = ['{notifier}']\n")
    url = git_server.url(OWNER, NAME)
    task_id = harness.json("task", "create", prompt(), "--repo", url, "--pr")["id"]
    assert harness.task(task_id)["open_pr"] is True
    assert harness.wait(task_id, timeout=90)["status"] == "completed"

    def opened() -> list[dict[str, Any]] | None:
        return harness.events("--task", task_id, "--type", "pull_request_opened") or None

    from tests.helpers.waiting import wait_for
    event = wait_for(opened, 30, what="the pull request of the --pr task")[0]
    number, branch = event["data"]["number"], f"parhelia/{task_id}"
    made = fake_github.pull(OWNER, NAME, number)
    assert ANSWER in made["body"] and made["base"]["ref"] == "main"
    assert harness.task(task_id)["pull_request"]["url"] == made["html_url"]

    # `task pull` of the same task into a fresh clone of the repository makes the same
    # commit the daemon pushed from its mirror.
    fresh = tmp_path / "fresh"
    subprocess.run(["git", "clone", "-q", str(git_server.repo(OWNER, NAME)), str(fresh)],
                   check=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    pulled = harness.json("task", "pull", task_id, "--repo-path", str(fresh))
    assert pulled["commit"] == git_server.ref(OWNER, NAME, f"refs/heads/{branch}")

    notes = wait_for(lambda: [json.loads(line) for line in (notifier.parent /
                     "notified.jsonl").read_text().splitlines() if line.strip()] or None
                     if (notifier.parent / "notified.jsonl").exists() else None, 30,
                     what="the notification")
    assert len(notes) == 1 and notes[0]["pull_request"]["url"] == made["html_url"]


def test_a_remote_without_a_forge_is_pushed_to(
        harness_factory: Callable[..., Harness], git_server: GitServer,
        fake_github: FakeGitHub, tmp_path: Path) -> None:
    """A clone whose origin is on no GitHub host: the branch is pushed (there is no
    pull request to open, nor a compare page Parhelia knows) and recorded."""
    git_server.create(OWNER, NAME, FILES)
    bare = git_server.repo(OWNER, NAME)
    harness = start(harness_factory, git_server, fake_github)
    clone = user_clone(git_server, tmp_path / "clone")
    git(clone, "remote", "set-url", "origin", f"file://{bare}")
    task_id = run_task(harness, clone)
    out = pr_json(harness, task_id)
    assert out["forge"] is None and out["pull_request"]["number"] == 0
    assert out["pushed"] and out["pull_request"]["remote"] == f"file://{bare}"
    assert git(bare, "rev-parse", f"refs/heads/parhelia/{task_id}") == \
        out["pull_request"]["commit"]
    said = harness.run("task", "pr", task_id, check=True).stdout
    assert "is already at" in said and "no forge Parhelia opens pull requests on" in said
    assert fake_github.requests == []
    pushed = harness.events("--task", task_id, "--type", "branch_pushed")
    assert len(pushed) == 2 and pushed[0]["data"]["pushed"] and not pushed[1]["data"]["pushed"]


def test_what_the_agent_plants_in_its_git_directory_changes_nothing_of_the_push(
        harness_factory: Callable[..., Harness], git_server: GitServer,
        fake_github: FakeGitHub, tmp_path: Path) -> None:
    """The agent rewrites its workspace's .git/config (a remote of its own, a hooks path,
    an insteadOf rewrite) and plants hooks: the branch still goes to the user's remote,
    nothing of the workspace runs on the daemon's side, and the token goes nowhere else."""
    git_server.create(OWNER, NAME, FILES)
    marker = tmp_path / "hook-ran"
    evil = tmp_path / "evil.git"
    subprocess.run(["git", "init", "-q", "--bare", str(evil)], check=True)
    hook = f"#!/bin/sh\ntouch {marker}\n"
    config = ("[core]\n\trepositoryformatversion = 0\n\thooksPath = .git/planted\n"
              f"\tfsmonitor = touch {marker}\n"
              f'[remote "origin"]\n\turl = file://{evil}\n'
              f'[url "file://{evil}"]\n\tinsteadOf = {git_server.base}/\n')
    planted = fake_prompt(
        {"write": "app.py", "content": "print('v2')\n"},
        {"write": ".git/config", "content": config},
        {"write": ".git/planted/pre-push", "content": hook},
        {"write": ".git/planted/reference-transaction", "content": hook},
        {"run": ["chmod", "+x", ".git/planted/pre-push", ".git/planted/reference-transaction"]},
        {"turn": True})
    harness = start(harness_factory, git_server, fake_github)
    clone = user_clone(git_server, tmp_path / "clone")
    task_id = json.loads(harness.run("task", "create", planted, "--json", cwd=clone,
                                     check=True).stdout)["id"]
    assert harness.wait(task_id, timeout=90)["status"] == "completed"
    workspace = harness.workspace(task_id)  # the agent really planted all of it
    assert "hooksPath = .git/planted" in (workspace / ".git" / "config").read_text()
    assert os.access(workspace / ".git" / "planted" / "pre-push", os.X_OK)
    out = pr_json(harness, task_id)
    assert out["pull_request"]["remote"] == git_server.url(OWNER, NAME)
    assert git_server.ref(OWNER, NAME, f"refs/heads/parhelia/{task_id}") == \
        out["pull_request"]["commit"]
    files = git(git_server.repo(OWNER, NAME), "ls-tree", "-r", "--name-only",
                f"parhelia/{task_id}").split()
    assert "app.py" in files and not any(f.startswith(".git") for f in files)
    assert not marker.exists()
    assert git(evil, "for-each-ref") == ""
    assert all(s.authorized for s in git_server.seen if s.method == "POST")
