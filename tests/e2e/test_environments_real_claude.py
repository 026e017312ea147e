"""Environments end to end, with the REAL pinned Claude Code CLI, on both backends (the
local worker and Modal through the fake SDK): the CLI -> parheliad -> a worker that runs
the repository's setup (installing a dependency from a wheel built here, offline) -> the
agent, in the permission mode a task gets by default, runs ``pytest`` and sees it pass.

- a failing setup fails the task with E606 and the step's last lines before any request
  reaches the model API, and the workspace is checkpointed;
- the setup secret reaches setup commands only: not the agent's environment, not a
  checkpoint, not a log (its value is ``***`` in the setup log).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from parheliad.config import DEFAULT_ALLOW_COMMANDS
from tests.e2e.claude_env import user_settings_pointing_at
from tests.fake_anthropic import FakeAnthropic, reply, tool_use
from tests.fake_modal.fixture import FakeModal
from tests.helpers.daemon import RunningDaemon, start_daemon
from tests.helpers.envproject import GREETING, SETUP_SECRET, environment_toml, make_project
from tests.helpers.harness import Harness, kill_workers

pytestmark = [pytest.mark.claude, pytest.mark.timeout(420)]

SECRET_VALUE = "s3tup-only-value-7f4e9c21"
PASSED = ("ANTHROPIC_BASE_URL", "CLAUDE_CODE_MAX_RETRIES", "NO_PROXY")


@dataclass
class Stack:
    harness: Harness
    api: FakeAnthropic
    backend: str
    modal: FakeModal | None

    def roots(self) -> list[Path]:
        """Every place the task may have written: the daemon's home, Modal's service."""
        return [self.harness.home] + ([self.modal.root] if self.modal else [])


@pytest.fixture(params=["local", "modal"])
def stack(request: pytest.FixtureRequest, claude_bin: Path, parhelia_home: Path,
          tmp_path: Path) -> Iterator[Stack]:
    backend = request.param
    modal: FakeModal | None = request.getfixturevalue("fake_modal") if backend == "modal" \
        else None
    with FakeAnthropic() as api:
        home = tmp_path / "home"
        # The API's URL reaches a Modal worker as a pass_env value of the user's settings.
        user_settings_pointing_at(home, api.url)
        (parhelia_home / "config.toml").write_text(
            "[heartbeat]\ninterval_seconds = 3\n"
            f"[agent]\ncommand = [{json.dumps(str(claude_bin))}]\n"
            # `env` pre-approved too: the test reads the agent's environment with it.
            f"allow_commands = {json.dumps([*DEFAULT_ALLOW_COMMANDS, 'env'])}\n"
            "[orchestrator]\ndispatch_interval_seconds = 0.5\n"
            f"[sync]\npass_env = {json.dumps(list(PASSED))}\n")
        env = {"ANTHROPIC_API_KEY": "test-key", "HOME": str(home), SETUP_SECRET: SECRET_VALUE,
               "ANTHROPIC_BASE_URL": api.url, "CLAUDE_CODE_MAX_RETRIES": "0",
               "NO_PROXY": "127.0.0.1,localhost"}
        if modal is not None:
            env.update(modal.env())
            # On Modal a setup secret is a Modal secret of that name.
            modal.create_secret(SETUP_SECRET, {SETUP_SECRET: SECRET_VALUE})
        daemon: RunningDaemon = start_daemon(parhelia_home, **env)
        try:
            yield Stack(Harness(daemon), api, backend, modal)
        finally:
            daemon.stop()
            kill_workers(parhelia_home)


def _create(stack: Stack, repo: Path, prompt: str) -> dict:
    # Trusted: its environment file names a setup secret (a widening otherwise).
    out = stack.harness.run("task", "create", prompt, "--backend", stack.backend,
                            "--workspace", str(repo), "--trust-project-config", "--sync",
                            "--json", timeout=360)
    assert out.stdout.strip(), out.stderr[-3000:]
    task: dict = json.loads(out.stdout.strip().splitlines()[-1])
    task["_stderr"] = out.stderr
    return task


def _tool_results(api: FakeAnthropic) -> list[str]:
    """The tool results of the conversation, as the last request carries them."""
    out: list[str] = []
    for request in api.main_requests[-1:]:
        for message in request.messages:
            content = message.get("content")
            if message.get("role") == "user" and isinstance(content, list):
                out += [json.dumps(b.get("content")) for b in content
                        if b.get("type") == "tool_result"]
    return out


def _nowhere(stack: Stack, value: str) -> None:
    """``value`` is in no file the task left: checkpoints (manifests and blobs), logs,
    events (the database), specs, spools, results -- on the daemon's side and Modal's."""
    for root in stack.roots():
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink() and "secrets" not in path.parts \
                    and path.stat().st_size < 1 << 24:
                assert value.encode() not in path.read_bytes(), path


def test_setup_installs_what_the_tests_need_and_the_agent_runs_pytest(
        stack: Stack, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    make_project(repo, toml=environment_toml(allow=("pytest", "env")))
    stack.api.add_replies(
        reply("Running the tests.", tool_use("Bash", {"command": "pytest -q",
                                                      "description": "run the tests"})),
        reply("Checking my environment.", tool_use("Bash", {"command": "env",
                                                            "description": "show env"})),
        # Not pre-approved: only an agent in bypassPermissions (contained) runs it.
        reply("Computing.", tool_use("Bash", {"command": "python3 -c 'print(6*7)'",
                                              "description": "compute"})),
        reply("The tests pass."))
    task = _create(stack, repo, "Run the test suite")
    api = stack.api
    assert task["status"] == "completed", (task["result"], task["status_reason"], api.summary())
    results = _tool_results(api)
    assert len(results) == 3, api.summary()
    # pytest ran, in the task's workspace, with the dependency setup installed: it passed.
    assert "1 passed" in results[0], results[0]
    assert "requires approval" not in results[0] and "denied" not in results[0].lower()
    # The agent's environment has the environment's env, never the setup secret.
    assert "PYTHONPATH=.deps" in results[1]
    assert SECRET_VALUE not in results[1] and SETUP_SECRET not in results[1]
    # The default mode as the real CLI applies it: contained (a Modal sandbox, or this
    # machine's bubblewrap container) any command runs; uncontained, a command not
    # pre-approved is refused.
    show = stack.harness.json("task", "show", task["id"])
    contained = stack.backend == "modal" or show.get("isolation") == "bubblewrap"
    if contained:
        assert "42" in results[2], results[2]
    else:
        assert "42" not in results[2] and "requires approval" in results[2], results[2]

    environment = show["environment"]
    assert environment["hash"].startswith("env-") and environment["source"] == "file"
    assert environment["setup_status"] == "completed" and int(environment["setup_ms"]) > 0
    mode = "bypassPermissions" if contained else "acceptEdits"
    assert environment["permission_mode"] == mode, environment
    events = {e["type"] for e in stack.harness.events("--task", task["id"])}
    assert {"setup_started", "setup_step", "setup_completed"} <= events
    logs = stack.harness.run("task", "logs", task["id"], "--setup", check=True).stdout
    assert "setup had the token ***" in logs, logs
    _nowhere(stack, SECRET_VALUE)


def test_a_failing_setup_fails_the_task_before_any_model_request(
        stack: Stack, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    make_project(repo, toml=environment_toml(setup=[
        "echo preparing", f"echo token ${SETUP_SECRET} >&2; echo broke >&2; exit 3"]))
    task = _create(stack, repo, "Run the test suite")
    assert task["status"] == "failed", task
    assert task["result"]["error_code"] == "E606", task
    message = task["result"]["error_message"]
    assert "exited with 3" in message and "broke" in message, message
    assert SECRET_VALUE not in message and "token ***" in message, message
    assert stack.api.main_requests == [], stack.api.summary()
    assert stack.api.requests == [], stack.api.summary()
    # The workspace as the setup left it is checkpointed.
    cps = stack.harness.json("checkpoint", "list", task["session_id"])["checkpoints"]
    assert any(cp["trigger"] == "error" for cp in cps), cps
    failed = stack.harness.events("--task", task["id"], "--type", "setup_failed")
    assert failed and failed[-1]["data"]["exit_code"] == 3
    assert any("broke" in line for line in failed[-1]["data"]["tail"])
    _nowhere(stack, SECRET_VALUE)
    assert GREETING  # the project is the same one the passing test uses
