"""The worker's side of a task's environment: caches, setup and start commands.

:mod:`parhelia.environment` says what the spec's ``environment`` block holds; this
module does it, in the workspace, before the agent starts:

- **caches**: each ``cache_dirs`` entry (``~/.cache/uv``) becomes a link into
  ``cache_root`` (a Modal volume kept per repository), so the second task's setup finds
  what the first one downloaded;
- **setup** (once per prepared workspace: a marker beside it records the environment
  hash it was prepared for) with the setup secrets in its environment;
- **start** (each incarnation, after the restore), without them.

Every command runs as an argv (``sh -c LINE`` for a command line, as CI files and
devcontainers do), in the workspace, with its own process group, bounded by the
setup timeout. Its output goes to ``logs/<container>/setup.log`` on the volume with
the setup secrets' values and anything that looks like a credential replaced by
``***``; each step is an event (``setup_step``), a failure ``setup_failed`` with the
step's last lines (E606).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from modal_worker.channel import Channel, send
from parhelia import records
from parhelia.checkpoint import Manifest
from parhelia.credentials import CREDENTIAL_VARS, GITHUB_TOKEN_VARS
from parhelia.environment import (
    FAILURE_TAIL_LINES,
    PREPARED_SUFFIX,
    Step,
    WorkerEnvironment,
    cache_slug,
)
from parhelia.redact import redact, shorten

log = logging.getLogger(__name__)

KILL_GRACE_SECONDS = 5.0
LINE_READ_BYTES = 1 << 20
"""A longer output line is read this far, the rest of it dropped (memory stays bounded)."""
LINE_KEEP_CHARS = 16_000
"""What the log keeps of a line. Far below :data:`LINE_READ_BYTES`: a line is scrubbed
whole before it is cut, so a cut never leaves part of a secret's value behind."""
LOG_MAX_BYTES = 64 << 20
"""What a worker writes to the setup log at most; past it the output is still read (and its
last lines kept for a failure) but not written."""
AGENT_ONLY_PREFIXES = ("ANTHROPIC_", "CLAUDE_CODE_", "CLAUDE_CONFIG_DIR")
"""What setup and start commands never get: the model credential and the agent's own
settings (a repository's command has no business with them)."""
DAEMON_ONLY = frozenset({"PARHELIA_HOME", "PARHELIA_SOCKET"})
"""Pointers to the daemon's own files: never given to a repository's commands."""


class SetupFailed(Exception):
    """A setup or start command failed; ``message`` ends with its last lines."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class PhaseResult:
    steps: int
    duration_ms: int


class Scrubber:
    """Replaces the setup secrets' values (and known credential shapes) in text."""

    def __init__(self, secrets: Sequence[str]) -> None:
        # longest first, so a value containing another is replaced whole
        self._values = sorted({v for v in secrets if len(v) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, "***")
        return redact(text)


PLAIN_NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
    "PWD", "HOSTNAME", "SHLVL", "OLDPWD", "PYTHONUNBUFFERED", "PYTHONPATH", "IS_SANDBOX",
    "DISABLE_AUTOUPDATER", "VIRTUAL_ENV", "TERMINFO_DIRS", "GPG_KEY", "PYTHON_VERSION",
    "PYTHON_SHA256", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES", "CUDA_VERSION",
})
"""Variables whose values are never secrets (a setup sandbox scrubs every other one)."""


def unknown_values(base: Mapping[str, str], environment: WorkerEnvironment) -> list[str]:
    """In a setup sandbox, whose Modal secrets may hold any variables: the values of
    every variable that is neither plain nor the environment's own ``env`` (scrubbed
    from the setup's output: a little too much rather than a secret)."""
    return [v for k, v in base.items() if k not in PLAIN_NAMES and k not in environment.env
            and not k.startswith(("LC_", "MODAL_", "FAKE_MODAL_")) and len(v) >= 8]


