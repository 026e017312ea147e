"""What each result compares against: `task diff` (the task's changes against the
upload) and `task pull --patch` agree, and the suggested `git apply` works on the
user's dirty tree; `task diff --against base` and the branch include the user's
uncommitted changes; one path git refuses does not fail the pull."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from tests.helpers.gitrepo import git, init_repo
from tests.helpers.harness import Harness, fake_prompt


def test_patch_applies_to_the_dirty_tree_and_diff_says_its_base(harness: Harness,
                                                                tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    head = init_repo(repo, {"app.py": "v1\n", "other.py": "o\n"})
    (repo / "app.py").write_text("v1\nuser line\n")  # uncommitted, seen by the task
    prompt = fake_prompt({"write": "app.py", "content": "v1\nuser line\ntask line\n"},
                         {"write": "new.md", "content": "# new\n"}, {"turn": True})
    proc = harness.run("task", "create", prompt, "--sync", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    task_id = harness.json("task", "list")["tasks"][0]["id"]

    upload = harness.run("task", "diff", task_id, check=True)
    assert "+task line" in upload.stdout and "+user line" not in upload.stdout
    assert "Against your working tree as uploaded" in upload.stderr
    base = harness.run("task", "diff", task_id, "--against", "base", check=True)
    assert "+user line" in base.stdout and "+task line" in base.stdout
    assert f"Against the base commit {head[:12]}" in base.stderr
    stat = harness.json("task", "diff", task_id, "--against", "base", "--stat")
    assert sorted((f["path"], f["change"]) for f in stat["files"]) == [
        ("app.py", "modified"), ("new.md", "added")]

    patch = tmp_path / "task.patch"
    pulled = harness.run("task", "pull", task_id, "--patch", str(patch), cwd=repo,
                         check=True)
    suggested = next(line.split("Apply it with: ", 1)[1] for line in
                     pulled.stdout.splitlines() if "Apply it with: " in line)
    applied = subprocess.run(shlex.split(suggested), capture_output=True, text=True,
                             check=False)
    assert applied.returncode == 0, applied.stderr
    assert (repo / "app.py").read_text() == "v1\nuser line\ntask line\n"
    assert (repo / "new.md").read_text() == "# new\n"
    assert git(repo, "rev-parse", "HEAD") == head

    branch = harness.run("task", "pull", task_id, "--branch", "from-task", cwd=repo,
                         check=True)
    assert "holds your uncommitted changes as uploaded" in branch.stdout
    assert git(repo, "rev-parse", "from-task~2") == head
    assert git(repo, "show", "from-task~1:app.py") == "v1\nuser line"
    assert git(repo, "show", "from-task:app.py") == "v1\nuser line\ntask line"


def test_one_bad_entry_does_not_fail_the_pull(harness: Harness, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    init_repo(repo, {"app.py": "v1\n"})
    prompt = fake_prompt({"write": "sub/.git/config", "content": "[core]\n"},
                         {"write": "ok.txt", "content": "ok\n"}, {"turn": True})
    proc = harness.run("task", "create", prompt, "--sync", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    task_id = harness.json("task", "list")["tasks"][0]["id"]
    pulled = harness.run("task", "pull", task_id, cwd=repo)
    assert pulled.returncode == 0, pulled.stderr
    assert "Skipped sub/.git/config: inside a .git directory" in pulled.stderr
    assert git(repo, "show", f"parhelia/{task_id}:ok.txt") == "ok"


def test_diff_counts_lines_that_look_like_file_headers(harness: Harness,
                                                      tmp_path: Path) -> None:
    """A 2+/2- change whose added lines start with "++" and removed ones with "--" is
    counted 2/2, against the upload and against the base (it was reported as 1/1)."""
    repo = tmp_path / "repo"
    init_repo(repo, {"c.txt": "--old\n--older\nkeep\n"})
    prompt = fake_prompt({"write": "c.txt", "content": "++new\n++newer\nkeep\n"},
                         {"turn": True})
    assert harness.run("task", "create", prompt, "--sync", cwd=repo).returncode == 0
    task_id = harness.json("task", "list")["tasks"][0]["id"]
    for against in ("upload", "base"):
        for shape in ((), ("--stat",)):
            got = harness.json("task", "diff", task_id, "--against", against, *shape)
            assert [(f["path"], f["lines_added"], f["lines_removed"]) for f in got["files"]] \
                == [("c.txt", 2, 2)], (against, shape)
    text = harness.run("task", "diff", task_id, check=True).stdout
    assert "\n---old\n---older\n+++new\n+++newer\n" in text
