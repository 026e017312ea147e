"""``python -m modal_worker clone REQUEST``: the job of a clone sandbox (never the agent's).

The daemon starts it only when a Modal task's repository must be read with the Modal
secret ``github-token`` (its value never reaches the daemon). It fetches the requested
commit one commit deep into a private temporary repository, with the token from its
environment passed to git as a header for that call only
(:func:`parhelia.gitremote.network_env`), writes the commit's objects as one pack and a
:class:`parhelia.clonejob.CloneResult` beside the request, and syncs the volume. Nothing
of the repository is checked out or run here; neither file holds the token.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping
from functools import partial
from pathlib import Path

from parhelia import clonejob, gitremote, gitsafe
from parhelia.checkpoint.baserepo import write_pack
from parhelia.clonejob import CloneRequest, CloneResult

SYNC_TIMEOUT = 120


def clone(request: CloneRequest, token: str | None, out_dir: Path) -> CloneResult:
    """Fetch the request's commit and write its pack to ``out_dir``."""
    try:
        remote = gitremote.parse(request.url)
        resolved = gitremote.resolve(remote, token, request.ref)
    except ValueError as exc:
        return CloneResult(False, error_kind="other", error=f"not a repository URL: {exc}")
    except LookupError as exc:
        return CloneResult(False, error_kind="ref", error=str(exc))
    except gitremote.RemoteError as exc:
        return CloneResult(False, error_kind=exc.failure.kind, error=exc.failure.message)
    fmt = "sha256" if len(resolved.commit) == 64 else "sha1"
    with tempfile.TemporaryDirectory(prefix="parhelia-clone-") as tmp:
        bare = str(Path(tmp) / "repo.git")
        init = gitsafe.run(["init", "-q", "--bare", "--template=", f"--object-format={fmt}",
                            bare])
        if init.returncode != 0:
            return CloneResult(False, error_kind="other", error="git init failed")
        try:
            gitremote.fetch_commit(bare, remote, token, resolved, "refs/parhelia/base")
        except gitremote.RemoteError as exc:
            return CloneResult(False, error_kind=exc.failure.kind, error=exc.failure.message)
        part = out_dir / (clonejob.PACK + ".part")
        if not write_pack(partial(_git, bare), resolved.commit, part):
            return CloneResult(False, error_kind="other",
                               error="the commit's objects could not be packed")
        os.replace(part, out_dir / clonejob.PACK)
    return CloneResult(True, commit=resolved.commit, branch=resolved.branch or "",
                       default_branch=resolved.default_branch or "")


def _git(git_dir: str, *args: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return gitsafe.run([f"--git-dir={git_dir}", *args], **kwargs)  # type: ignore[arg-type]


def main(request_path: Path, environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    out_dir = request_path.parent
    request: CloneRequest | None = None
    try:
        request = clonejob.load_request(request_path.read_bytes())
    except (OSError, ValueError) as exc:
        result = CloneResult(False, error_kind="other", error=f"unreadable request: {exc}")
    else:
        result = clone(request, env.get(request.token_var) or None, out_dir)
    part = out_dir / (clonejob.RESULT + ".part")
    part.write_bytes(clonejob.dump(result))
    os.replace(part, out_dir / clonejob.RESULT)
    if request is not None and request.sync_argv:
        subprocess.run(request.sync_argv, check=False, timeout=SYNC_TIMEOUT,
                       stdin=subprocess.DEVNULL)
    return 0 if result.ok else 1
