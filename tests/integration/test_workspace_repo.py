"""The agent's workspace is a git repository at the base commit with the user's
uncommitted changes present as changes; the agent may commit, and the result (diff,
branch, patch) is still computed against the upload and the base."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.gitrepo import git, init_repo
from tests.helpers.harness import Harness, fake_prompt


def test_agent_sees_the_users_uncommitted_changes_in_git(harness: Harness,
                                                         tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    head = init_repo(repo, {"app.py": "print('v1')\n", "lib.py": "x = 1\n",
                            "gone.py": "bye\n"})
    git(repo, "checkout", "-q", "-b", "feature")
    (repo / "app.py").write_text("print('user edit')\n")  # uncommitted
    (repo / "notes.md").write_text("untracked\n")
    (repo / "gone.py").unlink()
    prompt = fake_prompt(
        {"run": ["git", "status", "--porcelain"], "out": ".status.txt"},
        {"run": ["git", "log", "--format=%H %s"], "out": ".log.txt"},
        {"run": ["git", "rev-parse", "--abbrev-ref", "HEAD"], "out": ".branch.txt"},
        {"turn": True},
        {"write": "lib.py", "content": "x = 2\n"},
        {"turn": True},
        {"run": ["git", "add", "lib.py"]},
        {"run": ["git", "commit", "-qm", "agent commit"], "out": ".commit.txt"},
        {"turn": True},
    )
    proc = harness.run("task", "create", prompt, "--permission-mode", "acceptEdits",
                       "--sync", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    task_id = harness.json("task", "list")["tasks"][0]["id"]
    ws = harness.workspace(task_id)
    status = (ws / ".status.txt").read_text()
    assert status.startswith("exit 0\n"), status
    assert " M app.py" in status and "?? notes.md" in status and " D gone.py" in status
    assert "lib.py" not in status
    assert (ws / ".log.txt").read_text() == f"exit 0\n{head} base\n"
    assert (ws / ".branch.txt").read_text() == "exit 0\nfeature\n"
    assert (ws / ".commit.txt").read_text() == "exit 0\n"

    # The agent's commit changes nothing about the result: files against the upload.
    stat = harness.json("task", "diff", task_id, "--stat")
    changed = sorted(f["path"] for f in stat["files"])
    assert "lib.py" in changed and "app.py" not in changed and not any(
        p.startswith(".git/") for p in changed)
    harness.run("task", "pull", task_id, cwd=repo, check=True)
    assert git(repo, "show", f"parhelia/{task_id}:lib.py") == "x = 2"
    assert git(repo, "rev-parse", "HEAD") == head  # the user's repo untouched
