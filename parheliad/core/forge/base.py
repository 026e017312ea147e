"""What a forge is to Parhelia: a place that turns a pushed branch into a pull request.

One implementation today (:mod:`parheliad.core.forge.github`); a remote on any other
host is pushed to and given a compare URL when one can be derived
(:func:`compare_url`). Nothing outside this package knows a forge's API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from parhelia.gitremote import RemoteUrl


@dataclass(frozen=True)
class PullRequestDraft:
    """What to open: ``head`` (a branch of the same repository) into ``base``."""

    head: str
    base: str
    title: str
    body: str
    draft: bool
    change_draft: bool = False
    """Give an already open pull request this draft state too (asked for explicitly);
    else ``draft`` applies to a new one only."""


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str
    state: str
    draft: bool
    created: bool
    """False when an open pull request of the same branch was updated."""


class Forge(Protocol):
    """One repository's pull requests on one forge, with one credential."""

    name: str

    def publish(self, draft: PullRequestDraft, known: int | None) -> PullRequest:
        """Open the pull request, or update the open one of the same head branch
        (``known``: its number when recorded)."""
        ...


def owner_repo(remote: RemoteUrl) -> tuple[str, str] | None:
    """``(owner, name)`` of a ``host/owner/name`` repository path, else None."""
    parts = remote.path.split("/")
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None


def compare_url(remote: RemoteUrl, base: str, head: str) -> str | None:
    """A web page comparing ``head`` with ``base`` for the hosts whose URL scheme is
    known (GitLab, Bitbucket, Gitea/Forgejo/Codeberg), else None."""
    if remote.scheme == "file" or not remote.path:
        return None
    web = f"https://{remote.hostname}/{remote.path}"
    host = remote.hostname
    if "gitlab" in host:
        return f"{web}/-/compare/{base}...{head}"
    if host == "bitbucket.org":
        return f"{web}/branch/{head}?dest={base}"
    if host == "codeberg.org" or "gitea" in host or "forgejo" in host:
        return f"{web}/compare/{base}...{head}"
    return None
