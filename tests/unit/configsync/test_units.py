"""Config sync without a daemon: the builder's rules, the bundle format and the worker's
materialisation (hostile manifests, settings merge, Parhelia's own hooks)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from modal_worker import claude_config
from modal_worker.claude_config import materialise
from parhelia.bundle import CONFIG_DIR_TOKEN, Bundle, BundleFile
from parhelia.checkpoint.cas import BlobStore
from parhelia.errors import ParheliaError
from parhelia.volume import LocalVolume, bundle_key
from parheliad.core.configsync import Source, build
from parheliad.core.configsync.syncer import ConfigSync
from tests.helpers import fake_home

PASS = fake_home.PASS_ENV
EXCLUDE = fake_home.EXCLUDE_MCP


def _exists(command: str) -> bool:
    return command in ("sh", "python3") or Path(command).is_file()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    fake_home.make(h)
    return h


def _plan(home: Path, **kw: object):
    args = {"pass_env": PASS, "exclude_mcp": EXCLUDE, "command_exists": _exists, **kw}
    return build(Source.from_env({"HOME": str(home)}), **args)  # type: ignore[arg-type]


def _reasons(plan) -> dict[str, str]:
    return {e.path: e.reason for e in plan.exclusions}


def test_what_is_sent_and_what_stays_home(home: Path) -> None:
    plan = _plan(home)
    sent = set(plan.items)
    assert {"CLAUDE.md", "settings.json", "agents/marker-agent.md", "commands/hello.md",
            "skills/marker-skill/SKILL.md", "output-styles/terse.md", "hooks/check.sh",
            "external/scripts/notify.py", "bin/mcp-tool", "plugins/installed_plugins.json",
            "plugins/known_marketplaces.json",
            "plugins/cache/mkt/demo-plugin/1.0.0/.claude-plugin/plugin.json"} <= sent
    assert not any(p.split("/")[0] in ("projects", "todos", "sessions", "telemetry", "backups",
                                       "statsig") for p in sent)
    assert not any("node_modules" in p or "/.git/" in p or "old-plugin" in p for p in sent)
    reasons = _reasons(plan)
    for path in (".credentials.json", ".device-keys.json", "settings.local.json",
                 "settings.json#env.MY_TOKEN", "settings.json#env.PASSED_TOKEN",
                 "settings.json#apiKeyHelper", "~/.claude.json#oauthAccount",
                 "~/.claude.json#primaryApiKey", "mcp:tool#env.TOOL_KEY",
                 "mcp:remote#headers.Authorization"):
        assert reasons[path] == "secret", path
    for path in ("projects/", "todos/", "sessions/", "telemetry/", "history.jsonl",
                 "backups/", "hooks/unused.sh", "statsig/"):
        assert reasons[path] == "not_config", path
    assert reasons["plugins/cache/mkt/old-plugin/"] == "cache"
    assert reasons["plugins/marketplaces/"] == "cache"
    assert reasons["skills/marker-skill/node_modules/"] == "cache"
    assert reasons["mcp:skipme"] == "excluded"
    assert reasons["mcp:nocmd"] == "missing_command"
    assert set(plan.mcp_servers) == {"tool", "remote"}
    # no value of a secret in anything that is sent
    blob = b"".join(i.data for i in plan.items.values()) + json.dumps(plan.mcp_servers).encode()
    for value in fake_home.SECRETS.values():
        assert value.encode() not in blob


def test_pass_env_values_travel_only_as_environment(home: Path) -> None:
    plan = _plan(home)
    secrets = fake_home.SECRETS
    assert plan.secret_env == {
        "PASSED_TOKEN": secrets["settings_env_passed"],
        "MCP_REMOTE_AUTHORIZATION": "Bearer " + secrets["mcp_header"]}
    assert plan.mcp_servers["remote"]["headers"] == {
        "Authorization": "${MCP_REMOTE_AUTHORIZATION}"}
    assert "env" not in plan.mcp_servers["tool"]  # TOOL_KEY is not passed: removed
    assert "secret_env" not in repr(plan) and secrets["settings_env_passed"] not in repr(plan)
    settings = json.loads(plan.items["settings.json"].data)
    assert "env" not in settings and "apiKeyHelper" not in settings


def test_paths_are_rewritten_and_references_reported(home: Path) -> None:
    plan = _plan(home)
    settings = json.loads(plan.items["settings.json"].data)
    hooks = settings["hooks"]["PreToolUse"][0]["hooks"]
    assert hooks[0]["command"] == f"{CONFIG_DIR_TOKEN}/hooks/check.sh"
    assert hooks[1]["command"] == f"python3 {CONFIG_DIR_TOKEN}/external/scripts/notify.py --quiet"
    assert plan.mcp_servers["tool"]["command"] == f"{CONFIG_DIR_TOKEN}/bin/mcp-tool"
    assert plan.mcp_servers["tool"]["args"][:2] == ["--dir", f"{CONFIG_DIR_TOKEN}/skills"]
    installed = json.loads(plan.items["plugins/installed_plugins.json"].data)
    assert installed["plugins"]["demo-plugin@mkt"][0]["installPath"] == \
        f"{CONFIG_DIR_TOKEN}/plugins/cache/mkt/demo-plugin/1.0.0"
    rewritten = {(r.file, r.key) for r in plan.rewrites}
    assert ("settings.json", "hooks.PreToolUse[0].hooks[1].command") in rewritten
    assert ("mcp:tool", "command") in rewritten
    assert any("missing-status.sh" in w and "does not exist" in w for w in plan.warnings)
    assert plan.items["hooks/check.sh"].mode & 0o111  # scripts stay executable


def test_a_file_repeating_a_removed_value_is_not_sent(home: Path) -> None:
    leak = home / ".claude" / "agents" / "leaky.md"
    leak.write_text(f"token: {fake_home.SECRETS['settings_env']}\n")
    plan = _plan(home)
    assert "agents/leaky.md" not in plan.items
    assert _reasons(plan)["agents/leaky.md"] == "secret"


def test_claude_config_dir_and_invalid_settings(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "settings.json").write_text('{"env": {"A": "SECRET-NOT-JSON-A1" ')  # broken
    (cfg / ".claude.json").write_text(json.dumps({"mcpServers": {"s": {"command": "sh"}},
                                                  "oauthAccount": {"x": 1}}))
    plan = build(Source.from_env({"HOME": str(tmp_path), "CLAUDE_CONFIG_DIR": str(cfg)}),
                 pass_env=[], exclude_mcp=[], command_exists=_exists)
    assert "settings.json" not in plan.items
    assert _reasons(plan)["settings.json"] == "invalid"
    assert set(plan.mcp_servers) == {"s"}  # .claude.json inside CLAUDE_CONFIG_DIR


# -- the bundle and the worker ----------------------------------------------------------


def _store_plan(volume: LocalVolume, home: Path) -> str:
    result = ConfigSync._store_plan(volume, _plan(home), dry_run=False)
    assert result.bundle_id is not None
    return result.bundle_id


def test_materialise_round_trip_and_merge(home: Path, tmp_path: Path) -> None:
    volume = LocalVolume(tmp_path / "vol")
    bundle_id = _store_plan(volume, home)
    cfg = tmp_path / "worker-cfg"
    hook = {"PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command",
                                                          "command": "parhelia-hook"}]}]}
    claude_config.add_hooks(cfg, hook)  # before or after materialisation: both kept
    (cfg / ".claude.json").write_text(json.dumps({"userID": "agent-state"}))
    done = materialise(volume, bundle_id, cfg)
    assert done.files > 10 and done.mcp_servers == ["remote", "tool"]
    assert fake_home.MARKER in (cfg / "CLAUDE.md").read_text()
    settings = json.loads((cfg / "settings.json").read_text())
    commands = [h["command"] for g in settings["hooks"]["PreToolUse"] for h in g["hooks"]]
    assert f"{cfg.resolve()}/hooks/check.sh" in commands and "parhelia-hook" in commands
    state = json.loads((cfg / ".claude.json").read_text())
    assert state["userID"] == "agent-state"
    assert state["mcpServers"]["tool"]["command"] == f"{cfg.resolve()}/bin/mcp-tool"
    assert (cfg / "hooks/check.sh").stat().st_mode & 0o100
    # a second materialisation (next incarnation) of a smaller bundle removes what it dropped
    shutil.rmtree(home / ".claude" / "commands")
    claude_config.add_hooks(cfg, hook)  # idempotent
    again = materialise(volume, _store_plan(volume, home), cfg)
    assert again.removed == 1 and not (cfg / "commands/hello.md").exists()
    settings = json.loads((cfg / "settings.json").read_text())
    commands = [h["command"] for g in settings["hooks"]["PreToolUse"] for h in g["hooks"]]
    assert commands.count("parhelia-hook") == 1


def _hostile(volume: LocalVolume, path: str, data: bytes = b"x", size: int | None = None,
             blob: str | None = None) -> str:
    stored = BlobStore(volume).put_bytes(data)
    f = BundleFile(path, len(data) if size is None else size, blob or stored.digest)
    bundle = Bundle(files={path: f})
    volume.put(bundle_key(bundle.id), bundle.to_json())
    return bundle.id


@pytest.mark.parametrize("path", ["../escape", "/etc/passwd", "a/../../b", ".credentials.json",
                                  "projects/x.jsonl", ".claude.json", "a//b"])
def test_hostile_paths_are_refused(tmp_path: Path, path: str) -> None:
    volume = LocalVolume(tmp_path / "vol")
    bundle_id = _hostile(volume, path)
    with pytest.raises(ParheliaError) as err:
        materialise(volume, bundle_id, tmp_path / "cfg")
    assert err.value.code == "E600"
    assert not (tmp_path / "escape").exists()


def test_corrupt_blob_and_tampered_manifest_write_nothing(tmp_path: Path) -> None:
    volume = LocalVolume(tmp_path / "vol")
    bundle_id = _hostile(volume, "skills/a/SKILL.md", b"good")
    digest = json.loads(volume.get(bundle_key(bundle_id)))["files"][0]["blob"]
    blob = volume.path_for(f"cas/blobs/{digest[:2]}/{digest}")
    blob.chmod(0o644)
    blob.write_bytes(b"evil")
    cfg = tmp_path / "cfg"
    with pytest.raises(ParheliaError, match="corrupt"):
        materialise(volume, bundle_id, cfg)
    assert not (cfg / "skills/a/SKILL.md").exists()
    assert not [p for p in cfg.rglob("*") if p.is_file()]
    raw = json.loads(volume.get(bundle_key(bundle_id)))
    raw["files"][0]["path"] = "skills/b/SKILL.md"
    volume.put(bundle_key(bundle_id), json.dumps(raw).encode())
    with pytest.raises(ParheliaError, match="does not hash to its id"):
        materialise(volume, bundle_id, cfg)


def test_no_write_through_a_symlink(tmp_path: Path) -> None:
    volume = LocalVolume(tmp_path / "vol")
    bundle_id = _hostile(volume, "skills/a/SKILL.md", b"payload")
    cfg = tmp_path / "cfg"
    outside = tmp_path / "outside"
    outside.mkdir()
    cfg.mkdir()
    (cfg / "skills").symlink_to(outside)
    with pytest.raises(ParheliaError, match="not a directory"):
        materialise(volume, bundle_id, cfg)
    assert list(outside.iterdir()) == []


def test_hook_commands_bundle_the_script_they_run_not_files_they_read(home: Path) -> None:
    # Only a script in command position (or run by an interpreter) is a hook script;
    # a file the command sources, reads or passes as an option value is data, often a
    # credential, and stays home (reported as a reference outside the synced config).
    secret = "ghp_0123456789abcdefghijklmnopqrstuv"
    (home / ".env").write_text(f"GH_TOKEN={secret}\n")
    (home / ".config/gh").mkdir(parents=True)
    (home / ".config/gh/hosts.yml").write_text(f"github.com:\n  oauth_token: {secret}\n")
    (home / ".notifyrc").write_text(f"token={secret}\n")
    (home / "bin").mkdir()
    (home / "bin/lint.sh").write_text("#!/bin/sh\n")
    settings_path = home / ".claude/settings.json"
    settings = json.loads(settings_path.read_text())
    settings["hooks"]["PostToolUse"] = [{"matcher": "Edit", "hooks": [
        {"type": "command", "command": "source ~/.env && GH=$(cat ~/.config/gh/hosts.yml) "
                                       "python3 -u ~/scripts/notify.py --config ~/.notifyrc"},
        {"type": "command", "command": "X=1 ~/bin/lint.sh < ~/.notifyrc"}]}]
    settings_path.write_text(json.dumps(settings))
    plan = _plan(home)
    assert "external/scripts/notify.py" in plan.items
    assert "external/bin/lint.sh" in plan.items
    for name in (".env", ".config/gh/hosts.yml", ".notifyrc"):
        assert f"external/{name}" not in plan.items, name
        assert any(f"~/{name}" in w and "outside the synced config" in w
                   for w in plan.warnings), name
    assert not any(secret.encode() in i.data for i in plan.items.values())
    hooks = json.loads(plan.items["settings.json"].data)["hooks"]["PostToolUse"][0]["hooks"]
    assert hooks[0]["command"] == (
        "source ~/.env && GH=$(cat ~/.config/gh/hosts.yml) "
        f"python3 -u {CONFIG_DIR_TOKEN}/external/scripts/notify.py --config ~/.notifyrc")
    assert hooks[1]["command"] == f"X=1 {CONFIG_DIR_TOKEN}/external/bin/lint.sh < ~/.notifyrc"


def test_credentials_in_mcp_args_and_urls_become_placeholders(tmp_path: Path) -> None:
    home = tmp_path / "h"
    (home / ".claude").mkdir(parents=True)
    (home / ".claude.json").write_text(json.dumps({"mcpServers": {
        "db": {"command": "sh", "args": [
            "-e", "DB_PASSWORD=hunter2", "--auth-token", "t0k3n", "--no-auth", "server.js",
            "--author", "me", "--Password=p%40ss", "ghp_abcdefghijklmnopqrstuvwxyz0123",
            "--key", "${ALREADY_SET}"]},
        "web": {"type": "http",
                "url": "https://tok3nuser@h.example/x?sig=zzz&page=2&q=hf_abcdefghijklmnopqrstuvwx"},
    }}))
    plan = _plan(home, pass_env=["MCP_DB_AUTH_TOKEN"])
    args = plan.mcp_servers["db"]["args"]
    assert args == ["-e", "DB_PASSWORD=${MCP_DB_DB_PASSWORD}", "--auth-token",
                    "${MCP_DB_AUTH_TOKEN}", "--no-auth", "server.js", "--author", "me",
                    "--Password=${MCP_DB_PASSWORD}", "${MCP_DB_ARG9}", "--key", "${ALREADY_SET}"]
    assert plan.secret_env == {"MCP_DB_AUTH_TOKEN": "t0k3n"}
    assert plan.mcp_servers["web"]["url"] == ("https://${MCP_WEB_URL_USER}@h.example/x?"
                                              "sig=${MCP_WEB_SIG}&page=2&q=${MCP_WEB_Q}")
    details = {e.path: e.detail for e in plan.exclusions}
    assert "passed to workers" in details["mcp:db#args[3]"]
    assert "add MCP_DB_DB_PASSWORD to sync.pass_env" in details["mcp:db#args[1]"]
    blob = json.dumps(plan.mcp_servers)
    for secret in ("hunter2", "t0k3n", "p%40ss", "ghp_", "tok3nuser", "zzz", "hf_"):
        assert secret not in blob


def test_credentials_named_inside_args_commands_and_url_fragments_are_withheld(
        tmp_path: Path) -> None:
    """Header-shaped args ("X-Api-Key: V", "Authorization: Basic V"), a script's
    "--token V", "env API_KEY=V cmd" as the command and "#access_token=V" in a URL
    were bundled verbatim."""
    home = tmp_path / "h"
    (home / ".claude").mkdir(parents=True)
    s = "s3cr3tVALUEzz99"
    (home / ".claude.json").write_text(json.dumps({"mcpServers": {
        "hdr": {"command": "sh", "args": ["--header", f"X-Api-Key: {s}a", "-H",
                                           f"Authorization: Basic {s}b", "--verbose"]},
        "script": {"command": "sh", "args": ["-c", f"exec server --token {s}c"]},
        "envcmd": {"command": f"env API_KEY={s}d sh"},
        "frag": {"type": "http", "url": f"https://h.example/cb#access_token={s}e&x=1"},
    }}))
    plan = _plan(home)
    assert plan.mcp_servers["hdr"]["args"] == ["--header", "${MCP_HDR_ARG1}", "-H",
                                               "${MCP_HDR_ARG3}", "--verbose"]
    assert plan.mcp_servers["script"]["args"] == ["-c", "${MCP_SCRIPT_ARG1}"]
    assert "envcmd" not in plan.mcp_servers
    assert plan.mcp_servers["frag"]["url"] == \
        "https://h.example/cb#access_token=${MCP_FRAG_ACCESS_TOKEN}&x=1"
    assert s not in json.dumps(plan.mcp_servers)
    details = {e.path: (e.reason, e.detail) for e in plan.exclusions}
    assert details["mcp:envcmd"][0] == "secret" and s not in details["mcp:envcmd"][1]
    assert details["mcp:hdr#args[1]"][0] == "secret"
    assert all(s not in d for _, d in details.values())
