"""The local worker's agent runs contained (issue 22; docs/adr/0030-local-sandbox.md).

A real daemon, real workers, the scripted fake agent really running shell commands in
its bubblewrap container: what a prompt injection would try (the user's SSH key, the
environment, the daemon's files, other tasks, other processes) finds none of it; the
model credential reaches the API through the worker's proxy, never the agent; where no
container can be made the task says so and runs as before (or fails, when required).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from parhelia.sandbox import PLACEHOLDER_PREFIX
from tests.helpers.gitrepo import init_repo
from tests.helpers.harness import Harness, fake_prompt
from tests.helpers.sandbox import require_bwrap
from tests.helpers.waiting import wait_for

SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nSSH-KEY-MARKER-8c1f77\n"
API_KEY = "sk-ant-api03-REAL-LOCAL-KEY-5b7d2e9a"
OTHER = "OTHER-TASK-SECRET-41d9"
DAEMON_SECRET = "DAEMON-ENV-FILE-SECRET-77"


def user_home(tmp_path: Path) -> Path:
    home = tmp_path / "user-home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text(SSH_KEY)
    (home / ".gitconfig").write_text("[user]\n\tname = Me\n")
    return home


def probe_script(parhelia_home: Path, home: Path) -> str:
    """What an injected prompt would run: the issue's ``cat ~/.ssh/id_ed25519; env; ls
    $PARHELIA_HOME`` and a little more, each path also spelled out."""
    return "; ".join([
        "cat ~/.ssh/id_ed25519", f"cat {home}/.ssh/id_ed25519", "env",
        "ls -a $PARHELIA_HOME", f"ls -aR {parhelia_home}", f"cat {parhelia_home}/config.toml",
        "ls -a /tmp", "ps -eo pid,args", "cat /proc/1/environ | tr '\\0' '\\n'",
        # (the pattern spelled so that ps, above, cannot show the secret itself)
        f"grep -rs '{OTHER[:-1]}[{OTHER[-1]}]' /tmp {home} {parhelia_home} | head -5",
    ])


def test_a_contained_agent_finds_no_key_no_home_no_daemon_files_no_other_task(
        harness_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    require_bwrap()
    home = user_home(tmp_path)
    harness: Harness = harness_factory(HOME=str(home), ANTHROPIC_API_KEY=API_KEY)
    (harness.home / "parheliad.env").write_text(f"MY_TOKEN={DAEMON_SECRET}\n")
    os.chmod(harness.home / "parheliad.env", 0o600)
    other = harness.create(fake_prompt({"write": "theirs.txt", "content": OTHER},
                                       {"turn": True}, {"sleep": 60}))
    wait_for(lambda: (harness.workspace(other) / "theirs.txt").exists(), timeout=60,
             what="the other task wrote its file")

    task = harness.create(fake_prompt(
        {"run": ["sh", "-c", probe_script(harness.home, home)], "out": "probe.txt"},
        {"turn": True}))
    assert harness.wait(task, timeout=120)["status"] == "completed"
    out = (harness.workspace(task) / "probe.txt").read_text()
    harness.run("task", "cancel", other, "--yes")

    for secret in ("SSH-KEY-MARKER", API_KEY, OTHER, DAEMON_SECRET, "theirs.txt",
                   "parheliad.db", "config.toml\n", "parhelia-tmux", "modal_worker run",
                   "parheliad"):
        assert secret not in out, (secret, out)
    assert f"ANTHROPIC_API_KEY={PLACEHOLDER_PREFIX}" in out
    assert "PARHELIA_HOME=" not in out and "No such file" in out
    # it could still do its work: the files it wrote came back
    assert harness.run("task", "diff", task, check=True).stdout.count("probe.txt") >= 1

    shown = harness.run("task", "show", task, check=True).stdout
    assert "Isolation" in shown and "bubblewrap" in shown and "placeholder" in shown
    [event] = harness.events("--task", task, "--type", "worker_isolation")
    assert event["data"]["isolation"] == "bubblewrap"
    assert event["data"]["credential"] == "local proxy"
    assert doctor(harness)["status"] == "ok"


def doctor(harness: Harness) -> dict[str, str]:
    checks = json.loads(harness.run("doctor", "--json").stdout)["checks"]
    [check] = [c for c in checks if c["name"] == "local sandbox"]
    return dict(check)


def _fake_bwrap(tmp_path: Path, message: str) -> Path:
    """A ``bwrap`` first on PATH that fails as an unprivileged one in a container does."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    fake = bin_dir / "bwrap"
    fake.write_text(f"#!/bin/sh\necho 'bwrap: {message}' >&2\nexit 1\n")
    fake.chmod(0o755)
    return bin_dir


