"""Config sync with the REAL Claude Code CLI: parheliad (local backend) runs the pinned
``claude`` against the fake Messages API, in a worker whose CLAUDE_CONFIG_DIR was
materialised from the user's (fake) ``~/.claude``.

Shows that the user's CLAUDE.md reaches the model (first user message, as a
system-reminder naming the worker's copy), that a synced skill and agent appear in the
agent's init message, that user-scope MCP servers are configured, and that none of the
planted secrets reaches PARHELIA_HOME.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.claude_env import TEST_API_KEY
from tests.fake_anthropic import FakeAnthropic, reply
from tests.helpers import fake_home
from tests.helpers.daemon import RunningDaemon, cli_argv, daemon_env
from tests.integration.configsync.test_sync_daemon import _scan

pytestmark = [pytest.mark.claude, pytest.mark.timeout(180)]


def test_real_claude_sees_synced_memory_skill_agent_and_mcp(
        claude_bin: Path, fake_anthropic: FakeAnthropic, tmp_path: Path,
        parhelia_home: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    fake_home.make(home)
    ph = parhelia_home
    (ph / "config.toml").write_text(fake_home.sync_config_toml(
        f"[agent]\ncommand = [{json.dumps(str(claude_bin))}]\n"))
    fake_anthropic.set_script([reply("Done.")])
    env = daemon_env(ph, HOME=str(home), ANTHROPIC_API_KEY=TEST_API_KEY,
                     ANTHROPIC_BASE_URL=fake_anthropic.url, CLAUDE_CODE_MAX_RETRIES="0",
                     NO_PROXY="127.0.0.1,localhost")
    for name in ("CLAUDE_CONFIG_DIR", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"):
        env.pop(name, None)
    d = RunningDaemon(ph, env).start()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli_argv(), *args], env=env, capture_output=True, text=True,
                              timeout=150)

    try:
        out = cli("task", "create", "Say hi", "--no-workspace", "--sync", "--json",
                  "--max-turns", "3")
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        task = json.loads(out.stdout.strip().splitlines()[-1])
        assert task["status"] == "completed"
        session = str(task["session_id"])
        events = json.loads(cli("events", "list", "--json", "--limit", "500").stdout)["events"]
    finally:
        d.stop()

    worker_cfg = (ph / "data" / "claude" / session).resolve()
    first = fake_anthropic.main_requests[0]
    blocks = [b["text"] for b in first.messages[0]["content"] if b.get("type") == "text"]
    reminder = next(b for b in blocks if fake_home.MARKER in b)
    # the worker's materialised copy, not the user's file: the marker travelled with the task
    assert f"Contents of {worker_cfg / 'CLAUDE.md'}" in reminder

    init = next(e for e in events if e["type"] == "agent_init")["data"]
    assert "marker-skill" in init["skills"]
    assert "marker-agent" in init["agents"]
    servers = {s["name"] for s in init["mcp_servers"]}
    assert {"tool", "remote"} <= servers and not servers & {"nocmd", "skipme"}
    raw = (ph / "data/volume/logs" / init_container(events) / "agent.jsonl").read_text()
    assert '"marker-skill"' in raw

    leaks = _scan(ph, fake_home.SECRETS)
    assert not leaks, f"secret values found under PARHELIA_HOME: {leaks}"


def init_container(events: list[dict]) -> str:
    return str(next(e for e in events if e["type"] == "agent_init")["container_id"])
