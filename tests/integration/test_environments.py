"""Environments through the real daemon and CLI (the scripted fake agent; Modal through
the fake SDK): ``env show|build|list|prune``, one image per environment (a second task
builds nothing and starts warm), a task waiting while its image builds, what
``task create`` says, and bad input refused before anything runs."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fake_modal.fixture import FakeModal
from tests.helpers.gitrepo import init_repo
from tests.helpers.harness import Harness, fake_prompt
from tests.helpers.waiting import wait_for

DEVCONTAINER = """{
  // what a devcontainer user has
  "image": "mcr.microsoft.com/devcontainers/python:3.12",
  "features": {"ghcr.io/devcontainers/features/node:1": {}},
  "containerEnv": {"APP_MODE": "test"},
  "postCreateCommand": ["sh", "-c", "echo prepared > prepared.txt"],
  "postStartCommand": "echo started >> started.txt",
}
"""
TOML = """python = "3.12"
apt = ["libpq-dev"]
setup = ["echo prepared > prepared.txt"]
cache = ["~/.cache/tool"]
allow_commands = ["pytest"]
"""


def project(path: Path, files: dict[str, str]) -> Path:
    init_repo(path, {"README.md": "# p\n", **files})
    return path


def modal_harness(harness_factory: Callable[..., Harness], fake: FakeModal,
                  extra: str = "") -> Harness:
    return harness_factory(extra, 'default_backend = "modal"\n', heartbeat=1.5, **fake.env())


def test_env_show_says_what_each_part_is_and_where_it_came_from(
        harness: Harness, tmp_path: Path) -> None:
    repo = project(tmp_path / "repo", {".devcontainer/devcontainer.json": DEVCONTAINER,
                                       "uv.lock": "version = 1\n"})
    view = harness.json("env", "show", str(repo), "--backend", "local")
    assert view["source"] == "devcontainer" and view["hash"].startswith("env-")
    parts = {p["name"]: p for p in view["parts"]}
    assert parts["base"]["origin"] == "devcontainer.json: image"
    assert parts["base"]["note"].startswith("Modal only")
    assert parts["setup"]["values"] == ["sh -c echo prepared > prepared.txt"]
    assert parts["start"]["origin"] == "devcontainer.json: postStartCommand"
    assert parts["env"]["values"] == ["APP_MODE=test"]
    assert parts["cache"]["origin"].startswith("detected: uv.lock")
    assert "features" in view["ignored"] and any("features" in w for w in view["warnings"])
    assert view["network"] == "trusted" and "pypi.org" in view["agent_hosts"]
    text = harness.run("env", "show", str(repo), "--backend", "local", check=True)
    assert "devcontainer.json: postCreateCommand" in text.stdout
    assert "Ignored keys: features" in text.stdout
    # Run from inside the repository, it finds it by itself.
    found = harness.run("env", "show", "--backend", "local", "--json", cwd=repo / ".devcontainer",
                        check=True)
    assert json.loads(found.stdout)["hash"] == view["hash"]


def test_bad_environment_files_are_refused_before_anything_runs(
        harness: Harness, tmp_path: Path) -> None:
    broken = project(tmp_path / "broken", {".parhelia/environment.toml":
                                           'setup = ["make"]\nnetwork = "everywhere"\n'})
    out = harness.run("task", "create", "go", "--workspace", str(broken))
    assert out.returncode == 2, out.stderr
    assert "E101" in out.stderr and ".parhelia/environment.toml:2: network" in out.stderr
    wider = project(tmp_path / "wider", {".parhelia/environment.toml": 'network = "full"\n'})
    harness.run("config", "show", check=True)
    out = harness.run("task", "create", "go", "--workspace", str(wider))
    assert out.returncode == 1 and "E401" in out.stderr and "widens" in out.stderr
    out = harness.run("task", "create", "go", "--workspace", str(wider),
                      "--trust-project-config", "--no-dispatch")
    assert out.returncode == 0, out.stderr
    assert harness.json("task", "list")["tasks"][0]["environment"]["network"] == "full"
    assert "E101" in harness.run("env", "show", str(broken)).stderr


def test_a_local_task_runs_setup_and_start_and_says_what_its_agent_may_run(
        harness: Harness, tmp_path: Path) -> None:
    # A setup whose output tries to retitle the terminal, and a key made to do the same.
    hostile = TOML.replace('setup = ["echo prepared > prepared.txt"]',
                           'setup = ["echo prepared > prepared.txt", '
                           r'"printf \"before\\033]0;pwned\\007after\\n\""]') \
        + '"bad\\u001b[2Jkey" = 1\n'
    repo = project(tmp_path / "repo", {".parhelia/environment.toml": hostile})
    out = harness.run("task", "create", fake_prompt({"write": "a.txt", "content": "A"}),
                      "--workspace", str(repo), "--json", check=True)
    assert "pre-approved: only pytest" in out.stderr and "--permission-mode" in out.stderr
    assert "unknown key(s) ignored: bad\\x1b[2Jkey" in out.stderr
    assert "\x1b" not in out.stderr
    task_id = json.loads(out.stdout)["id"]
    task = harness.wait(task_id)
    assert task["status"] == "completed", task
    assert task["environment"]["setup_status"] == "completed"
    # Contained in bubblewrap (this machine can), the agent runs bypassPermissions (ADR
    # 0053); uncontained, the narrower default with the pre-approved commands.
    contained = task.get("isolation") == "bubblewrap"
    assert task["environment"]["permission_mode"] == \
        ("bypassPermissions" if contained else "acceptEdits"), task
    assert (harness.workspace(task_id) / "prepared.txt").read_text().strip() == "prepared"
    show = harness.run("task", "show", task_id, check=True).stdout
    assert "Environment" in show and ".parhelia/environment.toml" in show
    assert ("bubblewrap" in show) if contained else ("pre-approved: pytest" in show)
    logs = harness.run("task", "logs", task_id, "--setup", check=True).stdout
    assert "== setup 1: setup[1]: echo prepared > prepared.txt" in logs
    assert "before\\x1b]0;pwned\\x07after" in logs and "\x1b" not in logs
    raw = harness.run("task", "logs", task_id, "--setup", "--raw", check=True).stdout
    assert "before\x1b]0;pwned\x07after" in raw  # --raw: the bytes as they were


def test_on_modal_one_image_per_environment_and_the_second_task_starts_warm(
        harness_factory: Callable[..., Harness], fake_modal: FakeModal,
        tmp_path: Path) -> None:
    harness = modal_harness(harness_factory, fake_modal)
    repo = project(tmp_path / "repo", {".parhelia/environment.toml": TOML})
    # Built ahead of time: progress, then the build's record.
    out = harness.run("env", "build", str(repo), check=True, timeout=120)
    assert "apt      libpq-dev" in out.stdout and "built in" in out.stdout
    assert "modal image logs im-" in out.stdout
    built = len(fake_modal.sdk.built_images())
    listed = harness.json("env", "list")
    assert [i["status"] for i in listed["images"]] == ["built"]
    assert harness.json("env", "show", str(repo), "--backend", "modal")["image_built"]

    first = harness.json("task", "create", fake_prompt({"write": "a.txt", "content": "A"}),
                         "--workspace", str(repo))["id"]
    assert harness.wait(first, timeout=120)["status"] == "completed"
    second = harness.json("task", "create", fake_prompt({"write": "b.txt", "content": "B"}),
                          "--workspace", str(repo))["id"]
    done = harness.wait(second, timeout=120)
    assert done["status"] == "completed", done
    # No task built anything (env build did, once); the second started from the first's
    # prepared filesystem: no setup sandbox of its own.
    assert len(fake_modal.sdk.built_images()) == built
    builds = harness.events("--type", "environment_building")
    assert len(builds) == 1 and not builds[0]["task_id"]  # env build's, no task's
    names = [s["name"] for s in fake_modal.sandboxes()]
    first_c = harness.task(first)["container_id"]
    assert f"{first_c}-setup" in names and f"{done['container_id']}-setup" not in names
    assert done["environment"]["setup_status"] == "skipped"
    agent = fake_modal.sandbox(done["container_id"])
    assert "pypi.org" in agent["network"]["outbound_domain_allowlist"]
    # Nobody chose a mode: inside the sandbox the agent ran bypassPermissions.
    assert done["environment"]["permission_mode"] == "bypassPermissions"
    assert _agent_modes(harness, second) == {"bypassPermissions"}
    listed = harness.json("env", "list")
    assert len(listed["snapshots"]) == 1 and len(listed["caches"]) == 1
    cache = listed["caches"][0]["name"]
    assert (fake_modal.root / "volumes" / f"{cache}.json").exists()

    dry = harness.json("env", "prune", "--all", "--dry-run")
    assert dry["caches"] == [cache] and dry["dry_run"]
    assert (fake_modal.root / "volumes" / f"{cache}.json").exists()
    pruned = harness.json("env", "prune", "--all")
    assert pruned["caches"] == [cache] and len(pruned["images"]) == 1
    assert not (fake_modal.root / "volumes" / f"{cache}.json").exists()
    assert harness.json("env", "list") == {"images": [], "snapshots": [], "caches": []}


def _agent_modes(harness: Harness, task_id: str) -> set[str]:
    """The permission modes the task's worker ran its agent with (its checkpoints say)."""
    session = harness.task(task_id)["session_id"]
    modes = set()
    for cp in harness.json("checkpoint", "list", session)["checkpoints"]:
        environment = harness.json("checkpoint", "show", cp["id"])["manifest"]["environment"]
        if "agent_command" in environment:  # the worker's (not the uploaded workspace's)
            modes.add(environment["permission_mode"])
    return modes


