"""A hostile result pulled into the user's repository: file names that look like
options, carry newlines or terminal escapes; nothing breaks, nothing reaches the
terminal raw, the branch and the patch hold exactly what the agent wrote."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.gitrepo import git, init_repo
from tests.helpers.harness import Harness, fake_prompt

NAMES = ["-rf", "--output=evil.txt", "new\nline.txt", "esc\x1b]0;pwned\x07\x1b[2J.txt"]


def test_hostile_file_names_pull_and_print_safely(harness: Harness, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    init_repo(repo, {"app.py": "print('v1')\n"})
    prompt = fake_prompt(*({"write": n, "content": f"{i}\n"} for i, n in enumerate(NAMES)),
                         {"turn": True})
    proc = harness.run("task", "create", prompt, "--sync", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    task_id = harness.json("task", "list")["tasks"][0]["id"]
    outs = [harness.run("task", "diff", task_id),
            harness.run("task", "diff", task_id, "--stat"),
            harness.run("task", "pull", task_id, cwd=repo),
            harness.run("task", "pull", task_id, "--patch", str(tmp_path / "p.patch"),
                        cwd=repo),
            harness.run("task", "show", task_id)]
    for out in outs:
        assert out.returncode == 0, (out.args, out.stderr)
        assert "Traceback" not in out.stderr
        assert "\x1b" not in out.stdout + out.stderr, (out.args, out.stdout, out.stderr)
    listed = git(repo, "ls-tree", "-r", "-z", "--name-only", f"parhelia/{task_id}")
    # A newline in a path is refused by the pull (reported), the others arrive as written.
    assert set(NAMES) - set(listed.split("\0")) == {"new\nline.txt"}
    assert "Skipped new\\x0aline.txt" in outs[2].stderr
    # The diff names each file once, git-quoted, and counts it.
    stat_ = outs[1].stdout
    assert stat_.count("+1 -0") == len(NAMES) and "4 file(s) changed" in stat_
    assert '"b/new\\nline.txt"' in outs[0].stdout and '"b/esc\\033]0;pwned' in outs[0].stdout
    check = git(repo, "apply", "--check", "--stat", str(tmp_path / "p.patch"))
    assert "-rf" in check
