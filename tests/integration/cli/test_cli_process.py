"""The real CLI as a process of its own, with no daemon or the in-process fake one: shell
completion as a shell calls it, `completion install`, and a streaming command reading
the fake's events."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.helpers.daemon import cli_argv
from tests.helpers.waiting import wait_for


def test_completion_really_completes(home):
    env = dict(os.environ, _PARHELIA_COMPLETE="bash_complete", COMP_WORDS="parhelia ta",
               COMP_CWORD="1")
    out = subprocess.run(cli_argv(), env=env, capture_output=True, text=True, timeout=30)
    assert "task" in out.stdout
    env.update(COMP_WORDS="parhelia events list --type task_c", COMP_CWORD="4")
    out = subprocess.run(cli_argv(), env=env, capture_output=True, text=True, timeout=30)
    assert "task_created" in out.stdout and "task_completed" in out.stdout


@pytest.mark.parametrize(("shell", "where"), [
    ("bash", ".local/share/bash-completion/completions/parhelia"),
    ("zsh", ".zfunc/_parhelia"),
    ("fish", ".config/fish/completions/parhelia.fish")])
def test_completion_install_is_idempotent(home, tmp_path, shell, where):
    env = {k: v for k, v in os.environ.items()
           if k not in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "ZDOTDIR",
                        "BASH_COMPLETION_USER_DIR")}
    env.update(HOME=str(tmp_path), SHELL=f"/bin/{shell}")
    first = subprocess.run([*cli_argv(), "completion", "install"], env=env,
                           capture_output=True, text=True, timeout=30)
    assert first.returncode == 0, first.stderr
    path = tmp_path / where
    assert f"Installed the {shell} completion in {path}" in first.stdout
    printed = subprocess.run([*cli_argv(), "completion", shell], env=env,
                             capture_output=True, text=True, timeout=30).stdout
    assert path.read_text() == printed  # the same script `completion SHELL` prints
    again = subprocess.run([*cli_argv(), "completion", "install"], env=env,
                           capture_output=True, text=True, timeout=30)
    assert again.returncode == 0 and "already installed" in again.stdout
    assert path.read_text() == printed


def test_completion_install_needs_a_known_shell(home, tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), SHELL="/bin/tcsh")
    out = subprocess.run([*cli_argv(), "completion", "install"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "E101" in out.stderr and "--shell" in out.stderr



def test_events_watch_subprocess_receives_a_new_event(fake, home):
    """`events watch --json` as a real subprocess sees an event created after it started."""
    proc = subprocess.Popen([*cli_argv(), "events", "watch", "--json"], env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: fake.state.watchers, 20, what="the watcher to subscribe",
                 interval=0.05)
        fake.state.emit("task_created", "t-new", "A task was created.")
        line = proc.stdout.readline()
        event = json.loads(line)
        assert (event["type"], event["task_id"]) == ("task_created", "t-new")
    finally:
        proc.terminate()
        proc.wait(10)
