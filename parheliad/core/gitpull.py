"""Bring a task's changes back into the user's repository without touching it.

Everything goes through git plumbing with a private index file: objects are
written with ``hash-object``, a tree is built from the base commit plus the
changes, a commit is made with ``commit-tree``, and only then is a *new* branch ref
created. The user's working tree, index, HEAD and current branch are never
touched. A patch is the ``git diff --binary`` between two such commits.

The same plumbing runs in a :func:`parhelia.gitsafe.shadow` over the repository
(objects written there, the repository's own objects borrowed read-only) when
nothing may be written to the user's repository at all (``task diff --against base``).
A path git refuses (``sub/.git/config``...) is skipped and reported, not fatal.

Git runs through :func:`parhelia.gitsafe.run`: no system/global config, no hooks
(``update-ref`` would run ``reference-transaction``), no fsmonitor, filters (blobs
are hashed with ``--no-filters``), external diff, textconv, signing or pager, and a
minimal environment without the daemon's secrets.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from parhelia import gitsafe
from parhelia.errors import ParheliaError
from parhelia.progress import Report, ignore


@dataclass(frozen=True)
class Change:
    """One path's new state. ``content`` is None for a removal; for a symlink it is
    the link target and ``mode`` is 0o120000."""

    path: str
    content: bytes | None
    mode: int = 0o100644


Target = Path | gitsafe.Shadow  # the user's repository, or a shadow over it


@dataclass(frozen=True)
class Committed:
    commit: str
    skipped: list[str]  # "path: reason" for changes git refused


def _git(repo: Target, *args: str, input: bytes | None = None,
         env: dict[str, str] | None = None, strip: bool = True) -> str:
    if isinstance(repo, gitsafe.Shadow):
        proc = repo.run(*args, input=input, extra_env=env, timeout=120)
        repo = repo.work_tree
    else:
        proc = gitsafe.run(["-C", str(repo), *args], input=input, extra_env=env, timeout=120)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        last = msg[-1] if msg else f"exit {proc.returncode}"
        raise ParheliaError("E101" if "not a git repository" in " ".join(msg) else "E900",
                            f"git {args[0]} failed in {repo}: {last}")
    out = proc.stdout.decode(errors="replace")
    return out.strip() if strip else out


def repo_root(path: Path) -> Path:
    try:
        return Path(_git(path, "rev-parse", "--show-toplevel"))
    except ParheliaError:
        raise ParheliaError("E101", f"{path} is not inside a git repository") from None


def _git_mode(mode: int) -> str:
    if mode & 0o170000 == 0o120000:
        return "120000"
    return "100755" if mode & 0o111 else "100644"


def path_problem(path: str) -> str | None:
    """Why git must never be given ``path`` in a tree (None when it is fine)."""
    parts = path.split("/")
    if not path or any(p in ("", ".", "..") for p in parts):
        return "not a clean relative path"
    if any(p.lower() == ".git" or p.lower().startswith(".git~") for p in parts):
        return "inside a .git directory"
    if any(c in path for c in "\0\n"):
        return "contains a NUL or newline"
    return None


def commit_changes(repo: Target, base_commit: str, changes: Iterable[Change],
                   message: str, progress: Report = ignore, date: str | None = None
                   ) -> Committed:
    """Create (but do not reference) a commit: base + changes. Changes git refuses
    are skipped and listed; ``progress`` hears the files done. ``date`` (git's
    ``<epoch> +0000``) is the author and committer date: with it, the same changes on
    the same base by the same identity make the same commit, wherever and whenever it
    is made (``task pull`` and ``task pr`` of a task agree byte for byte)."""
    changes = list(changes)
    _git(repo, "cat-file", "-e", f"{base_commit}^{{commit}}")
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="parhelia-index-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        _git(repo, "read-tree", base_commit, env=env)
        for done, change in enumerate(changes, 1):
            progress(done, len(changes))
            problem = path_problem(change.path)
            if problem:
                skipped.append(f"{change.path}: {problem}")
                continue
            try:
                if change.content is None:
                    _git(repo, "update-index", "--force-remove", "--", change.path, env=env)
                    continue
                sha = _git(repo, "hash-object", "-w", "--no-filters", "--stdin",
                           input=change.content)
                _git(repo, "update-index", "--add", "--cacheinfo",
                     f"{_git_mode(change.mode)},{sha},{change.path}", env=env)
            except ParheliaError as exc:
                skipped.append(f"{change.path}: {exc.message.rsplit(': ', 1)[-1]}")
        tree = _git(repo, "write-tree", env=env)
    ident = {
        "GIT_AUTHOR_NAME": "Parhelia", "GIT_AUTHOR_EMAIL": "parhelia@localhost",
        "GIT_COMMITTER_NAME": "Parhelia", "GIT_COMMITTER_EMAIL": "parhelia@localhost",
    }
    if date:
        ident["GIT_AUTHOR_DATE"] = ident["GIT_COMMITTER_DATE"] = date
    # Prefer the user's identity when configured (read as values; nothing runs).
    for key, cfg in (("NAME", "user.name"), ("EMAIL", "user.email")):
        value = _identity(repo, cfg)
        if value:
            ident[f"GIT_AUTHOR_{key}"] = ident[f"GIT_COMMITTER_{key}"] = value
    commit = _git(repo, "commit-tree", "--no-gpg-sign", tree, "-p", base_commit, "-F", "-",
                  input=message.encode(), env=ident)
    return Committed(commit, skipped)


def tree_of(repo: Target, commit: str) -> str:
    return _git(repo, "rev-parse", f"{commit}^{{tree}}")


def _identity(repo: Target, key: str) -> str | None:
    """``key`` from the repository's config, else the user's global config files."""
    git_dir = gitsafe.locate(repo.work_tree if isinstance(repo, gitsafe.Shadow) else repo)
    home = Path.home()
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    candidates = [git_dir.common_dir / "config"] if git_dir is not None else []
    for cfg in (*candidates, home / ".gitconfig", xdg / "git" / "config"):
        if cfg.is_file():
            value = gitsafe.read_config(cfg, key)
            if value:
                return value
    return None


def create_branch(repo: Path, branch: str, commit: str) -> None:
    """Create ``refs/heads/<branch>`` at ``commit``; refuse to move an existing one."""
    try:
        _git(repo, "check-ref-format", "--branch", branch)
    except ParheliaError:
        raise ParheliaError("E101", f"not a valid branch name: {branch!r}") from None
    # The empty old-value makes update-ref fail if the ref already exists.
    try:
        _git(repo, "update-ref", f"refs/heads/{branch}", commit, "")
    except ParheliaError:
        raise ParheliaError(
            "E103", f"branch {branch!r} already exists in {repo}; choose another with --branch"
        ) from None


def git_date(rfc3339: str) -> str | None:
    """A manifest's ``created_at`` (``2026-11-28T19:00:00.123456Z``) as git's date
    (``<epoch> +0000``); None when it is not one."""
    try:
        when = datetime.strptime(rfc3339, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    return f"{int(when.timestamp())} +0000"


def diff_patch(repo: Target, base_commit: str, commit: str, *, binary: bool = True) -> str:
    """The diff between two commits: with ``binary``, a patch `git apply` takes (binary
    files included); without, one to read."""
    shape = ("--binary", "--full-index") if binary else ()
    return diff(repo, base_commit, commit, *shape)


def diff(repo: Target, base_commit: str, commit: str, *formats: str) -> str:
    """``git diff`` between two commits in ``formats`` (``--raw``, ``--numstat``, ``-p``...)
    with no external diff, textconv or colour."""
    return _git(repo, "diff", "--no-ext-diff", "--no-textconv", "--no-color", *formats,
                base_commit, commit, "--", strip=False)
