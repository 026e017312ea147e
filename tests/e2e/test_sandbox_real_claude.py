"""The REAL Claude Code CLI in the local worker's container (issue 22; ADR 0030): told by
the model (the local fake of the Messages API) to run ``cat ~/.ssh/id_ed25519; env; ls
$PARHELIA_HOME`` with its Bash tool, it finds none of them -- the tool result it sends
back to the API is read here. Its every request still reached the API with the real
credential, added by the worker's proxy outside the container."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from parhelia.sandbox import PLACEHOLDER_PREFIX
from tests.fake_anthropic import FakeAnthropic, reply, tool_use
from tests.helpers.daemon import start_daemon
from tests.helpers.harness import Harness, kill_workers
from tests.helpers.sandbox import require_bwrap

pytestmark = pytest.mark.claude

API_KEY = "sk-ant-api03-REAL-KEY-OUTSIDE-THE-SANDBOX-1e4f"
SSH_MARK = "SSH-KEY-MARKER-real-claude-52aa"


@pytest.fixture
def stack(claude_bin: Path, parhelia_home: Path, tmp_path: Path
          ) -> Iterator[tuple[Harness, FakeAnthropic, Path]]:
    require_bwrap()
    with FakeAnthropic() as fake:
        (parhelia_home / "config.toml").write_text(
            f"[agent]\ncommand = ['{claude_bin}']\n[heartbeat]\ninterval_seconds = 0.5\n")
        home = tmp_path / "home"
        (home / ".ssh").mkdir(parents=True)
        (home / ".ssh" / "id_ed25519").write_text(f"-----BEGIN KEY-----\n{SSH_MARK}\n")
        daemon = start_daemon(parhelia_home, ANTHROPIC_API_KEY=API_KEY,
                              ANTHROPIC_BASE_URL=fake.url, HOME=str(home),
                              CLAUDE_CODE_MAX_RETRIES="0", NO_PROXY="127.0.0.1,localhost")
        try:
            yield Harness(daemon), fake, home
        finally:
            daemon.stop()
            kill_workers(parhelia_home)


def test_real_claude_in_the_container_reads_no_key_no_home_no_parhelia_home(
        stack: tuple[Harness, FakeAnthropic, Path]) -> None:
    harness, fake, home = stack
    probe = (f"cat ~/.ssh/id_ed25519; cat {home}/.ssh/id_ed25519; env; "
             f"ls -a $PARHELIA_HOME; ls -aR {harness.home} | head -50; ps -eo args")
    fake.add_replies(reply("Looking around.", tool_use("Bash", {"command": probe})),
                     reply("Nothing there."))
    out = harness.json("task", "create", "Look around", "--no-workspace",
                       "--permission-mode", "bypassPermissions")
    task_id = out.get("task", out)["id"]
    task = harness.wait(task_id, timeout=180)
    assert task["status"] == "completed", (task, fake.summary())

    results = [b for r in fake.main_requests for b in r.last_user_content()
               if b.get("type") == "tool_result"]
    assert results, fake.summary()
    seen = json.dumps(results)
    for secret in (SSH_MARK, API_KEY, "parheliad.db", "config.toml", "parheliad"):
        assert secret not in seen, (secret, seen[:3000])
    assert f"ANTHROPIC_API_KEY={PLACEHOLDER_PREFIX}" in seen, seen[:3000]
    assert "No such file" in seen
    # every call reached the API with the real credential, added outside the container
    assert fake.main_requests and all(r.api_key_is(API_KEY) for r in fake.main_requests)
    assert all(r.api_key_is(API_KEY) for r in fake.requests if r.sent_header("x-api-key"))
    shown = harness.run("task", "show", task_id, check=True).stdout
    assert "bubblewrap" in shown and "placeholder" in shown
    assert os.path.exists(home / ".ssh" / "id_ed25519")  # nothing touched the real one
