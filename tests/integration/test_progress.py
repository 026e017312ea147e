"""Progress bars on long work: drawn on stderr when it is a terminal (a real pty), fed
by the daemon's reports (WatchOperation); none with --json, none when stderr is not a
terminal."""

from __future__ import annotations

import os
import pty
import select
import subprocess
from pathlib import Path

from tests.helpers.daemon import cli_argv
from tests.helpers.gitrepo import git, init_repo
from tests.helpers.harness import Harness, fake_prompt

FILES = 400
MAKE_FILES = (f"for i in range({FILES}):\n"
              "    open(f'gen{i:04}.txt', 'w').write(f'file {i}\\n')\n")
PHASE = "committing the task's files"


def _in_pty(harness: Harness, *args: str, stderr_tty: bool = True,
            timeout: float = 120) -> tuple[int, str, str]:
    """Run the CLI with a pty as its terminal; (exit code, what the terminal showed,
    stderr when it was a pipe)."""
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    env = {**harness.daemon.env, "TERM": "xterm-256color", "COLUMNS": "100"}
    proc = subprocess.Popen([*cli_argv(), *args], stdin=slave, stdout=slave,
                            stderr=slave if stderr_tty else subprocess.PIPE, env=env)
    os.close(slave)
    shown = bytearray()
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    chunk = b""
                if chunk:
                    shown += chunk
                    continue
            if proc.poll() is not None:
                break
        err = proc.stderr.read().decode() if proc.stderr else ""
        return proc.wait(timeout), shown.decode(errors="replace"), err
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()


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
