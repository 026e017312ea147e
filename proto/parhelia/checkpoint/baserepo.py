"""The base commit as a git repository in the agent's workspace.

At upload, the objects of the base commit (the commit, its tree and blobs: no
history) are packed from the user's repository (through :mod:`parhelia.gitsafe`'s
shadow, so nothing the repository configures runs) and stored as one CAS blob;
checkpoint zero records it as ``git.base_pack``. When a worker materialises a
checkpoint that has a base pack and no ``.git`` (checkpoint zero), it makes the
workspace a shallow repository at that commit: the pack is indexed, ``HEAD``
names the user's branch, and the index is the base tree, so ``git status`` and
``git diff`` show the user's uploaded uncommitted changes as changes. From then on
``.git`` is part of the workspace like any file (later checkpoints carry it); results
are computed from files against checkpoint zero, never from the agent's commits.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from parhelia import gitsafe
from parhelia.checkpoint.cas import BlobStore
from parhelia.volume import is_digest

log = logging.getLogger(__name__)

MAX_BASE_PACK_BYTES = 2 << 30
PACK_TIMEOUT = 600
AGENT_IDENTITY = {"user.name": "Parhelia agent", "user.email": "parhelia@localhost"}
_SHA_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")


Git = Callable[..., "subprocess.CompletedProcess[bytes]"]
"""Runs git in some repository: ``git(*args, input=, stdout=, timeout=)``."""


def write_pack(git: Git, head: str, out: Path) -> bool:
    """The objects of commit ``head`` (the commit, its tree and blobs, no history) as one
    pack file ``out``; False (and a log line) when git cannot make it or it is too big."""
    listed = git("rev-list", "--objects", "--no-walk", head, timeout=PACK_TIMEOUT)
    if listed.returncode != 0:
        log.warning("base commit %s: rev-list failed: %s", head, listed.stderr[-300:])
        return False
    with open(out, "wb") as fh:
        proc = git("pack-objects", "--stdout", "-q", input=listed.stdout, stdout=fh,
                   timeout=PACK_TIMEOUT)
    size = out.stat().st_size
    if proc.returncode != 0 or size > MAX_BASE_PACK_BYTES:
        log.warning("base commit %s: not packed (exit %s, %d bytes)", head, proc.returncode,
                    size)
        return False
    return True


def pack_base(shadow: gitsafe.Shadow, head: str, store: BlobStore) -> dict[str, Any] | None:
    """Store the objects of commit ``head`` as one pack blob; ``{"blob", "size"}`` or None."""
    with tempfile.TemporaryDirectory(prefix="parhelia-pack-") as tmp:
        out = Path(tmp) / "base.pack"
        if not write_pack(shadow.run, head, out):
            return None
        stored = store.put_file(out)
    return {"blob": stored.digest, "size": stored.size, "commit": head}


def wants_repo(tree: Mapping[str, Any], git: Mapping[str, Any] | None) -> bool:
    """Whether materialising this checkpoint should make the workspace a repository."""
    return bool(git and isinstance(git.get("base_pack"), Mapping) and ".git" not in tree)


def make_repo(workspace: Path, git: Mapping[str, Any], store: BlobStore) -> str | None:
    """Turn the restored ``workspace`` into a repository at the base commit.

    Returns None on success, else why not (the workspace stays plain files)."""
    pack = git.get("base_pack")
    if not isinstance(pack, Mapping):
        return "no base pack"
    digest, size, commit = pack.get("blob"), pack.get("size"), pack.get("commit")
    if not (is_digest(digest) and isinstance(size, int) and isinstance(commit, str)
            and _SHA_RE.match(commit)):
        return "the base pack reference is malformed"
    branch = git.get("branch")
    ref = f"refs/heads/{branch}" if isinstance(branch, str) and branch else None
    if ref is not None and gitsafe.ref_problem(ref):
        ref = None
    fmt = "sha256" if len(commit) == 64 else "sha1"

    def git_(*args: str, stdin: IO[bytes] | None = None) -> None:
        proc = gitsafe.run(["-C", str(workspace), *args], stdin=stdin, timeout=PACK_TIMEOUT)
        if proc.returncode != 0:
            raise RuntimeError(f"git {args[0]}: {proc.stderr.decode(errors='replace')[-300:]}")

    try:
        git_("init", "-q", "--template=", f"--object-format={fmt}")
        if store.size(str(digest)) != size:
            return "the base pack has the wrong size"
        with store.open(str(digest)) as fh:
            git_("index-pack", "--stdin", stdin=fh)
        (workspace / ".git" / "shallow").write_text(commit + "\n")
        for key, value in AGENT_IDENTITY.items():
            git_("config", key, value)
        if ref is not None:
            git_("update-ref", ref, commit)
            git_("symbolic-ref", "HEAD", ref)
        else:
            git_("update-ref", "--no-deref", "HEAD", commit)
        git_("read-tree", commit)
        # Stat info for the files that match the base, so the first `git status` is quick.
        gitsafe.run(["-C", str(workspace), "update-index", "-q", "--refresh"],
                    timeout=PACK_TIMEOUT)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        _remove_git(workspace)
        return str(exc)
    return None


def _remove_git(workspace: Path) -> None:
    target = workspace / ".git"
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target, ignore_errors=True)
    elif os.path.lexists(target):
        target.unlink()
