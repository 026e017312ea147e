"""Run git without running anything a repository configures.

Git executes commands named in a repository's configuration: ``core.fsmonitor``
when it reads the index, ``filter.<name>.clean``/``process`` (selected by
``.gitattributes``) when it hashes work-tree files, hooks (``core.hooksPath``,
``reference-transaction``), pagers, ``diff.external`` and textconv drivers,
``gpg.program`` (``log.showSignature``, ``commit.gpgSign``), credential and ssh
helpers. A workspace written by an agent can plant any of these in ``.git/config``.

Two ways of running git, both through this module only:

* :func:`run` — the argv and environment every git invocation gets: a minimal
  environment (``PATH`` and locale, never the caller's secrets or ``GIT_*``), no
  system or global configuration, no terminal prompts, no network protocols, and
  every executing knob forced off on the command line (which outranks any
  configuration file). Used directly only on the user's own repository (``task
  pull``), whose ``.git/config`` a clone cannot plant.
* :func:`shadow` — for any tree that may be hostile (an agent's workspace, a
  workspace being uploaded): git runs against a private, temporary git directory
  that *we* wrote (our config, no hooks, a copy of the index and of the refs it
  needs) whose object store borrows the repository's objects read-only through
  ``objects/info/alternates``. The repository's own config, hooks and info files
  are never read by git, so filter drivers, fsmonitor and includes named there
  do not exist as far as git is concerned.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from parhelia.safeio import read_regular

GIT_TIMEOUT = 30
MAX_COPIED_BYTES = 256 << 20  # an index or packed-refs file larger than this is not copied

# Forced on the command line: a `-c` outranks every configuration file.
HARDEN: tuple[str, ...] = tuple(
    arg
    for key, value in (
        ("core.fsmonitor", "false"),
        ("core.hooksPath", "/dev/null"),
        ("core.pager", "cat"),
        ("core.askPass", ""),
        ("core.sshCommand", "false"),
        ("core.untrackedCache", "false"),
        ("credential.helper", ""),
        ("protocol.allow", "never"),
        ("diff.external", ""),
        ("diff.ignoreSubmodules", "all"),
        ("status.submoduleSummary", "false"),
        ("submodule.recurse", "false"),
        ("log.showSignature", "false"),
        ("commit.gpgSign", "false"),
        ("tag.gpgSign", "false"),
        ("gc.auto", "0"),
        ("maintenance.auto", "false"),
    )
    for arg in ("-c", f"{key}={value}")
)

# Harmless settings copied from a repository's own config into the shadow: they
# change how git compares files, never what it executes.
_COPIED_KEYS = ("core.filemode", "core.symlinks", "core.ignorecase",
                "core.precomposeunicode", "core.autocrlf", "core.eol")
_REF_RE = re.compile(r"^refs/(heads|remotes|tags)/[^\x00-\x20\x7f~^:?*\[\\]+$")


def env(home: str | None = None) -> dict[str, str]:
    """The whole environment of a git process (nothing inherited but PATH and TMPDIR)."""
    out = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LC_ALL": "C", "LANG": "C",
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_ATTR_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0",
        "GIT_PAGER": "cat", "PAGER": "cat", "GIT_ASKPASS": "", "SSH_ASKPASS": "",
        "GIT_NO_REPLACE_OBJECTS": "1", "GIT_ALLOW_PROTOCOL": "",
        "GIT_PROTOCOL_FROM_USER": "0",
    }
    if os.environ.get("TMPDIR"):
        out["TMPDIR"] = os.environ["TMPDIR"]
    # HOME and XDG_CONFIG_HOME decide where git looks for global attributes/ignore files.
    out["HOME"] = out["XDG_CONFIG_HOME"] = home or "/nonexistent"
    return out


def run(args: Sequence[str], *, cwd: Path | None = None, input: bytes | None = None,
        extra_env: Mapping[str, str] | None = None, home: str | None = None,
        timeout: float | None = None, stdin: IO[bytes] | None = None,
        stdout: IO[bytes] | None = None) -> subprocess.CompletedProcess[bytes]:
    """``git HARDEN... ARGS`` with :func:`env` (plus ``extra_env``: index file, identity).

    ``stdin``/``stdout`` stream from/to files instead of ``input``/captured bytes.
    ``timeout`` defaults to :data:`GIT_TIMEOUT`; past it ``subprocess.TimeoutExpired``
    is raised (a FIFO planted in a repository's object store blocks git's open)."""
    full_env = env(home)
    full_env.update(extra_env or {})
    return subprocess.run(["git", *HARDEN, *args], cwd=cwd, input=input, stdin=stdin,
                          stdout=stdout if stdout is not None else subprocess.PIPE,
                          stderr=subprocess.PIPE, env=full_env,
                          timeout=GIT_TIMEOUT if timeout is None else timeout, check=False)


def read_config(path: Path, key: str, *, as_path: bool = False) -> str | None:
    """One value from one config file (no includes: git only reads the bytes we read).

    The file is read here, and only when it is a regular file of sane size (a symlink
    to one is followed: ~/.gitconfig often is one): a FIFO or device planted as a
    repository's ``config`` would block or flood git."""
    data = _read_config_bytes(path)
    if data is None:
        return None
    args = ["config", "--file", "-", "--no-includes"]
    if as_path:
        args.append("--path")
    proc = run([*args, "--get", key], input=data)
    value = proc.stdout.decode(errors="replace").strip()
    return value if proc.returncode == 0 and value else None


