"""Git-aware file lists and git state for manifests.

Git runs only through :mod:`parhelia.gitsafe`'s shadow directory: the tree may
have been written by an agent (or cloned from anywhere), and nothing its ``.git``
configures (fsmonitor, filters, hooks, pagers...) may run.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from parhelia import gitsafe

GIT_TIMEOUT = gitsafe.GIT_TIMEOUT


def is_git_repo(root: Path) -> bool:
    return gitsafe.locate(root) is not None


def git_file_list(root: Path, *, excludes_file: Path | None = None,
                  tracked_only: bool = False) -> list[str]:
    """Tracked plus untracked-not-ignored files (``git ls-files -z -co --exclude-standard``),
    or only the tracked ones.

    Paths are relative to ``root``; tracked files deleted from the work tree are
    listed too (the snapshot skips what no longer exists). ``excludes_file`` is the
    user's global ignore file, for uploads (see :func:`gitsafe.user_excludes_file`).
    """
    try:
        with gitsafe.shadow(root, excludes_file=excludes_file) as sh:
            if sh is None:
                raise RuntimeError(f"{root} is not a git repository")
            which = ("-c",) if tracked_only else ("-co", "--exclude-standard")
            proc = sh.run("ls-files", "-z", *which)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"git ls-files in {root} did not answer (a FIFO in .git?)") \
            from None
    if proc.returncode != 0:
        raise RuntimeError(f"git ls-files failed: {proc.stderr.decode(errors='replace').strip()}")
    names = [os.fsdecode(p) for p in proc.stdout.split(b"\0") if p]
    return sorted(set(names))


def git_state(root: Path, *, excludes_file: Path | None = None) -> dict[str, Any] | None:
    """Branch, HEAD, dirty files and stash list; ``None`` when ``root`` is not a repository
    or git does not answer (a checkpoint is never lost to its git state)."""
    try:
        with gitsafe.shadow(root, excludes_file=excludes_file) as sh:
            if sh is None:
                return None
            branch = sh.branch
            head = sh.run("rev-parse", "-q", "--verify", "HEAD^{commit}")
            status = sh.run("status", "--porcelain=v1", "-z", "--untracked-files=all",
                            "--ignore-submodules=all", "--no-renames")
            stash = sh.run("log", "-g", "--no-show-signature", "--format=%gd %H %s",
                           "refs/stash", "--")
    except subprocess.TimeoutExpired:
        return None
    dirty = []
    fields = status.stdout.split(b"\0") if status.returncode == 0 else []
    i = 0
    while i < len(fields):
        item = fields[i]
        i += 1
        if len(item) < 4:
            continue
        code, path = item[:2].decode(errors="replace"), os.fsdecode(item[3:])
        if code[0] in "RC":
            i += 1  # the rename/copy source follows as its own field
        dirty.append({"status": code, "path": path})
    return {
        "branch": branch,
        "head": head.stdout.decode().strip() or None if head.returncode == 0 else None,
        "dirty": dirty,
        "stash": [line for line in stash.stdout.decode(errors="replace").splitlines()
                  if line] if stash.returncode == 0 else [],
    }