def test_where_no_container_can_be_made_the_task_says_so_and_runs(
        harness_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bin_dir = _fake_bwrap(tmp_path, "setting up uid map: Permission denied")
    harness: Harness = harness_factory(PATH=f"{bin_dir}:{os.environ['PATH']}",
                                       ANTHROPIC_API_KEY=API_KEY)
    task = harness.create(fake_prompt({"run": ["sh", "-c", "env"], "out": "env.txt"},
                                      {"turn": True}))
    assert harness.wait(task, timeout=120)["status"] == "completed"
    [event] = harness.events("--task", task, "--type", "worker_isolation")
    assert event["level"] == "warning" and event["data"]["isolation"] == "none"
    assert "uid map: Permission denied" in event["data"]["reason"]
    shown = harness.run("task", "show", task, check=True).stdout
    assert "none; model credential in the agent's environment" in shown
    # as before: the agent has the credential itself
    assert f"ANTHROPIC_API_KEY={API_KEY}" in (harness.workspace(task) / "env.txt").read_text()
    check = doctor(harness)
    assert check["status"] == "warn" and "uid map: Permission denied" in check["detail"]
    assert "uncontained" in check["detail"] and "bubblewrap" in check["fix"]


def test_a_required_container_that_cannot_be_made_fails_the_task(
        harness_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bin_dir = _fake_bwrap(tmp_path, "No permissions to create new namespace")
    harness: Harness = harness_factory(extra_config="[sandbox]\nlocal = 'required'\n",
                                       PATH=f"{bin_dir}:{os.environ['PATH']}")
    task = harness.create(fake_prompt({"write": "never.txt", "content": "x"}, {"turn": True}))
    done = harness.wait(task, timeout=120)
    assert done["status"] == "failed" and done["status_code"] == "E609", done
    assert "new namespace" in done["status_reason"] + done["result"]["error_message"]
    assert not (harness.workspace(task) / "never.txt").exists()
    assert doctor(harness)["status"] == "fail"


def test_a_contained_agents_setup_and_start_commands_run_in_its_container(
        harness_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The repository's setup and start commands (its environment, issue 25) are its
    code too, and start runs again on files the agent may have changed: with the agent
    contained, they run in its container -- the user's SSH key, the daemon's files and
    the model credential out of their reach, as for the agent."""
    require_bwrap()
    home = user_home(tmp_path)
    harness: Harness = harness_factory(HOME=str(home), ANTHROPIC_API_KEY=API_KEY)
    probe = probe_script(harness.home, home)
    repo = tmp_path / "repo"
    init_repo(repo, {"README.md": "# r\n", ".parhelia/environment.toml": (
        f"setup = {json.dumps([f'({probe}) > setup-probe.txt 2>&1; true'])}\n"
        f"start = {json.dumps([f'({probe}) > start-probe.txt 2>&1; true'])}\n")})
    task = harness.json("task", "create", fake_prompt({"turn": True}), "--workspace",
                        str(repo))["id"]
    assert harness.wait(task, timeout=120)["status"] == "completed"
    for name in ("setup-probe.txt", "start-probe.txt"):
        out = (harness.workspace(task) / name).read_text()
        for secret in ("SSH-KEY-MARKER", API_KEY, "parheliad.db", "config.toml\n",
                       "PARHELIA_HOME="):
            assert secret not in out, (name, secret, out)
        assert "No such file" in out, (name, out)
