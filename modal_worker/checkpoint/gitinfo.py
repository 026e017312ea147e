"""Git-aware file lists and git state for manifests (``git`` is run as an argv list)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

GIT_TIMEOUT = 30


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    return subprocess.run(
        ["git", "-c", "safe.directory=*", "-C", str(root), *args],
        capture_output=True, env=env, timeout=GIT_TIMEOUT, check=False,
    )


def is_git_repo(root: Path) -> bool:
    return (root / ".git").exists()


def git_file_list(root: Path) -> list[str]:
    """Tracked plus untracked-not-ignored files (``git ls-files -z -co --exclude-standard``).

    Paths are relative to ``root``; tracked files deleted from the work tree are
    listed too (the snapshot skips what no longer exists).
    """
    proc = _git(root, "ls-files", "-z", "-co", "--exclude-standard")
    if proc.returncode != 0:
        raise RuntimeError(f"git ls-files failed: {proc.stderr.decode(errors='replace').strip()}")
    names = [os.fsdecode(p) for p in proc.stdout.split(b"\0") if p]
    return sorted(set(names))


def git_state(root: Path) -> dict[str, Any] | None:
    """Branch, HEAD, dirty files and stash list; ``None`` when ``root`` is not a repository."""
    if not is_git_repo(root):
        return None
    inside = _git(root, "rev-parse", "--is-inside-work-tree")
    if inside.returncode != 0:
        return None
    branch = _git(root, "symbolic-ref", "--short", "-q", "HEAD")
    head = _git(root, "rev-parse", "-q", "--verify", "HEAD")
    status = _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all")
    stash = _git(root, "stash", "list", "--format=%gd %H %s")
    dirty = []
    fields = status.stdout.split(b"\0")
    i = 0
    while i < len(fields):
        item = fields[i]
        i += 1
        if len(item) < 4:
            continue
        code, path = item[:2].decode(), os.fsdecode(item[3:])
        if code[0] in "RC":
            i += 1  # the rename/copy source follows as its own field
        dirty.append({"status": code, "path": path})
    return {
        "branch": branch.stdout.decode().strip() or None if branch.returncode == 0 else None,
        "head": head.stdout.decode().strip() or None if head.returncode == 0 else None,
        "dirty": dirty,
        "stash": [line for line in stash.stdout.decode(errors="replace").splitlines() if line],
    }
