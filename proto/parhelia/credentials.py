"""The environment variables that carry credentials, shared by the daemon, the worker
and the CLI.

``CREDENTIAL_VARS``: the agent's Anthropic credential, in the order they are looked for.
``GITHUB_TOKEN_VARS``: a GitHub token for clones of private repositories and for pull
requests (``GH_TOKEN`` first, as the ``gh`` CLI reads them). They are used on the
daemon's side only: never given to a worker or its agent, never sent in a config
bundle (:mod:`parhelia.environ`, ``sync.pass_env``).
"""

from __future__ import annotations

CREDENTIAL_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
GITHUB_TOKEN_VARS = ("GH_TOKEN", "GITHUB_TOKEN")
GITHUB_STORED_VAR = "GITHUB_TOKEN"
"""The variable `parhelia auth set --github` writes to the daemon's env file."""
GITHUB_SECRET_KEY = "GITHUB_TOKEN"  # noqa: S105 - a variable's name, not a token
"""The key of the Modal secret ``github-token`` (as ``modal secret create github-token
GITHUB_TOKEN=...`` makes it)."""