def command_environ(base: Mapping[str, str], environment: WorkerEnvironment, *,
                    secrets: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a setup (``secrets`` given) or start command: the worker's own
    allow-listed variables without the agent's credential and settings, the
    environment's ``env``, and the setup secrets for setup only."""
    env = {k: v for k, v in base.items()
           if k not in CREDENTIAL_VARS and k not in GITHUB_TOKEN_VARS
           and k not in DAEMON_ONLY and not k.startswith(AGENT_ONLY_PREFIXES)
           and k not in environment.setup_secrets}
    env.update(environment.env)
    if secrets:
        env.update(secrets)
    return env


def secret_values(base: Mapping[str, str], environment: WorkerEnvironment) -> dict[str, str]:
    """The setup secrets the worker was given (absent names are simply not set)."""
    return {n: base[n] for n in environment.setup_secrets if base.get(n)}


def without_secrets(base: Mapping[str, str], environment: WorkerEnvironment) -> dict[str, str]:
    """``base`` without the setup secrets: what start commands and the agent build on."""
    return {k: v for k, v in base.items() if k not in environment.setup_secrets}


# -- the prepared-workspace marker ------------------------------------------------------


def marker_path(workspace: Path) -> Path:
    return workspace.parent / f".{workspace.name}{PREPARED_SUFFIX}"


def read_marker(workspace: Path) -> dict[str, str]:
    """What the marker beside ``workspace`` says (``hash``, ``tree``); {} when absent or
    unreadable (the workspace is then taken as not prepared)."""
    path = marker_path(workspace)
    try:
        if path.is_symlink() or path.stat().st_size > 4096:
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def tree_digest(manifest: Manifest) -> str:
    """A digest of a checkpoint's tree (paths, kinds, modes, contents): two checkpoints
    with the same files have the same one, whatever their sessions."""
    entries = sorted((path, entry.to_dict(path)) for path, entry in manifest.tree.items())
    data = json.dumps([e for _, e in entries], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()


def write_marker(workspace: Path, environment_hash: str, tree: str) -> None:
    path = marker_path(workspace)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"hash": environment_hash, "tree": tree}), encoding="utf-8")
    os.replace(tmp, path)