# -- the shadow git directory ---------------------------------------------------------


@dataclass(frozen=True)
class RepoFiles:
    """Where a work tree's repository keeps what the shadow copies (never read by git)."""

    git_dir: Path
    common_dir: Path


def locate(root: Path) -> RepoFiles | None:
    """``root/.git`` as a directory, or a ``gitdir:`` file (worktrees, submodules)."""
    dot = root / ".git"
    try:
        st = os.lstat(dot)
    except OSError:
        return None
    if stat.S_ISDIR(st.st_mode):
        git_dir = dot
    elif stat.S_ISREG(st.st_mode):
        text = _read_small(dot, 4096)
        if text is None or not text.startswith(b"gitdir: "):
            return None
        git_dir = root / os.fsdecode(text[len(b"gitdir: "):].strip())
    else:
        return None
    common = git_dir
    pointer = _read_small(git_dir / "commondir", 4096)
    if pointer is not None:
        common = git_dir / os.fsdecode(pointer.strip())
    if not (common / "objects").is_dir():
        return None
    return RepoFiles(git_dir, common)


MAX_CONFIG_BYTES = 1 << 20


def _read_config_bytes(path: Path) -> bytes | None:
    # Symlinks followed: ~/.gitconfig is often one; still a regular file only.
    got = read_regular(path, MAX_CONFIG_BYTES, follow_symlinks=True)
    return got[0] if got is not None else None


def _read_small(path: Path, limit: int = MAX_COPIED_BYTES) -> bytes | None:
    """A regular file's bytes (no FIFO, device or symlink target is ever opened)."""
    got = read_regular(path, limit)
    return got[0] if got is not None else None


def _copy(src: Path, dst: Path) -> bool:
    """Copy a regular file, keeping its mtime: git's racy-entry check compares index
    entries with the index file's mtime, and a newer copy would hide same-size edits."""
    got = read_regular(src, MAX_COPIED_BYTES)
    if got is None:
        return False
    data, st = got
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
    return True


@dataclass(frozen=True)
class Shadow:
    """A private git directory over a work tree; :meth:`run` runs git there."""

    git_dir: Path
    work_tree: Path
    home: Path
    branch: str | None  # the branch HEAD names (validated), None when detached or unreadable

    def run(self, *args: str, input: bytes | None = None, timeout: float | None = None,
            stdout: IO[bytes] | None = None, extra_env: Mapping[str, str] | None = None
            ) -> subprocess.CompletedProcess[bytes]:
        return run([f"--git-dir={self.git_dir}", f"--work-tree={self.work_tree}", *args],
                   cwd=self.work_tree, home=str(self.home), input=input, timeout=timeout,
                   stdout=stdout, extra_env=extra_env)