def test_on_modal_a_mode_the_user_chose_is_kept(
        harness_factory: Callable[..., Harness], fake_modal: FakeModal,
        tmp_path: Path) -> None:
    harness = modal_harness(harness_factory, fake_modal)
    config = harness.home / "config.toml"
    config.write_text(config.read_text().replace(
        "[agent]\n", '[agent]\npermission_mode = "acceptEdits"\n', 1))
    harness.run("daemon", "reload", check=True)
    repo = project(tmp_path / "repo", {".parhelia/environment.toml": 'setup = ["true"]\n'})
    task_id = harness.json("task", "create", fake_prompt({"write": "a.txt", "content": "A"}),
                           "--workspace", str(repo))["id"]
    task = harness.wait(task_id, timeout=120)
    assert task["status"] == "completed", task
    assert task["environment"]["permission_mode"] == "acceptEdits"
    assert task["environment"]["permission_reason"] == "chosen for this task"
    assert _agent_modes(harness, task_id) == {"acceptEdits"}
    show = harness.run("task", "show", task_id, check=True).stdout
    assert "acceptEdits (chosen for this task)" in show


def test_a_task_waits_building_environment_and_pays_for_the_build(
        harness_factory: Callable[..., Harness], fake_modal: FakeModal,
        tmp_path: Path) -> None:
    harness = modal_harness(harness_factory, fake_modal)
    repo = project(tmp_path / "repo", {".parhelia/environment.toml": 'python = "3.13"\n'})
    fake_modal.switch("latency.Image.build", value="4")
    task_id = harness.json("task", "create", fake_prompt({"write": "a.txt", "content": "A"}),
                           "--workspace", str(repo))["id"]
    waiting = wait_for(lambda: (t := harness.task(task_id))["status"] == "pending"
                       and "building environment" in t["status_reason"] and t,
                       timeout=30, what="the task to wait for its build")
    assert "Python 3.13" in waiting["status_reason"]
    fake_modal.switch("latency.Image.build", False)
    assert harness.wait(task_id, timeout=120)["status"] == "completed"
    assert len(harness.events("--task", task_id, "--type", "task_waiting")) == 1
    ledger = json.dumps(harness.json("budget", "ledger"))
    assert "environment build img-" in ledger


