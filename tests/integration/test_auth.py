"""`parhelia auth`: a daemon started without a credential gets one from `auth set`
(stdin) and runs a task with no restart; the value is stored only in the 0600 env file."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from parhelia import envfile
from tests.helpers.daemon import RunningDaemon, cli_argv, daemon_env
from tests.helpers.harness import Harness, fake_prompt, write_config
from tests.helpers.waiting import wait_for

SECRET = "sk-ant-test-Zq81VYxw-never-stored-elsewhere"
NO_CREDS = {"ANTHROPIC_API_KEY": "", "ANTHROPIC_AUTH_TOKEN": "", "CLAUDE_CODE_OAUTH_TOKEN": ""}


def _auth(harness: Harness, *args: str, stdin: str | None = None,
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cli_argv(), "auth", *args], env=harness.daemon.env, input=stdin,
                          capture_output=True, text=True, timeout=60, check=False)


def test_auth_set_from_stdin_needs_no_restart(harness_factory: Callable[..., Harness]) -> None:
    harness = harness_factory(**NO_CREDS)
    pid = harness.daemon.proc.pid
    before = _auth(harness, "status")
    assert before.returncode == 1 and "no credential" in before.stdout

    # The shell has a key the daemon lacks: refused before anything is created, both fixes.
    refused = harness.run("task", "create", fake_prompt({"turn": True}), "--no-workspace",
                          "--backend", "local", env={"ANTHROPIC_API_KEY": SECRET})
    assert refused.returncode != 0 and "E400" in refused.stderr
    assert "parhelia auth set" in refused.stderr and "daemon stop" in refused.stderr
    assert harness.json("task", "list") in ([], {"tasks": []}) or \
        not harness.json("task", "list").get("tasks")

    stored = _auth(harness, "set", "--stdin", stdin=SECRET + "\n")
    assert stored.returncode == 0, stored.stderr
    assert SECRET not in stored.stdout + stored.stderr
    path = envfile.env_file(harness.daemon.paths)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    status = json.loads(_auth(harness, "status", "--json").stdout)
    assert status["credential_name"] == "ANTHROPIC_API_KEY"
    assert status["credential_source"] == "env file"

    task_id = harness.create(fake_prompt({"write": "a.txt", "content": "1"}, {"turn": True}))
    done = harness.wait(task_id)
    assert done["status"] == "completed", done
    assert harness.daemon.proc.pid == pid and harness.daemon.proc.poll() is None

    leaks = [p for p in harness.home.rglob("*")
             if p.is_file() and p != path and SECRET.encode() in p.read_bytes()]
    assert leaks == []

    cleared = _auth(harness, "clear", "-y")
    assert cleared.returncode == 0 and "Removed" in cleared.stdout
    assert _auth(harness, "status").returncode == 1
    assert SECRET not in path.read_text()


@pytest.mark.long
def test_recovery_without_a_credential_waits_then_resumes(
        harness_factory: Callable[..., Harness]) -> None:
    from tests.integration.test_recovery import turn_checkpoints, worker_pid

    harness = harness_factory(**NO_CREDS)
    assert _auth(harness, "set", "--stdin", stdin=SECRET).returncode == 0
    task_id = harness.create(fake_prompt({"write": "a.txt", "content": "1"}, {"turn": True},
                                         {"sleep": 30}, {"turn": True}))
    wait_for(lambda: turn_checkpoints(harness, task_id), what="a turn checkpoint")
    assert _auth(harness, "clear", "-y").returncode == 0
    os.kill(worker_pid(harness, task_id), signal.SIGKILL)

    waiting = wait_for(lambda: (t := harness.task(task_id))["status_code"] == "E400" and t,
                       what="the recovery's wait for a credential")
    assert waiting["status"] == "recovering" and "credential" in waiting["status_reason"]
    assert "auth set" in waiting["status_reason"]
    time.sleep(1.5)  # recovery tries again meanwhile: still waiting, not failed
    assert harness.task(task_id)["status"] == "recovering"

    assert _auth(harness, "set", "--stdin", stdin=SECRET).returncode == 0
    done = harness.wait(task_id, timeout=90)
    assert done["status"] == "completed", done


def test_daemon_gives_workers_the_file_credentials(parhelia_home: Path) -> None:
    """A daemon started with no credential variable at all in its environment runs a task
    with the key from its env file (the dispatcher's credential check passes); the log
    names the variable, never the value."""
    write_config(parhelia_home)
    env_file = parhelia_home / "parheliad.env"
    env_file.write_text("ANTHROPIC_API_KEY=from-the-file\n")
    env_file.chmod(0o600)
    env = {k: v for k, v in daemon_env(parhelia_home).items() if k not in NO_CREDS}
    daemon = RunningDaemon(parhelia_home, env).start()
    try:
        out = Harness(daemon).run("task", "create", "hi", "--no-workspace", "--sync",
                                  timeout=60)
    finally:
        daemon.stop()
    assert out.returncode == 0, out.stdout + out.stderr
    log = (parhelia_home / "state" / "parheliad.log").read_text()
    assert "from-the-file" not in log
    assert "ANTHROPIC_API_KEY" in log
