"""Which of the daemon's environment variables a local worker and its agent get.

The daemon's own environment may hold anything (cloud keys, tokens of other tools):
a worker gets only the names below, the agent's credential variables, and what the
user lists in ``sync.pass_env`` (added by the backend from the config bundle). One
allow-list, used by the local backend (worker) and the worker (agent).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from parhelia.credentials import CREDENTIAL_VARS

BASE_NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
    "http_proxy", "https_proxy", "no_proxy", "all_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE",
    "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME",
    "PARHELIA_HOME", "PARHELIA_WORKER_LOG_LEVEL",
})
"""Names every worker gets when the daemon has them (``LC_*`` too)."""

AGENT_PREFIXES = ("ANTHROPIC_", "CLAUDE_CODE_")
"""The agent's own settings (``ANTHROPIC_BASE_URL``, ``CLAUDE_CODE_MAX_RETRIES``...)."""

def _allowed(name: str) -> bool:
    return (name in BASE_NAMES or name.startswith("LC_") or name in CREDENTIAL_VARS
            or name.startswith(AGENT_PREFIXES))


def worker_environ(base: Mapping[str, str], passed: Iterable[str] = ()) -> dict[str, str]:
    """The allow-listed part of ``base`` for a worker; ``passed`` are extra names
    (``sync.pass_env``)."""
    extra = set(passed)
    return {k: v for k, v in base.items() if _allowed(k) or k in extra}