def test_a_build_that_fails_fails_its_task_with_the_reason(
        harness_factory: Callable[..., Harness], fake_modal: FakeModal,
        tmp_path: Path) -> None:
    harness = modal_harness(harness_factory, fake_modal)
    repo = project(tmp_path / "repo", {".parhelia/environment.toml": 'image = "alpine:3.20"\n'})
    task_id = harness.json("task", "create", "go", "--workspace", str(repo))["id"]
    task = harness.wait(task_id, timeout=60)
    assert task["status"] == "failed" and task["result"]["error_code"] == "E606", task
    assert "Debian or Ubuntu" in task["result"]["error_message"]
    assert harness.events("--task", task_id, "--type", "environment_build_failed")
    assert not fake_modal.sandboxes()  # nothing ran


@pytest.mark.long
def test_a_recovered_local_worker_keeps_its_prepared_workspace(
        harness_factory: Callable[..., Harness], tmp_path: Path) -> None:
    harness = harness_factory("[checkpoint]\nmin_turn_interval_seconds = 0\n")
    # The counter is in the workspace: a contained worker's setup and start run in the
    # agent's container, which hides the rest of /tmp.
    repo = project(tmp_path / "repo", {".parhelia/environment.toml": (
        'setup = ["echo ran >> setups.txt"]\nstart = ["echo start >> setups.txt"]\n')})
    prompt = fake_prompt({"write": "before.txt", "content": "1"}, {"turn": True},
                         {"sleep": 30}, {"write": "after.txt", "content": "2"}, {"turn": True})
    task_id = harness.json("task", "create", prompt, "--workspace", str(repo))["id"]
    wait_for(lambda: [e for e in harness.events("--task", task_id, "--type",
                                                "checkpoint_created")
                      if (e["data"] or {}).get("trigger") == "turn"],
             timeout=60, what="a turn checkpoint")
    container = harness.task(task_id)["container_id"]
    pid = int(harness.json("container", "show", container)["backend_id"].split("@")[0])
    os.kill(pid, signal.SIGKILL)
    task = harness.wait(task_id, timeout=120)
    assert task["status"] == "completed" and task["restarts"] == 1, task
    # Setup ran once (the second worker kept the files it prepared); start, each time.
    counter = harness.workspace(task_id) / "setups.txt"
    assert counter.read_text().split() == ["ran", "start", "start"]
    assert harness.events("--task", task_id, "--type", "setup_skipped")