def clear_marker(workspace: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        marker_path(workspace).unlink()


# -- caches -------------------------------------------------------------------------------


def link_caches(environment: WorkerEnvironment, home: Path) -> list[str]:
    """Make each cache directory a link into ``cache_root`` (created as needed); returns
    the directories linked. A directory that already holds files is kept as it is (the
    image put something there) and not cached."""
    if not environment.cache_root:
        return []
    root = Path(environment.cache_root)
    linked = []
    for entry in environment.cache_dirs:
        path = home / entry[2:] if entry.startswith("~/") else Path(entry)
        target = root / cache_slug(entry)
        try:
            target.mkdir(parents=True, exist_ok=True)
            if path.is_symlink():
                if os.readlink(path) == str(target):
                    linked.append(entry)
                    continue
                path.unlink()
            elif path.is_dir():
                if any(path.iterdir()):
                    log.info("cache %s already holds files; not linked", entry)
                    continue
                path.rmdir()
            elif path.exists():
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.symlink_to(target, target_is_directory=True)
            linked.append(entry)
        except OSError as exc:
            log.warning("cache %s not linked: %s", entry, exc)
    return linked


# -- commands -----------------------------------------------------------------------------


class PhaseRunner:
    """Runs one phase's steps (setup or start), reporting each on the channel."""

    def __init__(self, channel: Channel, *, cwd: Path, log_path: Path, scrub: Scrubber,
                 deadline: float, after_step: Callable[[], None] = lambda: None,
                 wrap: Callable[[list[str]], list[str]] = lambda argv: argv) -> None:
        self.channel = channel
        self.wrap = wrap
        """A step's argv as it runs (a contained agent's steps run in its container)."""
        self.after_step = after_step
        self.cwd = cwd
        self.log_path = log_path
        self.scrub = scrub
        self.deadline = deadline
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopped = False
        try:
            self.logged = log_path.stat().st_size  # earlier phases' and incarnations'
        except OSError:
            self.logged = 0

    def stop(self) -> None:
        """From a signal handler's thread: end the running step (its process group)."""
        self.stopped = True
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)

    def run(self, phase: str, steps: Sequence[Step], env: Mapping[str, str]) -> PhaseResult:
        started = time.monotonic()
        send(self.channel, records.SetupStarted(phase=phase, steps=len(steps)))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8", errors="replace") as out:
            for index, step in enumerate(steps, start=1):
                self._step(phase, index, step, env, out)
        duration = int((time.monotonic() - started) * 1000)
        send(self.channel, records.SetupCompleted(phase=phase, steps=len(steps),
                                                  duration_ms=duration))
        return PhaseResult(len(steps), duration)

    def _step(self, phase: str, index: int, step: Step, env: Mapping[str, str],
              out: IO[str]) -> None:
        shown = shorten(self.scrub(step.text()), 200)
        out.write(f"== {phase} {index}: {step.name}: {shown}\n")
        out.flush()
        tail: collections.deque[str] = collections.deque(maxlen=FAILURE_TAIL_LINES)
        started = time.monotonic()
        code: int | None
        timed_out = False
        try:
            self.proc = subprocess.Popen(
                self.wrap(list(step.command())), cwd=self.cwd, env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            code = 127
            line = f"cannot run {step.command()[0]!r}: {exc.strerror}"
            tail.append(line)
            out.write(line + "\n")
        else:
            timer = threading.Timer(max(0.0, self.deadline - time.monotonic()), self._expire)
            timer.daemon = True
            timer.start()
            try:
                assert self.proc.stdout is not None
                for line in self._lines(self.proc.stdout):
                    tail.append(line)
                    self._write(out, line)
                code = self.proc.wait()
            finally:
                timer.cancel()
            timed_out = time.monotonic() >= self.deadline
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # what it left running
            self.proc = None
        duration = int((time.monotonic() - started) * 1000)
        out.write(f"== exit {code} after {duration / 1000:.1f} s\n")
        out.flush()
        self.channel.emit("setup_step", {"phase": phase, "index": index, "name": step.name,
                                         "command": shown, "exit_code": code,
                                         "duration_ms": duration})
        self.after_step()
        if code == 0 and not self.stopped:
            return
        if self.stopped:
            why = "was stopped"
        elif timed_out:
            why = "ran past the setup timeout"
        else:
            why = f"exited with {code}"
        send(self.channel, records.SetupFailed(
            phase=phase, index=index, name=step.name, command=shown, exit_code=code,
            timed_out=timed_out, duration_ms=duration, tail=list(tail)))
        last = "\n".join(tail) if tail else "(no output)"
        raise SetupFailed(f"{phase} command {index} ({step.name}: {shown}) {why}; its last "
                          f"lines:\n{last}")

    def _lines(self, stream: IO[bytes]) -> Iterator[str]:
        """The step's output lines, scrubbed, each at most :data:`LINE_KEEP_CHARS`."""
        while raw := stream.readline(LINE_READ_BYTES):
            cut = not raw.endswith(b"\n") and len(raw) == LINE_READ_BYTES
            while cut and (rest := stream.readline(LINE_READ_BYTES)):
                if rest.endswith(b"\n"):
                    break  # the rest of an overlong line: dropped
            line = self.scrub(raw.decode(errors="replace").rstrip("\n"))
            if cut or len(line) > LINE_KEEP_CHARS:
                line = line[:LINE_KEEP_CHARS] + " [line cut]"
            yield line

    def _write(self, out: IO[str], line: str) -> None:
        """One line to the log, until the log holds :data:`LOG_MAX_BYTES`."""
        if self.logged > LOG_MAX_BYTES:
            return
        self.logged += len(line.encode()) + 1
        if self.logged > LOG_MAX_BYTES:
            line = f"== the setup log is full ({LOG_MAX_BYTES >> 20} MiB): later output " \
                   "is not kept (a failure still shows its last lines)"
        out.write(line + "\n")
        out.flush()

    def _expire(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(KILL_GRACE_SECONDS)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