def _head_ref(files: RepoFiles) -> tuple[str | None, bool]:
    """(ref HEAD points to, or its sha; whether HEAD is symbolic)."""
    raw = _read_small(files.git_dir / "HEAD", 4096)
    if raw is None:
        return None, False
    text = raw.decode(errors="replace").strip()
    if text.startswith("ref: "):
        ref = text[5:].strip()
        return (ref, True) if _REF_RE.match(ref) and ".." not in ref and "/." not in ref \
            else (None, True)
    return (text, False) if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", text) else (None, False)


@contextlib.contextmanager
def shadow(root: Path, *, excludes_file: Path | None = None) -> Iterator[Shadow | None]:
    """A :class:`Shadow` over ``root`` (``None`` when ``root`` has no repository).

    Copied from the repository: HEAD (validated), the ref it names, ``packed-refs``,
    the stash ref and its reflog, ``shallow``, ``info/exclude`` and the index (so
    status compares against the user's staged state). Nothing else is read.
    """
    files = locate(root)
    if files is None:
        yield None
        return
    tmp = Path(tempfile.mkdtemp(prefix="parhelia-git-"))
    try:
        git_dir, home = tmp / "git", tmp / "home"
        home.mkdir()
        fmt = read_config(files.common_dir / "config", "extensions.objectformat")
        init = run(["init", "-q", "--bare", "--template=",
                    f"--object-format={'sha256' if fmt == 'sha256' else 'sha1'}",
                    str(git_dir)], home=str(home))
        if init.returncode != 0:
            yield None
            return
        config = git_dir / "config"
        for key in _COPIED_KEYS:
            value = read_config(files.common_dir / "config", key)
            if value is not None:
                run(["config", "--file", str(config), key, value])
        run(["config", "--file", str(config), "core.bare", "false"])
        if excludes_file is not None:
            run(["config", "--file", str(config), "core.excludesFile", str(excludes_file)])
        alternates = git_dir / "objects" / "info" / "alternates"
        alternates.parent.mkdir(parents=True, exist_ok=True)
        alternates.write_text(str((files.common_dir / "objects").resolve()) + "\n")
        for rel in ("packed-refs", "shallow", "info/exclude", "refs/stash", "logs/refs/stash"):
            _copy(files.common_dir / rel, git_dir / rel)
        _copy(files.git_dir / "index", git_dir / "index")
        ref, symbolic = _head_ref(files)
        branch = None
        if ref is not None and symbolic:
            _copy(files.common_dir / ref, git_dir / ref)
            (git_dir / "HEAD").write_text(f"ref: {ref}\n")
            branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
        elif ref is not None:
            (git_dir / "HEAD").write_text(ref + "\n")
        else:  # unreadable: an unborn branch no ref file can back
            (git_dir / "HEAD").write_text("ref: refs/heads/.parhelia-unreadable-head\n")
        yield Shadow(git_dir, root, home, branch)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def user_excludes_file() -> Path | None:
    """The user's own global ignore file (``core.excludesFile`` of ~/.gitconfig or the
    XDG default), for uploads from the user's repository."""
    home = Path(os.environ.get("HOME") or "~").expanduser()
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    for cfg in (xdg / "git" / "config", home / ".gitconfig"):
        if cfg.is_file():
            value = read_config(cfg, "core.excludesFile")
            if value:
                return Path(value.replace("~", str(home), 1) if value.startswith("~")
                            else value)
    default = xdg / "git" / "ignore"
    return default if default.is_file() else None


_REF_BAD_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def ref_problem(ref: str) -> str | None:
    """Why ``ref`` is not a usable branch, tag or commit name (``git check-ref-format``'s
    rules, and never an option), or ``None`` when it is."""
    if not ref:
        return "is empty"
    if ref.startswith("-"):
        return "must not start with '-'"
    if _REF_BAD_CHARS.search(ref):
        return "must not contain spaces, control characters or any of ~ ^ : ? * [ \\"
    if ".." in ref or "@{" in ref or "//" in ref or ref == "@":
        return "must not contain '..', '@{' or '//'"
    if ref.endswith(("/", ".", ".lock")) or ref.startswith("/"):
        return "must not start with '/' or end with '/', '.' or '.lock'"
    if any(part.startswith(".") for part in ref.split("/")):
        return "no part of it may start with '.'"
    return None
