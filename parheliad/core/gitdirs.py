"""Which paths of a tree from a sandbox are git metadata a user's git would act on.

A pulled tree (``session pull``'s directory, ``task pull``'s branch once checked out)
must run nothing when the user runs git in it. Git takes a directory for a repository's
git directory when it is named ``.git`` (or a ``.git`` file points at one), or when it
has a bare layout: ``HEAD`` beside ``objects`` or ``refs``, or beside ``commondir`` (a
worktree's git directory, whose objects, refs and config are the common dir's: git 2.39's
discovery checks each directory on the way up from the current one, with no ``.git`` in
sight). Such a directory's ``config`` and ``config.worktree`` (``core.fsmonitor``,
``core.worktree``, pagers, filters, hooks paths), its hooks, ``commondir``, ``info/`` and
alternates would act in the user's shell; without its ``commondir`` a worktree's git
directory is no git directory, so the common dir's config is never read.

Only the repository's data is kept inside any of them (:data:`KEPT`, :data:`KEPT_TREES`);
everything else is left out and listed. Names are compared case-insensitively (a
case-insensitive disk takes ``head`` for ``HEAD``).
"""

from __future__ import annotations

from collections.abc import Iterable

GIT = ".git"
KEPT = frozenset({"head", "orig_head", "packed-refs", "shallow", "index"})
KEPT_TREES = frozenset({"refs", "objects", "logs"})
DROPPED_ALWAYS = frozenset({"objects/info/alternates", "objects/info/http-alternates"})
BARE_MARK = "head"
BARE_WITH = frozenset({"objects", "refs", "commondir"})


def git_dirs(paths: Iterable[str]) -> set[str]:
    """The directories of a tree (relative paths, "" for its top) that git would use as a
    git directory: every ``.git`` and every bare layout."""
    children: dict[str, set[str]] = {}
    found: set[str] = set()
    for path in paths:
        parts = path.split("/")
        for i, part in enumerate(parts):
            parent = "/".join(parts[:i])
            children.setdefault(parent, set()).add(part.lower())
            if part.lower() == GIT:
                found.add("/".join(parts[: i + 1]))
    found.update(d for d, names in children.items()
                 if BARE_MARK in names and names & BARE_WITH)
    return found


def inside(path: str, directory: str) -> str | None:
    """``path`` relative to ``directory`` when it lies inside it (not the directory
    itself), else None."""
    if directory == "":
        return path
    if path.lower().startswith(directory.lower() + "/"):
        return path[len(directory) + 1:]
    return None


def metadata_problem(path: str, dirs: Iterable[str]) -> str | None:
    """Why ``path`` must not reach the user's disk (None to keep it): it lies in one of
    the git directories ``dirs`` and is not the repository's data. A path that is a
    git directory itself (``sub/.git``, a bare ``vendor/lib``) is not judged here."""
    for directory in dirs:
        rel = inside(path, directory)
        if rel is None:
            continue
        low = rel.lower()
        head = low.split("/")[0]
        if any(p == GIT for p in low.split("/")):
            return f"nested inside the git directory {directory or '.'}"
        if low in DROPPED_ALWAYS or not (low in KEPT or head in KEPT_TREES):
            what = ("may name commands git runs" if low == "config"
                    else "a hook git runs" if head == "hooks"
                    else "git metadata not needed to use the repository")
            return f"{what} (in the git directory {directory or '.'})"
    return None
