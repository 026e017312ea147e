"""Every refusal of private clones and pull requests, with its code and what to do."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.helpers.fake_github import FakeGitHub
from tests.helpers.git_server import GitServer
from tests.helpers.gitrepo import git
from tests.helpers.harness import Harness, fake_prompt
from tests.integration.repos.common import FILES, NAME, OWNER, start
from tests.integration.repos.test_pull_requests import prompt, run_task, user_clone


def failed_clone(harness: Harness, *args: str) -> dict[str, object]:
    task_id = harness.json("task", "create", prompt(), *args)["id"]
    task = harness.wait(task_id, timeout=60)
    assert task["status"] == "failed", task
    return task["result"]


def test_a_private_clone_without_a_credential_says_every_way_to_give_one(
        harness_factory: Callable[..., Harness], git_server: GitServer,
        fake_github: FakeGitHub) -> None:
    git_server.create(OWNER, NAME, FILES)
    harness = start(harness_factory, git_server, fake_github, with_token=False)
    result = failed_clone(harness, "--repo", git_server.url(OWNER, NAME))
    message = str(result["error_message"])
    assert result["error_code"] == "E400"
    for way in ("parhelia auth set --github", "GITHUB_TOKEN", "GH_TOKEN", "gh auth login"):
        assert way in message, way
    # The server was asked without a credential and refused.
    assert git_server.seen and not any(s.authorized for s in git_server.seen)


def test_a_refused_token_a_missing_ref_and_an_unreachable_host(
        harness_factory: Callable[..., Harness], git_server: GitServer,
        fake_github: FakeGitHub) -> None:
    git_server.create(OWNER, NAME, FILES)
    harness = start(harness_factory, git_server, fake_github,
                    GITHUB_TOKEN="ghp_" + "0" * 36)
    result = failed_clone(harness, "--repo", git_server.url(OWNER, NAME))
    assert result["error_code"] == "E401" and "refused" in str(result["error_message"])
    assert "GITHUB_TOKEN from the daemon's environment" in str(result["error_message"])
    harness.daemon.stop()

    harness = start(harness_factory, git_server, fake_github)
    result = failed_clone(harness, "--repo", git_server.url(OWNER, NAME), "--ref", "nope")
    assert result["error_code"] == "E101" and "no branch or tag named 'nope'" in \
        str(result["error_message"])
    result = failed_clone(harness, "--repo", f"http://127.0.0.1:9/{OWNER}/{NAME}.git")
    assert result["error_code"] == "E502"


def test_a_url_with_a_credential_or_plain_http_elsewhere_is_refused_at_create(
        harness_factory: Callable[..., Harness], git_server: GitServer,
        fake_github: FakeGitHub) -> None:
    harness = start(harness_factory, git_server, fake_github)
    for url, said in ((f"http://x-access-token:{git_server.token}@{git_server.host}/a/b.git",
                       "must not carry a password or token"),
                      ("http://example.com/a/b.git", "only for this machine"),
                      ("ext::sh -c touch% /tmp/pwned", "must be one URL")):
        proc = harness.run("task", "create", "x", "--repo", url, "--no-dispatch")
        assert proc.returncode == 2 and "E101" in proc.stderr and said in proc.stderr, \
            (url, proc.stderr)
        assert git_server.token not in proc.stdout + proc.stderr
    assert harness.json("task", "list")["tasks"] == []


def test_task_pr_without_a_token_and_without_changes(
        harness_factory: Callable[..., Harness], git_server: GitServer,
        fake_github: FakeGitHub, tmp_path: Path) -> None:
    git_server.create(OWNER, NAME, FILES)
    harness = start(harness_factory, git_server, fake_github, with_token=False)
    clone = user_clone(git_server, tmp_path / "clone")
    task_id = run_task(harness, clone)
    proc = harness.run("task", "pr", task_id)
    assert proc.returncode == 1 and "E400" in proc.stderr
    assert "parhelia auth set --github" in proc.stderr and "gh auth login" in proc.stderr

    idle = json.loads(harness.run("task", "create", fake_prompt({"turn": True}), "--json",
                                  cwd=clone, check=True).stdout)["id"]
    assert harness.wait(idle)["status"] == "completed"
    proc = harness.run("task", "pr", idle)
    assert proc.returncode == 1 and "E605" in proc.stderr and "changed nothing" in proc.stderr


def test_a_rejected_push_names_the_remote_reason(
        harness_factory: Callable[..., Harness], git_server: GitServer,
        fake_github: FakeGitHub, tmp_path: Path) -> None:
    git_server.create(OWNER, NAME, FILES)
    git_server.protect(OWNER, NAME, "release", "GH006: Protected branch update failed")
    harness = start(harness_factory, git_server, fake_github)
    clone = user_clone(git_server, tmp_path / "clone")
    task_id = run_task(harness, clone)
    proc = harness.run("task", "pr", task_id, "--branch", "release")
    assert proc.returncode == 1 and "E607" in proc.stderr
    assert "pre-receive hook declined" in proc.stderr and "GH006" in proc.stderr
    assert git_server.ref(OWNER, NAME, "refs/heads/release") is None

    # Someone else's commits on the branch: never replaced.
    foreign = git_server.commit_on(OWNER, NAME, f"parhelia/{task_id}", {"x.txt": "theirs\n"})
    proc = harness.run("task", "pr", task_id)
    assert proc.returncode == 1 and "E607" in proc.stderr and "did not push" in proc.stderr
    assert git_server.ref(OWNER, NAME, f"refs/heads/parhelia/{task_id}") == foreign
    assert fake_github.requests == []


def test_github_api_errors(harness_factory: Callable[..., Harness], git_server: GitServer,
                           fake_github: FakeGitHub, tmp_path: Path) -> None:
    git_server.create(OWNER, NAME, FILES)
    harness = start(harness_factory, git_server, fake_github)
    clone = user_clone(git_server, tmp_path / "clone")
    task_id = run_task(harness, clone)

    fake_github.fail_next(403, {"message": "Resource not accessible by integration"},
                          {"X-OAuth-Scopes": "read:org, gist"})
    proc = harness.run("task", "pr", task_id)
    assert proc.returncode == 1 and "E401" in proc.stderr
    assert "read:org, gist" in proc.stderr and "`repo` scope" in proc.stderr
    # The branch went up before the API refused: the next try only opens the PR.
    assert git_server.ref(OWNER, NAME, f"refs/heads/parhelia/{task_id}") is not None

    fake_github.reachable = set()
    proc = harness.run("task", "pr", task_id)
    assert proc.returncode == 1 and "E401" in proc.stderr and "404" in proc.stderr
    fake_github.reachable = None

    proc = harness.run("task", "pr", task_id, "--base", "no-such-base")
    assert proc.returncode == 1 and "E608" in proc.stderr and "base invalid" in proc.stderr

    # A rate limit with Retry-After is waited out, then the call goes through.
    fake_github.fail_next(429, {"message": "API rate limit exceeded"}, {"Retry-After": "1"})
    out = json.loads(harness.run("task", "pr", task_id, "--json", check=True).stdout)
    posts = fake_github.calls("POST")
    assert out["created"] and len([p for p in posts if p.path.endswith("/pulls")]) >= 2

    # A pull request already open for the branch (opened by hand, unknown to the task)
    # is found and updated, not duplicated.
    other = run_task(harness, clone)
    git_server.commit_on(OWNER, NAME, f"parhelia/{other}", {"y.txt": "start\n"})
    handmade = fake_github._answer("POST", f"/repos/{OWNER}/{NAME}/pulls", {}, {
        "head": f"{OWNER}:parhelia/{other}", "base": "main", "title": "by hand"})[1]
    git(git_server.repo(OWNER, NAME), "update-ref", "-d", f"refs/heads/parhelia/{other}")
    done = json.loads(harness.run("task", "pr", other, "--json", check=True).stdout)
    assert done["pull_request"]["number"] == handmade["number"] and not done["created"]
    assert fake_github.pull(OWNER, NAME, handmade["number"])["title"] != "by hand"


def test_a_clone_that_git_refuses_is_no_daemon_crash(
        harness_factory: Callable[..., Harness], git_server: GitServer,
        fake_github: FakeGitHub, tmp_path: Path) -> None:
    """An empty repository has nothing to clone: E101, and the daemon goes on."""
    bare = git_server.repo(OWNER, "empty")
    bare.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    harness = start(harness_factory, git_server, fake_github)
    result = failed_clone(harness, "--repo", git_server.url(OWNER, "empty"))
    assert result["error_code"] == "E101" and "empty" in str(result["error_message"])
    assert harness.run("status").returncode in (0, 1)


def test_a_remote_that_refuses_to_rewrite_a_branch_says_so(
        harness_factory: Callable[..., Harness], git_server: GitServer,
        fake_github: FakeGitHub, tmp_path: Path) -> None:
    """The task ran again (a new commit on the same base): the update is not a fast
    forward; a remote that forbids rewriting branches refuses it, in its words."""
    git_server.create(OWNER, NAME, FILES)
    git(git_server.repo(OWNER, NAME), "config", "receive.denyNonFastForwards", "true")
    harness = start(harness_factory, git_server, fake_github)
    clone = user_clone(git_server, tmp_path / "clone")
    task_id = run_task(harness, clone)
    first = json.loads(harness.run("task", "pr", task_id, "--json", check=True).stdout)
    harness.run("task", "retry", task_id, check=True)
    assert harness.wait(task_id, timeout=90)["status"] == "completed"
    proc = harness.run("task", "pr", task_id)
    assert proc.returncode == 1 and "E607" in proc.stderr and "non-fast-forward" in proc.stderr
    assert git_server.ref(OWNER, NAME, f"refs/heads/parhelia/{task_id}") == \
        first["pull_request"]["commit"]
    # The task still records what is really on the remote.
    assert harness.task(task_id)["pull_request"]["commit"] == first["pull_request"]["commit"]
