"""Nothing a workspace's git configures runs on the trusted side: an acceptEdits agent
(it may write files, not run commands) plants fsmonitor, a clean filter, a pager, an
external diff and a hooks path in its workspace's .git; the task, its checkpoints
(worker and daemon), `task diff` and `task pull` never run any of them."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.helpers.gitrepo import git, init_repo
from tests.helpers.harness import Harness, fake_prompt


def planted_git(marker: Path, hooks: str) -> list[dict[str, str]]:
    cmd = f"touch {marker}"
    config = (f'[core]\n\trepositoryformatversion = 0\n\tfsmonitor = "{cmd}"\n'
              f'\thooksPath = {hooks}\n\tpager = "{cmd}"\n'
              f'[filter "evil"]\n\tclean = "{cmd}"\n\tsmudge = "{cmd}"\n'
              f'[diff]\n\texternal = "{cmd}"\n[diff "evil"]\n\ttextconv = "{cmd}"\n')
    hook = f"#!/bin/sh\n{cmd}\n"
    return [
        {"write": ".git/HEAD", "content": "ref: refs/heads/main\n"},
        {"write": ".git/config", "content": config},
        {"write": ".git/objects/info/.keep", "content": ""},
        {"write": ".git/refs/heads/.keep", "content": ""},
        {"write": f"{hooks}/reference-transaction", "content": hook},
        {"write": f"{hooks}/post-index-change", "content": hook},
        {"write": ".gitattributes", "content": "* filter=evil diff=evil\n"},
        {"write": "app.py", "content": "print('v2')\n"},
    ]


def test_planted_git_config_never_runs(harness: Harness, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    init_repo(repo, {"app.py": "print('v1')\n"})
    marker = tmp_path / "PLANTED-COMMAND-RAN"
    prompt = fake_prompt(*planted_git(marker, "hooks"), {"turn": True})
    proc = harness.run("task", "create", prompt, "--permission-mode", "acceptEdits",
                       "--sync", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    task_id = harness.json("task", "list")["tasks"][0]["id"]
    task = harness.task(task_id)
    ws = harness.workspace(task_id)
    assert (ws / ".git" / "config").exists()
    assert not marker.exists(), "a planted command ran during the task or its checkpoints"

    # The daemon checkpoints the stopped session from disk (git state included).
    harness.run("checkpoint", "create", task["session_id"], "-m", "after", check=True)
    diff = harness.run("task", "diff", task_id, check=True).stdout
    assert "+print('v2')" in diff
    harness.run("task", "pull", task_id, cwd=repo, check=True)
    harness.run("task", "pull", task_id, "--patch", str(tmp_path / "out.patch"), cwd=repo,
                check=True)
    assert git(repo, "show", f"parhelia/{task_id}:app.py") == "print('v2')"
    assert not marker.exists(), "a planted command ran in a checkpoint, diff or pull"

    # The trap was armed: plain git in that workspace runs it.
    subprocess.run(["git", "-C", str(ws), "status"], capture_output=True, check=False)
    assert marker.exists()
