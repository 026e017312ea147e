"""The one list of environment variables that carry the agent's Anthropic credential,
in the order they are looked for. Shared by the daemon, the worker and the CLI."""

from __future__ import annotations

CREDENTIAL_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
