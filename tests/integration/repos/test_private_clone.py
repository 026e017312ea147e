"""A private ``--repo`` task: cloned on the daemon's side with the token, and afterwards
no byte anywhere Parhelia or its worker writes holds it (ADR 0055)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fake_modal.fixture import FakeModal
from tests.helpers.fake_github import FakeGitHub
from tests.helpers.git_server import GitServer
from tests.helpers.harness import Harness, fake_prompt
from tests.integration.repos.common import FILES, NAME, OWNER, files_holding, start, token_forms

DUMP = [{"write": "app.py", "content": "print('v2')\n"},
        {"run": ["env"], "out": "agent-env.txt"},
        {"run": ["git", "log", "-1", "--format=%H %D"], "out": "agent-git-log.txt"},
        {"run": ["git", "config", "--list", "--show-origin"], "out": "agent-git-config.txt"},
        {"turn": True}]


@pytest.mark.parametrize("backend", ["local", "modal"])
def test_a_private_repo_is_cloned_with_the_token_that_is_then_nowhere(
        backend: str, request: pytest.FixtureRequest,
        harness_factory: Callable[..., Harness], git_server: GitServer,
        fake_github: FakeGitHub, tmp_path: Path) -> None:
    fake: FakeModal | None = request.getfixturevalue("fake_modal") if backend == "modal" \
        else None
    head = git_server.create(OWNER, NAME, FILES)
    harness = start(harness_factory, git_server, fake_github, backend=backend, fake=fake)
    url = git_server.url(OWNER, NAME)
    task_id = harness.json("task", "create", fake_prompt(*DUMP), "--repo", url)["id"]
    task = harness.wait(task_id, timeout=120)
    assert task["status"] == "completed", task
    assert task["options"]["backend"] == backend
    assert task["base_commit"] == head and task["source"]["repo_url"] == url
    cloned = harness.events("--task", task_id, "--type", "repository_cloned")
    assert len(cloned) == 1 and cloned[0]["data"]["commit"] == head
    assert cloned[0]["data"]["via"] == "daemon" and cloned[0]["data"]["branch"] == "main"
    # The clone really needed the token: the server refuses anyone without it.
    assert any(s.authorized for s in git_server.seen)
    assert all(s.authorized for s in git_server.seen if "upload-pack" in s.path)

    diff = harness.run("task", "diff", task_id, check=True).stdout
    assert "+print('v2')" in diff and "agent-env.txt" in diff
    env_dump = _added(diff, "agent-env.txt")
    assert "PATH=" in env_dump and "CLAUDE_CONFIG_DIR=" in env_dump
    assert "GITHUB_TOKEN" not in env_dump and "SSH_AUTH_SOCK" not in env_dump
    # The agent's workspace is the repository shallow at the base commit, as before.
    assert head in _added(diff, "agent-git-log.txt")
    assert "remote." not in _added(diff, "agent-git-config.txt")

    # Its pull request, from the mirror, on either backend (the scan below covers it too).
    opened = harness.json("task", "pr", task_id)
    assert opened["created"] and opened["pull_request"]["remote"] == url
    branch = f"refs/heads/parhelia/{task_id}"
    assert git_server.ref(OWNER, NAME, branch) == opened["pull_request"]["commit"]
    assert git_server.ref(OWNER, NAME, f"{branch}^") == head
    assert fake_github.pull(OWNER, NAME, opened["pull_request"]["number"])["head"]["ref"] \
        == f"parhelia/{task_id}"

    roots = [harness.home]
    if fake is not None:  # the worker's side on Modal: the volume, the sandboxes
        roots += [fake.root / "volumes", fake.root / "sandboxes"]
    needles = token_forms(git_server.token)
    assert files_holding(roots, needles) == []
    events = harness.run("events", "list", "--limit", "10000", "--json", check=True).stdout
    assert all(n.decode() not in events for n in needles)
    assert json.loads(events)["events"]


def _added(diff: str, path: str) -> str:
    """The added lines of ``path`` in a unified diff."""
    out, current = [], None
    for line in diff.splitlines():
        if line.startswith("+++ "):
            current = line[6:] if line.startswith("+++ b/") else None
        elif current == path and line.startswith("+"):
            out.append(line[1:])
    return "\n".join(out)


def test_a_modal_task_clones_with_the_named_secret_in_a_sandbox_of_its_own(
        harness_factory: Callable[..., Harness], git_server: GitServer,
        fake_github: FakeGitHub, fake_modal: FakeModal) -> None:
    """The daemon has no GitHub token; Modal has the secret ``github-token``: the fetch
    runs in a clone sandbox (that secret only, no owner tag), never in the agent's."""
    head = git_server.create(OWNER, NAME, FILES)
    fake_modal.create_secret("anthropic-api-key", {"ANTHROPIC_API_KEY": "test-key"})
    fake_modal.create_secret("github-token", {"GITHUB_TOKEN": git_server.token})
    harness = start(harness_factory, git_server, fake_github, backend="modal",
                    fake=fake_modal, with_token=False)
    status = harness.json("auth", "status")["github"]
    assert status["name"] is None and status["modal_secret_found"] is True
    task_id = harness.json("task", "create", fake_prompt(*DUMP), "--repo",
                           git_server.url(OWNER, NAME))["id"]
    task = harness.wait(task_id, timeout=120)
    assert task["status"] == "completed", task
    cloned = harness.events("--task", task_id, "--type", "repository_cloned")[0]["data"]
    assert cloned["via"] == "modal clone sandbox" and cloned["commit"] == head
    assert task["base_commit"] == head

    clones = [s for s in fake_modal.sandboxes() if "parhelia-clone" in s["tags"]]
    workers = [s for s in fake_modal.sandboxes() if "parhelia-container" in s["tags"]]
    assert len(clones) == 1 and clones[0]["returncode"] == 0
    assert "parhelia-owner" not in clones[0]["tags"] and clones[0]["secrets"] == 1
    assert clones[0]["cmd"][:4] == ["python", "-m", "modal_worker", "clone"]
    # Like a session's sandboxes (ADR 0031), it mounts an area of its own, nothing else.
    clone_id = clones[0]["tags"]["parhelia-clone"]
    assert clones[0]["volumes"]["/vol"]["sub_path"] == f"sessions/clone-{clone_id}"
    assert workers and all(w["cmd"][3] == "run" for w in workers)

    diff = harness.run("task", "diff", task_id, check=True).stdout
    env_dump = _added(diff, "agent-env.txt")
    assert "PATH=" in env_dump and "GITHUB_TOKEN" not in env_dump
    assert head in _added(diff, "agent-git-log.txt")
    needles = token_forms(git_server.token)
    roots = [harness.home, fake_modal.root / "volumes", fake_modal.root / "sandboxes"]
    assert files_holding(roots, needles) == []
    # The clone job's files are gone from both volumes once its pack was indexed.
    assert not list((fake_modal.root / "volumes").glob("*/clones/*/*"))
    assert not list((fake_modal.root / "volumes").glob("*/sessions/clone-*"))
    assert not list((harness.home / "data" / "volume").glob("clones/*/*"))
