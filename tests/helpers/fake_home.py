"""A realistic fake HOME: ``~/.claude`` and ``~/.claude.json`` with a secret planted in every
place config sync must keep at home (distinct marker strings, so a leak names its source)."""

from __future__ import annotations

import json
from pathlib import Path

MARKER = "PARHELIA-MARKER-LINE-0451"
PASS_ENV = ["PASSED_TOKEN", "MCP_REMOTE_AUTHORIZATION"]
EXCLUDE_MCP = ["skipme"]

SECRETS = {
    "credentials": "SECRET-CREDENTIALS-7f3a91",
    "device_keys": "SECRET-DEVICEKEYS-2b8c44",
    "oauth": "SECRET-OAUTHACCOUNT-9d1e07",
    "settings_local": "SECRET-SETTINGSLOCAL-5a6b3c",
    "projects": "SECRET-PROJECTS-TRANSCRIPT-11aa",
    "todos": "SECRET-TODOS-22bb",
    "sessions": "SECRET-SESSIONS-33cc",
    "telemetry": "SECRET-TELEMETRY-44dd",
    "history": "SECRET-HISTORY-55ee",
    "backups": "SECRET-BACKUPS-66ff",
    "settings_env": "SECRET-SETTINGSENV-77ab",
    "settings_env_passed": "SECRET-PASSEDENV-88cd",
    "mcp_env": "SECRET-MCPENV-99ef",
    "mcp_header": "SECRET-MCPHEADER-a1b2",
    "api_key_helper": "SECRET-APIKEYHELPER-c3d4",
    "primary_api_key": "SECRET-PRIMARYAPIKEY-e5f6",
    "mcp_arg_flag": "SECRET-MCPARGFLAG-b7c8",
    "mcp_arg_eq": "SECRET-MCPARGEQ-d9e0",
    "mcp_arg_bare": "sk-ant-api03-SECRETBAREARG0123456789",
    "url_password": "SECRET-URLPASS-f1a2",
    "url_query": "SECRET-URLQUERY-a3b4",
    "file_token": "ghp_SECRETFILETOKEN0123456789abcdefghij",
    "file_pem": "MIIEowIBAAKCAQEAsecretPEMbody0123",
}

