"""Config sync through a real parheliad and the real CLI, with a fake HOME whose Claude
config has a secret planted in every place that must stay home.

The task test runs the fake agent through a wrapper (outside PARHELIA_HOME) that records
whether the ``sync.pass_env`` variables reached its environment, then scans every byte
of every file under PARHELIA_HOME (database and WAL, logs, spools, specs, bundles,
checkpoints, the session's config dir) for the planted values.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import fake_home
from tests.helpers.daemon import RunningDaemon, cli_argv, daemon_env
from tests.helpers.paths import FAKE_AGENT


def _daemon(ph: Path, home: Path, **extra: str) -> RunningDaemon:
    env = daemon_env(ph, HOME=str(home), **extra)
    env.pop("CLAUDE_CONFIG_DIR", None)
    return RunningDaemon(ph, env).start()


def _cli(d: RunningDaemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cli_argv(), *args], env=d.env, capture_output=True, text=True,
                          timeout=60)


def _sync(d: RunningDaemon, *args: str) -> dict:
    out = _cli(d, "config", "sync", "--json", *args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _blobs(ph: Path) -> set[str]:
    root = ph / "data" / "volume" / "cas" / "blobs"
    return {p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()


@pytest.fixture
def world(tmp_path: Path, parhelia_home: Path) -> Iterator[tuple[Path, Path]]:
    home = tmp_path / "home"
    home.mkdir()
    fake_home.make(home)
    (parhelia_home / "config.toml").write_text(fake_home.sync_config_toml())
    yield home, parhelia_home


def test_dry_run_then_sync_then_resync_writes_nothing_then_one_skill(world) -> None:
    home, ph = world
    d = _daemon(ph, home)
    try:
        dry = _sync(d, "--dry-run")
        assert dry["dry_run"] is True and dry["uploaded"] is False and _blobs(ph) == set()
        reasons = {e["path"]: e["reason"] for e in dry["excluded"]}
        assert reasons[".credentials.json"] == "secret"
        assert reasons["settings.json#env.MY_TOKEN"] == "secret"
        assert reasons["projects/"] == "not_config"
        assert reasons["plugins/marketplaces/"] == "cache"
        assert reasons["mcp:skipme"] == "excluded"
        assert reasons["mcp:nocmd"] == "missing_command"
        assert all(e["detail"] for e in dry["excluded"])
        details = {e["path"]: e["detail"] for e in dry["excluded"]}
        assert "${MCP_TOOL_API_KEY}" in details["mcp:tool#args[3]"]
        assert "${MCP_TOOL_TOKEN}" in details["mcp:tool#args[4]"]
        assert "${MCP_TOOL_ARG5}" in details["mcp:tool#args[5]"]
        assert "${MCP_REMOTE_URL_PASSWORD}" in details["mcp:remote#url.password"]
        assert "${MCP_REMOTE_API_KEY}" in details["mcp:remote#url.api_key"]
        assert details["commands/deploy.md"].startswith("refused: line 2: a GitHub token")
        assert "line 4: a PEM private key" in details["agents/keyholder.md"]
        assert not {"commands/deploy.md", "agents/keyholder.md"} & {i["path"] for i in
                                                                    dry["items"]}
        assert dry["passed_env"] == ["MCP_REMOTE_AUTHORIZATION", "PASSED_TOKEN"]
        assert dry["files"] == len(dry["items"]) and 0 < dry["new_bytes"] <= dry["bytes"]
        assert sum(i["bytes"] for i in dry["items"] if i["new"]) == dry["new_bytes"]
        assert any(r["key"] == "hooks.PreToolUse[0].hooks[1].command" for r in dry["rewrites"])
        assert dry["source_dir"] == str(home / ".claude")
        text = _cli(d, "config", "sync", "--dry-run")
        assert text.returncode == 0 and "Nothing uploaded." in text.stdout
        assert "missing_command" in text.stdout and "\x1b[" not in text.stdout

        first = _sync(d)
        assert first["uploaded"] and first["bundle_id"] == dry["bundle_id"]
        blobs = _blobs(ph)
        assert blobs and (ph / "data/volume/config" / f"{first['bundle_id']}.json").is_file()

        again = _sync(d)  # unchanged: same bundle, nothing new written
        assert again["bundle_id"] == first["bundle_id"] and again["new_bytes"] == 0
        assert not any(i["new"] for i in again["items"]) and _blobs(ph) == blobs

        skill = home / ".claude/skills/marker-skill/SKILL.md"
        skill.write_text(skill.read_text() + "One more rule.\n")
        changed = _sync(d)
        assert changed["bundle_id"] != first["bundle_id"]
        new = [i["path"] for i in changed["items"] if i["new"]]
        assert new == ["skills/marker-skill/SKILL.md"]
        assert len(_blobs(ph) - blobs) == 1

        events = json.loads(_cli(d, "events", "list", "--type", "config_synced",
                                 "--json").stdout)["events"]
        assert len(events) == 3 and events[-1]["data"]["bundle_id"] == changed["bundle_id"]

        shown = json.loads(_cli(d, "config", "show", "--json").stdout)
        values = {v["key"]: v for v in shown["values"]}
        assert values["sync.pass_env"]["value"] == fake_home.PASS_ENV
        assert values["sync.pass_env"]["source"] == f"user:{ph / 'config.toml'}"
        assert values["budget.default_ceiling_usd"]["source"] == "default"
    finally:
        d.stop()


def _wrapper(tmp: Path) -> Path:
    """An agent command that notes what reached its environment, then runs the fake agent."""
    script = tmp / "agent-wrapper"
    passed = fake_home.SECRETS["settings_env_passed"]
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$PASSED_TOKEN" = "{passed}" ]; then echo yes > passed.txt; '
        "else echo no > passed.txt; fi\n"
        'if [ -n "$MY_TOKEN$TOOL_KEY" ]; then echo yes > unpassed.txt; '
        "else echo no > unpassed.txt; fi\n"
        f'exec "{FAKE_AGENT}" "$@"\n')
    script.chmod(0o755)
    return script


def test_task_gets_config_and_no_secret_reaches_parhelia_home(world, tmp_path: Path) -> None:
    home, ph = world
    agent = _wrapper(tmp_path)
    with (ph / "config.toml").open("a") as fh:
        fh.write(f"[agent]\ncommand = [{json.dumps(str(agent))}]\n"
                 # the wrapper execs the fake agent from this checkout, which a contained
                 # agent sees only when it is bound (a checkout under /tmp or $HOME)
                 f"[sandbox]\nread_only = [{json.dumps(str(Path(FAKE_AGENT).parent))}]\n")
    d = _daemon(ph, home, ANTHROPIC_API_KEY="test-key")
    try:
        # no explicit sync: the dispatch syncs because the config is new
        out = _cli(d, "task", "create", "Say hi", "--no-workspace", "--sync", "--json")
        assert out.returncode == 0, out.stderr + out.stdout
        task = json.loads(out.stdout.strip().splitlines()[-1])  # --sync --json: the task last
        assert task["status"] == "completed"
        session = str(task["session_id"])
        workspace = ph / "data" / "workspaces" / session
        assert (workspace / "passed.txt").read_text().strip() == "yes"
        assert (workspace / "unpassed.txt").read_text().strip() == "no"
        cfg = ph / "data" / "claude" / session
        assert fake_home.MARKER in (cfg / "CLAUDE.md").read_text()
        assert (cfg / "skills/marker-skill/SKILL.md").is_file()
        servers = json.loads((cfg / ".claude.json").read_text())["mcpServers"]
        assert set(servers) == {"tool", "remote"}
        assert servers["tool"]["command"] == f"{cfg.resolve()}/bin/mcp-tool"
        assert servers["tool"]["args"][2:] == ["--api-key", "${MCP_TOOL_API_KEY}",
                                               "--token=${MCP_TOOL_TOKEN}", "${MCP_TOOL_ARG5}"]
        assert servers["remote"]["url"] == ("http://me:${MCP_REMOTE_URL_PASSWORD}@127.0.0.1:9"
                                            "/mcp?api_key=${MCP_REMOTE_API_KEY}&region=eu")
        events = json.loads(_cli(d, "events", "list", "--json", "--limit", "500").stdout)
        by_type: dict[str, list] = {}
        for e in events["events"]:
            by_type.setdefault(e["type"], []).append(e)
        synced = by_type["config_synced"]
        assert len(synced) == 1 and synced[0]["data"]["trigger"] == "dispatch"
        bundle = synced[0]["data"]["bundle_id"]
        assert by_type["config_materialised"][0]["data"]["bundle_id"] == bundle
        assert all(e["data"]["environment"]["config_bundle_id"] == bundle
                   for e in by_type["checkpoint_created"])

        # a changed CLAUDE.md is picked up by the next task without `config sync`
        (home / ".claude/CLAUDE.md").write_text("changed rules\n")
        out = _cli(d, "task", "create", "Again", "--no-workspace", "--sync", "--json")
        assert out.returncode == 0, out.stderr
        synced = json.loads(_cli(d, "events", "list", "--type", "config_synced",
                                 "--json").stdout)["events"]
        assert len(synced) == 2 and synced[-1]["data"]["bundle_id"] != bundle
    finally:
        d.stop()
    leaks = _scan(ph, fake_home.SECRETS)
    assert not leaks, f"secret values found under PARHELIA_HOME: {leaks}"


def _scan(root: Path, secrets: dict[str, str]) -> list[tuple[str, str]]:
    """Every byte of every file under ``root`` (the database, its WAL and journal too)."""
    found = []
    needles = {k: v.encode() for k, v in secrets.items()}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            try:
                data = path.read_bytes()
            except OSError:
                continue
            found += [(k, str(path.relative_to(root))) for k, v in needles.items() if v in data]
    return found


def test_item10_dry_run_lists_mcp_servers_flags_parhelia_and_keeps_settings(
        tmp_path: Path, parhelia_home: Path) -> None:
    """The dry run shows every MCP server it sends, warns that the `parhelia` server
    itself would reach every worker (naming sync.exclude_mcp), and a credential in a
    settings value removes that value, not the whole settings.json."""
    home = tmp_path / "home"
    claude = home / ".claude"
    claude.mkdir(parents=True)
    token = "sk-ant-api03-" + "Q" * 40
    (claude / "settings.json").write_text(json.dumps({
        "model": "claude-sonnet-4-5", "env": {"ANTHROPIC_API_KEY": token},
        "statusLine": {"type": "command", "command": f"echo {token}"},
        "permissions": {"allow": ["Bash(ls:*)"]}}))
    (home / ".claude.json").write_text(json.dumps({"mcpServers": {
        "docs": {"type": "http", "url": "https://example.invalid/mcp"},
        "parhelia": {"command": "parhelia", "args": ["mcp-server"]}}}))
    d = _daemon(parhelia_home, home)
    try:
        dry = _sync(d, "--dry-run")
        assert dry["mcp_servers"] == ["docs", "parhelia"]
        assert any("'parhelia' is Parhelia itself" in w and 'exclude_mcp = ["parhelia"]' in w
                   for w in dry["warnings"]), dry["warnings"]
        assert "settings.json" in {i["path"] for i in dry["items"]}
        reasons = {e["path"]: (e["reason"], e["detail"]) for e in dry["excluded"]}
        assert reasons["settings.json#statusLine.command"][0] == "secret"
        assert "settings.json" not in reasons  # not refused as a whole
        table = _cli(d, "config", "sync", "--dry-run")
        rows = [line.split("\t") for line in table.stdout.splitlines()]
        assert ["mcp:docs", "", "MCP server"] in rows and ["mcp:parhelia", "", "MCP server"] \
            in rows, table.stdout
        assert token not in table.stdout + table.stderr
        (parhelia_home / "config.toml").write_text('[sync]\nexclude_mcp = ["parhelia"]\n')
        assert _cli(d, "daemon", "reload").returncode == 0
        assert _sync(d, "--dry-run")["mcp_servers"] == ["docs"]
    finally:
        d.stop()
