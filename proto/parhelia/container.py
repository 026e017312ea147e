"""The local worker's agent, contained with bubblewrap (docs/adr/0030-local-sandbox.md).

In the contract package: the worker makes the container, ``parhelia doctor`` (the daemon)
tries the same one, and the shim inside runs as ``python -m parhelia.container exec``.

A local worker runs Claude Code on a repository nobody vetted, as the user. The agent
and everything it starts run in a ``bwrap`` container (bubblewrap 0.8, Debian package
``bubblewrap``):

- the whole filesystem read-only, then **hidden** (an empty tmpfs over each): the user's
  home, ``PARHELIA_HOME`` and the daemon's config, state, data and socket directories
  (the spec's ``sandbox.hide``), the runtime dir, and ``/tmp`` (private: other tasks'
  tmux sockets live there);
- **writable**: the task's workspace, its agent config dir and its hook dir, bound at the
  same paths (the transcript's project dir is keyed by the workspace path);
- **readable again** below a hidden directory: what the agent needs to run (the Python
  that runs Parhelia's hooks and the ``modal_worker``/``parhelia`` packages, the agent
  command's installation, its interpreter) and the user's ``sandbox.read_only`` list;
- its own PID namespace (``--unshare-pid``, a fresh ``/proc``): no other process of the
  machine -- the worker that holds the credential, the daemon, other tasks -- is visible;
- ``--die-with-parent``: the container ends with the process that started it.

The worker itself stays outside: it holds the model credential (the agent gets a
placeholder, :mod:`modal_worker.keyproxy`), writes the volume and reads what the agent
wrote without following a symlink below the workspace or config dir.

Signals: the ``bwrap`` process that starts the container ignores SIGTERM, SIGHUP and
SIGINT (set before it is executed), so a signal sent to the agent's process group
reaches the agent inside (same group) instead of killing ``bwrap`` and, through
``--die-with-parent``, the agent with SIGKILL before it could save its state. Inside,
:func:`main` (``python -m parhelia.container exec -- ARGV``) restores the default
dispositions and executes the agent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from parhelia import sandbox as policy

BWRAP = "bwrap"
PROBE_TIMEOUT_SECONDS = 20.0
TERMINATION_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
PACKAGE_MARKERS = ("package.json",)
"""A file that marks the root of an installed package (npm): the agent command's whole
package is made readable, not only its entry point."""
MAX_PACKAGE_DEPTH = 4


@dataclass(frozen=True)
class Container:
    """One agent's bubblewrap container: what ``argv`` wraps a command in."""

    bwrap: str
    hidden: tuple[str, ...]
    read_only: tuple[str, ...]
    writable: tuple[str, ...]
    workdir: str

    def argv(self, command: Sequence[str]) -> list[str]:
        """``command`` run in the container, through :func:`main`'s reset of signals."""
        out = [self.bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc",
               "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        for path in self.hidden:
            out += ["--tmpfs", path]
        for path in self.read_only:
            out += ["--ro-bind", path, path]
        for path in self.writable:
            out += ["--bind", path, path]
        out += ["--chdir", self.workdir, "--", sys.executable, "-m", "parhelia.container",
                "exec", "--", *command]
        return out

    def with_tools(self, environ: Mapping[str, str]) -> Container:
        """This container for an environment's setup and start commands: the directories
        on ``PATH`` that it hides (a user's ``~/.local/bin``, a version manager's shims)
        bound back read-only, so the tools the commands name run; nothing else of what it
        hides, and nothing more is writable."""
        found = [_real(d) for d in environ.get("PATH", "").split(os.pathsep) if d]
        tools = [d for d in found if os.path.isdir(d) and _under_any(d, self.hidden)
                 and not _under_any(d, self.writable)]
        read_only = _by_depth(_outermost([*self.read_only, *tools]))
        return dataclasses.replace(self, read_only=tuple(read_only))


def plan(spec: policy.SandboxSpec, *, workspace: Path, writable: Iterable[Path],
         command: Sequence[str], environ: Mapping[str, str]) -> Container | str:
    """The container for an agent of ``command`` (resolved) working in ``workspace``, or
    why none can be made (no ``bwrap``)."""
    bwrap = shutil.which(BWRAP, path=environ.get("PATH", os.defpath)) or \
        shutil.which(BWRAP)
    if bwrap is None:
        return (f"{BWRAP} is not installed (Debian/Ubuntu: apt-get install bubblewrap; "
                "Fedora: dnf install bubblewrap)")
    home = environ.get("HOME") or str(Path.home())
    hidden = {"/tmp", home, *spec.hide}
    for name in ("XDG_RUNTIME_DIR", "TMPDIR"):
        if environ.get(name):
            hidden.add(environ[name])
    hidden_paths = _outermost(p for p in (_real(x) for x in hidden if x)
                              if p != "/" and os.path.isdir(p))
    for path in (workspace, *writable):
        if os.path.islink(path) or not os.path.isdir(path):
            # never bind what a symlink points at (an earlier, uncontained agent may have
            # turned its workspace into a link to the user's home)
            return f"{path} is not a directory of its own"
    rw = [_real(p) for p in (workspace, *writable)]
    needed = [*_runtime_paths(), *_command_paths(command, environ), *spec.read_only]
    ro = [p for p in (_real(x) for x in needed)
          if os.path.exists(p) and _under_any(p, hidden_paths) and p not in rw]
    return Container(bwrap=bwrap, hidden=tuple(_by_depth(hidden_paths)),
                     read_only=tuple(_by_depth(_outermost(ro))),
                     writable=tuple(_by_depth(rw)), workdir=_real(workspace))


def probe(container: Container) -> str | None:
    """Why the container cannot be started here (None when it can): ``bwrap`` is run
    once with the container's mounts and ``true``."""
    try:
        proc = subprocess.run(container.argv(["true"]), capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=PROBE_TIMEOUT_SECONDS,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{BWRAP} could not run: {type(exc).__name__}"
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        return f"{BWRAP} failed: {lines[-1] if lines else f'exit {proc.returncode}'}"[:300]
    return None


def contained(argv: Sequence[str]) -> bool:
    """Whether ``argv`` starts a container (its first process must ignore termination
    signals: :func:`ignore_termination`)."""
    return bool(argv) and os.path.basename(argv[0]) == BWRAP


def ignore_termination() -> None:  # pragma: no cover - runs in the child before exec
    """For the ``bwrap`` process only: let termination signals pass it by (module doc)."""
    for signum in TERMINATION_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def signal_tree(pid: int, signum: int) -> None:
    """Send ``signum`` to ``pid`` and every process below it (Linux ``/proc``): how a
    process that is not in the container's process group reaches the agent in it."""
    for target in [pid, *descendants(pid)]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(target, signum)


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as fh:
                    stat = fh.read()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2:].split()
            children.setdefault(int(fields[1]), []).append(int(name))
    out: list[int] = []
    todo = list(children.get(pid, ()))
    while todo:
        child = todo.pop()
        out.append(child)
        todo.extend(children.get(child, ()))
    return out


# -- what the container needs readable ---------------------------------------------------


def _runtime_paths() -> list[str]:
    """The Python that runs Parhelia's hooks and this shim, and the packages it imports
    (``modal_worker`` found, not imported: the daemon's doctor imports no worker)."""
    import parhelia

    worker = importlib.util.find_spec("modal_worker")
    packages = [str(Path(parhelia.__file__).parent)]
    if worker is not None and worker.origin:
        packages.append(str(Path(worker.origin).parent))
    return [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.realpath(sys.executable),
            *packages]


def _command_paths(command: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """The agent command's file and the directory it is named from, its real file, the
    package it belongs to, and the interpreter of a script (``#!/usr/bin/env node``)."""
    if not command:
        return []
    program = command[0]
    # The directory the program is named from too: a `bin/claude` that is a symlink
    # (npm's `.bin`, `~/.local/bin`) must be found at the path the command names.
    out = [program, str(Path(os.path.abspath(program)).parent), os.path.realpath(program)]
    real = Path(os.path.realpath(program))
    out.append(str(real.parent))
    for parent in list(real.parents)[:MAX_PACKAGE_DEPTH]:
        if any((parent / marker).is_file() for marker in PACKAGE_MARKERS):
            out.append(str(parent))
            break
    interpreter = _interpreter(real, environ)
    if interpreter is not None:
        out += [interpreter, os.path.realpath(interpreter),
                str(Path(os.path.realpath(interpreter)).parent.parent)]
    return out


def _interpreter(script: Path, environ: Mapping[str, str]) -> str | None:
    try:
        with open(script, "rb") as fh:
            first = fh.readline(256)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode(errors="replace").split()
    if not words:
        return None
    name = words[1] if os.path.basename(words[0]) == "env" and len(words) > 1 else words[0]
    return shutil.which(name, path=environ.get("PATH", os.defpath))


# -- path arithmetic ---------------------------------------------------------------------


def _real(path: str | Path) -> str:
    return os.path.realpath(os.path.expanduser(str(path)))


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _under_any(path: str, roots: Iterable[str]) -> bool:
    return any(_under(path, root) for root in roots)


def _outermost(paths: Iterable[str]) -> list[str]:
    """The paths not inside another of them."""
    unique = sorted(set(paths), key=len)
    out: list[str] = []
    for path in unique:
        if not _under_any(path, out):
            out.append(path)
    return out


def _by_depth(paths: Iterable[str]) -> list[str]:
    """Mount order: a directory before what is mounted inside it."""
    return sorted(paths, key=lambda p: (p.count("/"), p))


# -- inside the container ----------------------------------------------------------------


def main(argv: list[str]) -> int:
    """``exec -- ARGV``: restore the termination signals' default dispositions (the
    ``bwrap`` that started the container ignores them) and execute ``ARGV``."""
    if argv[:2] != ["exec", "--"] or len(argv) < 3:
        print("usage: python -m parhelia.container exec -- ARGV", file=sys.stderr)
        return 2
    for signum in TERMINATION_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    try:
        os.execvp(argv[2], argv[2:])  # noqa: S606 - an argv, never a shell
    except OSError as exc:
        print(f"sandbox: cannot run {argv[2]}: {exc.strerror}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