def make(home: Path, marker: str = MARKER) -> dict[str, str]:
    """Populate ``home``; returns the planted secrets by place."""
    c = home / ".claude"
    for d in ("agents", "commands", "skills/marker-skill", "output-styles", "hooks",
              "plugins/cache/mkt/demo-plugin/1.0.0/.claude-plugin",
              "plugins/cache/mkt/demo-plugin/1.0.0/node_modules/dep",
              "plugins/cache/mkt/demo-plugin/1.0.0/.git",
              "plugins/cache/mkt/old-plugin/0.1.0", "plugins/marketplaces/mkt/.git",
              "projects/-home-u-proj", "todos", "sessions", "telemetry", "backups",
              "statsig", "skills/marker-skill/node_modules/x", "bin"):
        (c / d).mkdir(parents=True, exist_ok=True)
    (c / "CLAUDE.md").write_text(f"# My rules\n{marker}\nAlways be kind.\n")
    (c / "agents/marker-agent.md").write_text(
        "---\nname: marker-agent\ndescription: Reviews things for tests\n---\nYou review.\n")
    (c / "commands/hello.md").write_text("Say hello to $ARGUMENTS\n")
    (c / "commands/deploy.md").write_text(
        f"Deploy the site.\nUse the token {SECRETS['file_token']} for the API.\n")
    (c / "agents/keyholder.md").write_text(
        "---\nname: keyholder\n---\n-----BEGIN RSA PRIVATE KEY-----\n"
        f"{SECRETS['file_pem']}\n-----END RSA PRIVATE KEY-----\n")
    (c / "skills/marker-skill/SKILL.md").write_text(
        "---\nname: marker-skill\ndescription: A marker skill for tests\n---\nDo the thing.\n")
    (c / "skills/marker-skill/node_modules/x/index.js").write_text("module.exports = 1\n")
    (c / "output-styles/terse.md").write_text("---\nname: terse\n---\nBe terse.\n")
    hook = c / "hooks/check.sh"
    hook.write_text("#!/bin/sh\nexit 0\n")
    hook.chmod(0o755)
    (c / "hooks/unused.sh").write_text("#!/bin/sh\n")
    ext = home / "scripts"
    ext.mkdir(exist_ok=True)
    (ext / "notify.py").write_text("print('notified')\n")
    (ext / "notify.py").chmod(0o755)
    mcp_bin = c / "bin/mcp-tool"
    mcp_bin.write_text("#!/bin/sh\nexit 0\n")
    mcp_bin.chmod(0o755)
    (c / ".credentials.json").write_text(json.dumps(
        {"claudeAiOauth": {"accessToken": SECRETS["credentials"]}}))
    (c / ".device-keys.json").write_text(json.dumps({"key": SECRETS["device_keys"]}))
    (c / "settings.local.json").write_text(json.dumps({"env": {"X": SECRETS["settings_local"]}}))
    (c / "projects/-home-u-proj/abc.jsonl").write_text(SECRETS["projects"] + "\n")
    (c / "todos/t.json").write_text(SECRETS["todos"])
    (c / "sessions/s.json").write_text(SECRETS["sessions"])
    (c / "telemetry/t.json").write_text(SECRETS["telemetry"])
    (c / "history.jsonl").write_text(SECRETS["history"] + "\n")
    (c / "backups/.claude.json.backup").write_text(SECRETS["backups"])
    (c / "statsig/cache").write_text("statsig")
    plugin = c / "plugins/cache/mkt/demo-plugin/1.0.0"
    (plugin / ".claude-plugin/plugin.json").write_text(json.dumps(
        {"name": "demo-plugin", "version": "1.0.0", "description": "demo"}))
    (plugin / "README.md").write_text("demo plugin\n")
    (plugin / "node_modules/dep/index.js").write_text("x\n")
    (plugin / ".git/HEAD").write_text("ref: refs/heads/main\n")
    (c / "plugins/cache/mkt/old-plugin/0.1.0/README.md").write_text("old\n")
    (c / "plugins/marketplaces/mkt/.git/HEAD").write_text("x\n")
    (c / "plugins/installed_plugins.json").write_text(json.dumps({"version": 2, "plugins": {
        "demo-plugin@mkt": [{"scope": "user", "installPath": str(plugin), "version": "1.0.0"}]}}))
    (c / "plugins/known_marketplaces.json").write_text(json.dumps({"mkt": {
        "source": {"source": "github", "repo": "example/mkt"},
        "installLocation": str(c / "plugins/marketplaces/mkt")}}))
    settings = {
        "env": {"MY_TOKEN": SECRETS["settings_env"],
                "PASSED_TOKEN": SECRETS["settings_env_passed"]},
        "apiKeyHelper": f"echo {SECRETS['api_key_helper']}",
        "permissions": {"allow": ["Bash(ls:*)"]},
        "hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [
            {"type": "command", "command": f"{c}/hooks/check.sh"},
            {"type": "command", "command": "python3 ~/scripts/notify.py --quiet"}]}]},
        "statusLine": {"type": "command", "command": "~/.claude/hooks/missing-status.sh"},
        "enabledPlugins": {"demo-plugin@mkt": True},
    }
    (c / "settings.json").write_text(json.dumps(settings, indent=2))
    (home / ".claude.json").write_text(json.dumps({
        "numStartups": 12, "userID": "u-123",
        "oauthAccount": {"emailAddress": "me@example.com", "accessToken": SECRETS["oauth"]},
        "primaryApiKey": SECRETS["primary_api_key"],
        "projects": {"/home/u/proj": {"mcpServers": {"local-one": {"command": "x"}}}},
        "mcpServers": {
            "tool": {"type": "stdio", "command": str(mcp_bin),
                     "args": ["--dir", f"{c}/skills", "--api-key", SECRETS["mcp_arg_flag"],
                              f"--token={SECRETS['mcp_arg_eq']}", SECRETS["mcp_arg_bare"]],
                     "env": {"TOOL_KEY": SECRETS["mcp_env"]}},
            "remote": {"type": "http",
                       "url": f"http://me:{SECRETS['url_password']}@127.0.0.1:9/mcp"
                              f"?api_key={SECRETS['url_query']}&region=eu",
                       "headers": {"Authorization": "Bearer " + SECRETS["mcp_header"]}},
            "nocmd": {"type": "stdio", "command": "definitely-not-installed-xyz"},
            "skipme": {"type": "stdio", "command": "sh"},
        }}, indent=2))
    return SECRETS



def sync_config_toml(extra: str = "") -> str:
    return (f"[sync]\npass_env = {json.dumps(PASS_ENV)}\nexclude_mcp = {json.dumps(EXCLUDE_MCP)}\n"
            + extra)
