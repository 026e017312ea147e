"""Forges: where a task's branch becomes a pull request, and the credential for it.

- :mod:`.base` — the :class:`Forge` interface, what a pull request is, compare URLs;
- :mod:`.github` — the one implementation: GitHub's REST API;
- :mod:`.credentials` — where the daemon finds a GitHub token.

A remote is a GitHub one when its host is in ``github.hosts`` (``github.com`` by
default); only such remotes get the token, for their clones and pushes.
"""

from __future__ import annotations

from pathlib import Path

from parhelia.gitremote import RemoteUrl
from parheliad.config import GitHubConfig
from parheliad.core.forge import github
from parheliad.core.forge.base import (
    Forge,
    PullRequest,
    PullRequestDraft,
    compare_url,
    owner_repo,
)
from parheliad.core.forge.credentials import Token

__all__ = ["Forge", "PullRequest", "PullRequestDraft", "Token", "compare_url", "forge_for",
           "is_github"]


def is_github(remote: RemoteUrl, cfg: GitHubConfig) -> bool:
    """Whether ``remote`` is on a GitHub host (``github.hosts``)."""
    return remote.scheme != "file" and (remote.host in cfg.hosts or remote.hostname in cfg.hosts)


def forge_for(remote: RemoteUrl, cfg: GitHubConfig, token: Token,
              env_file: str = "") -> Forge | None:
    """The forge that opens pull requests for ``remote`` (None when its host has none we
    speak to, or its path is not ``owner/name``)."""
    if not is_github(remote, cfg):
        return None
    names = owner_repo(remote)
    if names is None:
        return None
    return github.GitHub(github.api_url(remote.host, cfg.api_url), token.value, *names,
                         token_source=token.describe(Path(env_file) if env_file else None))
