"""Attack: git configuration around the daemon's clone and push runs nothing.

Everything git could be told to run is planted where a careless implementation would
read it: the daemon's user's global config (``~/.gitconfig`` and the XDG one), the
user's clone that ``task pr`` pushes from (its ``.git/config`` and ``.git/hooks``), and
the served repository itself (``.gitattributes`` naming a filter, ``.gitmodules`` with an
``ext::`` URL). Hooks, ``core.fsmonitor``, ``core.sshCommand``, ``core.askPass``, a
credential helper, a filter driver and a ``url.insteadOf`` that would send the clone, the
push and the token to another repository. A ``--repo`` task is cloned and its pull
request opened from the mirror; a task of the user's clone has its branch pushed from
the shadow: no marker file appears, the other repository receives nothing, and the same
plants do fire under plain git (so they are live)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.helpers.fake_github import FakeGitHub
from tests.helpers.git_server import GitServer
from tests.helpers.gitrepo import git
from tests.helpers.harness import Harness
from tests.integration.repos.common import FILES, NAME, OWNER, start
from tests.integration.repos.test_pull_requests import prompt, run_task, user_clone

HOOKS = ("pre-push", "post-checkout", "reference-transaction", "post-index-change",
         "post-merge", "post-rewrite", "pre-commit", "commit-msg", "post-commit",
         "prepare-commit-msg", "pre-auto-gc", "fsmonitor-watchman", "push-to-checkout")


def _script(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\ntouch '{marker}'\nexit 1\n")
    path.chmod(0o755)
    return path


def _hostile_config(markers: Path, where: str, hooks: Path, evil: Path,
                    repo_url: str) -> str:
    """A git config in which every way of running a program is taken, and every URL of
    the served repository is rewritten to ``evil``."""
    for name in HOOKS:
        _script(hooks / name, markers / f"{where}-hook-{name}")
    askpass = _script(hooks.parent / f"{where}-askpass", markers / f"{where}-askpass")
    return (f"[core]\n\tfsmonitor = touch '{markers}/{where}-fsmonitor'\n"
            f"\thooksPath = {hooks}\n\tsshCommand = touch '{markers}/{where}-ssh'\n"
            f"\taskPass = {askpass}\n\tpager = touch '{markers}/{where}-pager'\n"
            f"[credential]\n\thelper = !touch '{markers}/{where}-credential'\n"
            f'[filter "evil"]\n\tsmudge = touch \'{markers}/{where}-smudge\'\n'
            f"\tclean = touch '{markers}/{where}-clean'\n\trequired = true\n"
            f'[url "file://{evil}"]\n\tinsteadOf = {repo_url}\n'
            f"[protocol]\n\tallow = always\n"
            f"[http]\n\textraHeader = X-Planted: {where}\n")


def test_no_git_config_around_the_clone_and_the_push_runs_or_redirects(
        harness_factory: Callable[..., Harness], git_server: GitServer,
        fake_github: FakeGitHub, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    evil = tmp_path / "evil.git"
    subprocess.run(["git", "init", "-q", "--bare", str(evil)], check=True)
    hostile_files: dict[str, str | bytes] = {
        **FILES,
        ".gitattributes": "* filter=evil diff=evil merge=evil\n",
        ".gitmodules": ('[submodule "s"]\n\tpath = s\n'
                        f"\turl = ext::sh -c touch% {markers}/submodule\n"),
    }
    git_server.create(OWNER, NAME, hostile_files)

    # The daemon's user's global configuration (both places git reads it from).
    home = tmp_path / "hostile-home"
    glob = _hostile_config(markers, "global", home / "hooks", evil,
                            git_server.url(OWNER, NAME))
    (home / ".gitconfig").write_text(glob)
    (home / ".config" / "git").mkdir(parents=True)
    (home / ".config" / "git" / "config").write_text(glob)

    # The user's own clone, planted after it was made (the test's own git stays clean).
    clone = user_clone(git_server, tmp_path / "clone")
    with (clone / ".git" / "config").open("a") as fh:
        fh.write(_hostile_config(markers, "clone", clone / ".git" / "planted-hooks", evil,
                                 git_server.url(OWNER, NAME)))
    for name in HOOKS:
        _script(clone / ".git" / "hooks" / name, markers / f"clone-dothooks-{name}")

    harness = start(harness_factory, git_server, fake_github, HOME=str(home),
                    XDG_CONFIG_HOME=str(home / ".config"))

    # A --repo task: cloned into the mirror, its pull request opened from there.
    url = git_server.url(OWNER, NAME)
    repo_task = harness.json("task", "create", prompt(), "--repo", url)["id"]
    assert harness.wait(repo_task, timeout=90)["status"] == "completed"
    from_mirror = json.loads(harness.run("task", "pr", repo_task, "--json",
                                         check=True).stdout)
    assert from_mirror["created"] and from_mirror["pull_request"]["remote"] == url

    # A task of the user's clone: its branch pushed from the shadow over the clone.
    clone_task = run_task(harness, clone)
    from_clone = json.loads(harness.run("task", "pr", clone_task, "--json",
                                        check=True).stdout)
    assert from_clone["pushed"] and from_clone["pull_request"]["remote"] == url

    assert sorted(p.name for p in markers.iterdir()) == []
    assert git(evil, "for-each-ref") == ""
    for task_id, out in ((repo_task, from_mirror), (clone_task, from_clone)):
        assert git_server.ref(OWNER, NAME, f"refs/heads/parhelia/{task_id}") == \
            out["pull_request"]["commit"]
    # Every request reached the real server with the token; none carried the planted
    # header (the server would have seen it in place of the daemon's).
    assert git_server.seen and all(s.authorized for s in git_server.seen
                                   if "-pack" in s.path)
    assert len(fake_github.calls("POST")) == 2

    # The plants are live: plain git with this HOME runs them.
    plain = {"PATH": "/usr/bin:/bin", "HOME": str(home),
             "XDG_CONFIG_HOME": str(home / ".config"), "GIT_TERMINAL_PROMPT": "0"}
    rewritten = subprocess.run(["git", "ls-remote", "--get-url", url], env=plain,
                               capture_output=True, text=True, check=False).stdout
    assert rewritten.strip() == f"file://{evil}"
    subprocess.run(["git", "-C", str(clone), "status"], env=plain, capture_output=True,
                   check=False)
    fired = {p.name for p in markers.iterdir()}
    assert fired & {"global-fsmonitor", "clone-fsmonitor"}, fired
