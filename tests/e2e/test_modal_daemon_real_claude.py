"""The REAL pinned Claude Code CLI through the whole stack on the Modal backend: the real
``parhelia`` CLI -> parheliad -> the Modal backend -> the real modal SDK -> the local
stand-in of Modal's service (tests/modal_standin) and its sandbox (a local
process with /vol, /workspace and /root of its own) -> the real worker -> claude -> the
local fake of the Messages API. The credential reaches the sandbox as an ephemeral Modal
secret, the API's URL as a ``sync.pass_env`` value of the user's Claude settings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.claude_env import user_settings_pointing_at
from tests.fake_anthropic import FakeAnthropic, reply, tool_use
from tests.helpers.daemon import RunningDaemon, start_daemon
from tests.helpers.gitrepo import git, init_repo
from tests.helpers.harness import Harness, kill_workers
from tests.modal_standin.fixture import StandIn

pytestmark = [pytest.mark.claude, pytest.mark.timeout(420)]

PASSED = ("ANTHROPIC_BASE_URL", "CLAUDE_CODE_MAX_RETRIES", "NO_PROXY")


@pytest.fixture
def stack(claude_bin: Path, parhelia_home: Path, tmp_path: Path,
          modal_standin: StandIn) -> Iterator[tuple[Harness, FakeAnthropic]]:  # noqa: F811
    with FakeAnthropic() as api:
        home = tmp_path / "home"
        # What a user pointing Claude Code at another endpoint writes; passed to workers.
        user_settings_pointing_at(home, api.url)
        (parhelia_home / "config.toml").write_text(
            f"[agent]\ncommand = [{json.dumps(str(claude_bin))}]\n"
            # A heartbeat every 3 s: five missed (15 s) on a loaded 2-core box is not a
            # dead worker (at 1.5 s the attach tests saw sound workers replaced).
            "[heartbeat]\ninterval_seconds = 3\n"
            "[orchestrator]\ndispatch_interval_seconds = 0.5\n"
            f"[sync]\npass_env = {json.dumps(list(PASSED))}\n")
        daemon: RunningDaemon = start_daemon(
            parhelia_home, ANTHROPIC_API_KEY="test-key", HOME=str(home),
            **modal_standin.env())
        try:
            yield Harness(daemon), api
        finally:
            daemon.stop()
            kill_workers(parhelia_home)


def _tool_results(api: FakeAnthropic) -> list[str]:
    out = []
    for request in api.main_requests:
        for message in request.messages:
            content = message.get("content")
            if message.get("role") == "user" and isinstance(content, list):
                out += [json.dumps(b.get("content")) for b in content
                        if b.get("type") == "tool_result"]
    return out


def test_real_claude_task_on_modal_through_the_daemon_and_its_checkpoint_restores(
        stack: tuple[Harness, FakeAnthropic], modal_standin: StandIn,  # noqa: F811
        tmp_path: Path) -> None:
    harness, api = stack
    repo = tmp_path / "repo"
    base = init_repo(repo, {"README.md": "# project\n"})
    api.add_replies(
        reply("I'll create the file.",
              tool_use("Bash", {"command": "echo 'made on modal' > hello.txt",
                                "description": "create hello.txt"})),
        reply("Created hello.txt."))
    out = harness.run("task", "create", "Create hello.txt saying 'made on modal'",
                      "--backend", "modal", "--permission-mode", "bypassPermissions",
                      "--workspace", str(repo), "--sync", "--json", timeout=360)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:] + api.summary()
    task = json.loads(out.stdout.strip().splitlines()[-1])
    assert task["status"] == "completed" and task["options"]["backend"] == "modal", task
    assert "Created hello.txt." in task["result"]["text"]
    assert api.main_requests and api.main_requests[0].api_key_is("test-key")
    # It ran in a Modal sandbox (the stand-in's), named after its container.
    # the worker's end reached the daemon through its channel; its sandbox ends just after
    assert modal_standin.wait_ended(modal_standin.sandbox(task["container_id"])["id"]) == 0

    # The final checkpoint came back to the daemon: verified, diffed, pulled as a branch.
    cps = harness.json("checkpoint", "list", task["session_id"])["checkpoints"]
    final = next(cp for cp in cps if cp["trigger"] == "completion")
    harness.run("checkpoint", "verify", final["id"], check=True)
    assert "+made on modal" in harness.run("task", "diff", task["id"], check=True).stdout
    harness.run("task", "pull", task["id"], cwd=repo, check=True)
    assert git(repo, "show", f"parhelia/{task['id']}:hello.txt") == "made on modal"
    assert git(repo, "rev-parse", f"parhelia/{task['id']}~1") == base

    # The checkpoint restores in a NEW sandbox: the workspace (the file is there) and the
    # conversation (claude is given its earlier turns).
    api.clear_requests()
    api.add_replies(
        reply("Let me check.", tool_use("Bash", {"command": "cat hello.txt",
                                                 "description": "read hello.txt"})),
        reply("It says: made on modal."))
    out = harness.run("resume", task["session_id"], "--sync", "--json", timeout=360)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:] + api.summary()
    resumed = json.loads(out.stdout.strip().splitlines()[-1])
    assert resumed["status"] == "completed", resumed
    assert resumed["container_id"] != task["container_id"]
    assert modal_standin.wait_ended(modal_standin.sandbox(resumed["container_id"])["id"]) == 0
    assert any("made on modal" in r for r in _tool_results(api)), api.summary()
    assert "Created hello.txt." in api.main_requests[0].messages_text(), api.summary()
    dispatched = harness.events("--task", resumed["id"], "--type", "task_dispatched")
    assert [e["data"]["resume"] for e in dispatched] == [False, True]
    assert dispatched[-1]["data"]["checkpoint_id"] == final["id"]
    # The credential travelled only as a Modal secret: in no file of the daemon's home,
    # of the fake service (sandbox metadata, volume, logs) or of the sandboxes.
    for root in (harness.home, modal_standin.root):
        for path in root.rglob("*"):
            if path.is_file() and "secrets" not in path.parts and \
                    path.stat().st_size < 1 << 22:
                assert b"test-key" not in path.read_bytes(), path
