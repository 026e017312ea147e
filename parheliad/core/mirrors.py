"""Bare mirrors the daemon keeps, one per repository URL, under ``<data>/mirrors``.

A mirror holds what the daemon fetched of a repository it was given by URL (``task
create --repo``): the base commits of its tasks, shallow (one commit deep), each kept by
a ref ``refs/parhelia/bases/<sha>``. A ``--repo`` task's checkpoint zero is made from
its mirror (:func:`checkout`), and ``task pr`` builds the task's commits in it and
pushes them from there (:mod:`parheliad.core.pullrequest`). A mirror's config is
git's default; no remote is configured in it and no credential is ever written to it:
URLs and tokens are given to each network call (:mod:`parhelia.gitremote`). One
process at a time works in a mirror (``flock`` on ``<mirror>.lock``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

from parhelia import gitremote, gitsafe
from parhelia.errors import ParheliaError
from parhelia.gitremote import RemoteUrl, Resolved

BASE_REF = "refs/parhelia/bases/"
GIT_TIMEOUT = 600


def key(remote: RemoteUrl) -> str:
    """The mirror's name: a hash of the repository's scheme, host and path."""
    ident = f"{remote.scheme}://{remote.host}/{remote.path}"
    return hashlib.sha256(ident.encode()).hexdigest()[:24]


class Mirrors:
    """The mirrors under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, remote: RemoteUrl) -> Path:
        return self.root / f"{key(remote)}.git"

    @contextlib.contextmanager
    def locked(self, remote: RemoteUrl, *, object_format: str = "sha1") -> Iterator[Path]:
        """The mirror of ``remote``, created if missing, held for this process alone."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.path(remote)
        with open(path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not (path / "objects").is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                    _git(None, "init", "-q", "--bare", "--template=",
                         f"--object-format={object_format}", str(path))
                yield path
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _git(mirror: Path | None, *args: str, input: bytes | None = None) -> str:
    prefix = [f"--git-dir={mirror}"] if mirror is not None else []
    proc = gitsafe.run([*prefix, *args], input=input, timeout=GIT_TIMEOUT)
    if proc.returncode != 0:
        said = proc.stderr.decode(errors="replace").strip().splitlines()
        raise ParheliaError("E900", f"git {args[0]} failed in a mirror: "
                            f"{said[-1] if said else proc.returncode}")
    return proc.stdout.decode(errors="replace").strip()


def object_format(commit: str) -> str:
    return "sha256" if len(commit) == 64 else "sha1"


def has_commit(mirror: Path, commit: str) -> bool:
    return gitremote.has_commit(str(mirror), commit)


def keep(mirror: Path, commit: str) -> None:
    """A ref that keeps ``commit`` (and what it needs) in the mirror."""
    _git(mirror, "update-ref", BASE_REF + commit, commit)


def fetch_base(mirror: Path, remote: RemoteUrl, token: str | None, resolved: Resolved, *,
               environ: Mapping[str, str] | None = None) -> None:
    """Make ``resolved.commit`` present in the mirror (fetched one commit deep unless it
    is there already) and keep it. RemoteError when the fetch fails."""
    gitremote.fetch_commit(str(mirror), remote, token, resolved, BASE_REF + resolved.commit,
                           environ=environ)
    keep(mirror, resolved.commit)


def add_pack(mirror: Path, pack: Path, commit: str) -> None:
    """Index ``pack`` (the objects of one commit, made elsewhere: the Modal clone
    sandbox) into the mirror and keep ``commit`` as a shallow base. E600 when the pack
    is not one git accepts or does not hold that commit."""
    if has_commit(mirror, commit):
        keep(mirror, commit)
        return
    with open(pack, "rb") as fh:
        proc = gitsafe.run([f"--git-dir={mirror}", "index-pack", "--stdin"], stdin=fh,
                           timeout=GIT_TIMEOUT)
    if proc.returncode != 0:
        raise ParheliaError("E600", "the clone's pack was refused by git: "
                            + proc.stderr.decode(errors="replace").strip()[-300:])
    if not has_commit(mirror, commit):
        raise ParheliaError("E600", f"the clone's pack does not hold commit {commit}")
    shallow = mirror / "shallow"
    known = shallow.read_text().split() if shallow.is_file() else []
    if commit not in known:
        with open(shallow, "a") as fh:
            fh.write(commit + "\n")
    keep(mirror, commit)


def checkout(mirror: Path, commit: str, branch: str | None, dest: Path) -> None:
    """A repository at ``dest`` whose work tree is ``commit`` and whose objects are the
    mirror's (alternates), HEAD on ``branch`` (or detached): what checkpoint zero of a
    ``--repo`` task is made from, as an upload of a clone would be."""
    _git(None, "init", "-q", "--template=", f"--object-format={object_format(commit)}",
         str(dest))
    git_dir = dest / ".git"
    (git_dir / "objects" / "info").mkdir(parents=True, exist_ok=True)
    (git_dir / "objects" / "info" / "alternates").write_text(
        str((mirror / "objects").resolve()) + "\n")
    if (mirror / "shallow").is_file():
        shutil.copyfile(mirror / "shallow", git_dir / "shallow")
    here = ["-C", str(dest)]
    if branch and gitsafe.ref_problem(branch) is None:
        _git(None, *here, "update-ref", f"refs/heads/{branch}", commit)
        _git(None, *here, "symbolic-ref", "HEAD", f"refs/heads/{branch}")
    else:
        _git(None, *here, "update-ref", "--no-deref", "HEAD", commit)
    _git(None, *here, "read-tree", "-u", "--reset", commit)
