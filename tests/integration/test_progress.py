"""Progress bars on long work: drawn on stderr when it is a terminal (a real pty), fed
by the daemon's reports (WatchOperation); none with --json, none when stderr is not a
terminal."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.daemon import cli_argv
from tests.helpers.gitrepo import git, init_repo
from tests.helpers.harness import Harness, fake_prompt
from tests.helpers.terminal import in_pty

FILES = 400
MAKE_FILES = (f"for i in range({FILES}):\n"
              "    open(f'gen{i:04}.txt', 'w').write(f'file {i}\\n')\n")
PHASE = "committing the task's files"


def _in_pty(harness: Harness, *args: str, stderr_tty: bool = True,
            timeout: float = 120) -> tuple[int, str, str]:
    """Run the CLI with a 100-column pty as its terminal."""
    return in_pty([*cli_argv(), *args], harness.daemon.env, columns=100,
                  stderr_tty=stderr_tty, timeout=timeout)


def test_pull_draws_a_bar_on_a_terminal_and_none_otherwise(harness: Harness,
                                                            tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    init_repo(repo, {"README.md": "base\n"})
    prompt = fake_prompt({"run": ["python3", "-c", MAKE_FILES]}, {"turn": True})
    task_id = str(harness.json("task", "create", prompt, "--workspace", str(repo))["id"])
    assert harness.wait(task_id)["status"] == "completed"

    code, shown, _ = _in_pty(harness, "task", "pull", task_id, "--branch", "with-bar")
    assert code == 0, shown
    assert PHASE in shown  # the bar's label, drawn while the daemon committed the files
    assert f"/{FILES} files" in shown
    assert "Created branch with-bar" in shown
    assert git(repo, "ls-tree", "--name-only", "with-bar").count("gen0") == FILES

    code, shown, _ = _in_pty(harness, "task", "pull", task_id, "--branch", "as-json",
                             "--json")
    assert code == 0, shown
    assert PHASE not in shown and '"branch": "as-json"' in shown

    code, shown, err = _in_pty(harness, "task", "pull", task_id, "--branch", "piped",
                               stderr_tty=False)
    assert code == 0, shown + err
    assert PHASE not in shown and PHASE not in err
    assert "Created branch piped" in shown
