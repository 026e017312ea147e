"""The interactive Claude Code TUI in tmux, on a private socket (ADR 0020).

The worker runs ``claude`` (no ``-p``) as the only pane of a tmux session whose server
listens on a socket in a private directory (0700, owned by the worker's user, checked):
another local user can neither connect nor replace it. The server is started with an
explicit configuration file written here (``-f``), so no ``~/.tmux.conf``,
``/etc/tmux.conf`` or file of a hostile workspace is ever read, and the agent is the
pane's command given as an argv (tmux executes a multi-word command directly, without a
shell). The task's prompt reaches the TUI as its first message through a tmux paste
buffer loaded from standard input: never a shell, never a command line.

The pane's process is a guard (``python -m modal_worker.tui guard WORKER_PID -- ARGV``)
that runs the agent as its child and ends it, and the tmux server, when the worker is gone:
tmux daemonises its server out of the worker's process group, so a worker killed with
SIGKILL would otherwise leave the TUI running beside the worker its recovery starts.

State is read with one ``display-message`` per poll: whether the pane (the agent) is
dead and its exit status (the guard's record of it when tmux has none), how many
clients are attached, and two counters bumped by tmux hooks at every attach and detach
(a detach between two polls is still seen).
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parhelia import container
from parhelia.checkpoint.cas import pid_alive
from parhelia.errors import ParheliaError
from parhelia.redact import redact
from parhelia.tuisocket import SESSION_NAME, unsafe_dir

log = logging.getLogger(__name__)

CONFIG_NAME = "tmux.conf"
EXIT_NAME = "agent-exit"
"""The guard's record of the agent's exit status, beside the socket: tmux 3.3 can miss
the SIGCHLD of a pane that ends within moments of the server's start and then never
learns the status (the guard stays a zombie; seen under load), so the worker reads it
here."""
WIDTH, HEIGHT = 200, 50
"""The window's size until a client attaches (then it follows the latest client)."""
READY_MARKER = "\u276f"
"""The TUI's input prompt glyph (Claude Code 2.1.332): once a line holds it alone (the
empty input box; a dialog's choices follow it with text), the TUI reads input with
bracketed paste enabled."""
READY_TIMEOUT_SECONDS = 90.0
STATE_CACHE_SECONDS = 0.5
TAIL_POLL_SECONDS = 0.25
SCREEN_TAIL_LINES = 20
TMUX_TIMEOUT_SECONDS = 10.0

CONFIG = """\
# Written by Parhelia: the only configuration this tmux server reads (-f).
set -s escape-time 10
set -g history-limit 20000
set -g remain-on-exit on
set -g destroy-unattached off
set -g window-size latest
setw -g aggressive-resize on
set -g status-left "[parhelia] "
set -g status-right "Ctrl-B D detaches"
set -g status-right-length 40
set -g @parhelia_attaches 0
set -g @parhelia_detaches 0
set-hook -g client-attached 'set -gF @parhelia_attaches "#{e|+:#{@parhelia_attaches},1}"'
set-hook -g client-detached 'set -gF @parhelia_detaches "#{e|+:#{@parhelia_detaches},1}"'
"""
_STATE_FORMAT = ("#{pane_dead}|#{pane_dead_status}|#{pane_dead_signal}|#{pane_pid}|"
                 "#{session_attached}|#{@parhelia_attaches}|#{@parhelia_detaches}")
# tmux marks a pane dead when its terminal closes and learns the exit status when it reaps
# the process: in between, the pane is dead with neither a status nor a signal. That state is
# read as still running for this long (a tmux older than 3.3 never shows a signal: after it,
# the pane is dead with no known status).
STATUS_SETTLE_SECONDS = 2.0


def private_dir(path: Path) -> Path:
    """Create ``path`` and its parent 0700 and check both (E601 when one is not private:
    another user's or a symlink planted in a shared /tmp is refused, never used)."""
    for d in (path.parent, path):
        with contextlib.suppress(FileExistsError):
            os.mkdir(d, 0o700)
        why = unsafe_dir(d)
        if why is not None:
            raise ParheliaError("E601", f"the tmux socket directory is not private: {why}")
    return path


def tmux_binary(path_env: str | None = None) -> str:
    found = shutil.which("tmux", path=path_env or os.environ.get("PATH", os.defpath))
    if found is None:
        raise ParheliaError("E500", "tmux is not installed where the worker runs; the "
                                    "interactive TUI needs it (apt-get install tmux)")
    return found


@dataclass(frozen=True)
class TuiState:
    alive: bool
    exit_status: int | None
    pid: int | None
    clients: int
    attaches: int
    detaches: int


class Tmux:
    """One private tmux server with one session running the agent."""

    def __init__(self, socket: str, tmux: str) -> None:
        self.socket = socket
        self.dir = Path(socket).parent
        self.tmux = tmux
        self.config = self.dir / CONFIG_NAME
        self.exit_record = self.dir / EXIT_NAME
        self._last = TuiState(True, None, None, 0, 0, 0)
        self._unreaped_since: float | None = None

    def _argv(self, *args: str) -> list[str]:
        return [self.tmux, "-S", self.socket, "-f", str(self.config), *args]

    def run(self, *args: str, stdin: bytes | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(self._argv(*args), input=stdin, capture_output=True,
                              timeout=TMUX_TIMEOUT_SECONDS, check=False, env=env,
                              stdin=None if stdin is not None else subprocess.DEVNULL)

    def start(self, argv: list[str], *, cwd: Path, env: dict[str, str]) -> None:
        """Start the server (with ``env`` as the agent's environment) and the agent."""
        if len(argv) < 2:
            raise ValueError("the agent's argv needs two words or more (one would be run "
                             "through a shell)")
        private_dir(self.dir)
        self._unreaped_since = None
        for stale in (self.socket, self.exit_record):  # of a previous server of this container
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale)
        fd = os.open(self.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(CONFIG)
        proc = self.run("new-session", "-d", "-s", SESSION_NAME, "-x", str(WIDTH),
                        "-y", str(HEIGHT), "-c", str(cwd), "--", *argv, env=env)
        if proc.returncode != 0:
            raise ParheliaError("E500", "tmux could not start the interactive agent: "
                                + proc.stderr.decode(errors="replace").strip()[-300:])

    def state(self) -> TuiState:
        """The pane's and clients' state; no server: dead. A tmux that does not answer in
        time (a loaded machine) says nothing new: the last state read stands."""
        try:
            proc = self.run("display-message", "-p", "-t", SESSION_NAME, _STATE_FORMAT)
        except subprocess.TimeoutExpired:
            return self._last
        parts = proc.stdout.decode(errors="replace").strip().split("|")
        if proc.returncode != 0 or len(parts) != 7:
            self._last = TuiState(False, None, None, 0, 0, 0)
            return self._last
        dead, status, signum, pid, clients, attaches, detaches = parts
        exit_status = _int(status)
        if exit_status is None and _int(signum) is not None:
            exit_status = 128 + (_int(signum) or 0)  # the shell's convention
        alive = dead != "1"
        if not alive and exit_status is None:
            exit_status = self._recorded_exit()
        if not alive and exit_status is None:
            now = time.monotonic()
            self._unreaped_since = self._unreaped_since or now
            alive = now - self._unreaped_since < STATUS_SETTLE_SECONDS
        self._last = TuiState(alive=alive, exit_status=exit_status, pid=_int(pid),
                              clients=_int(clients) or 0, attaches=_int(attaches) or 0,
                              detaches=_int(detaches) or 0)
        return self._last

    def _recorded_exit(self) -> int | None:
        """The status the guard recorded (None: none, or not a number)."""
        try:
            fd = os.open(self.exit_record, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as fh:
            return _int(fh.read(32).decode(errors="replace"))

    def screen(self) -> str:
        try:
            proc = self.run("capture-pane", "-p", "-t", SESSION_NAME)
        except subprocess.TimeoutExpired:
            return ""
        return proc.stdout.decode(errors="replace") if proc.returncode == 0 else ""

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> bool:
        """Wait until the TUI shows its input prompt (False: it died or never did)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(line.strip() == READY_MARKER for line in self.screen().splitlines()):
                return True
            if not self.state().alive:
                return False
            time.sleep(0.2)
        return False

    def type_message(self, text: str) -> None:
        """Send ``text`` as one message: pasted whole (bracketed paste: its newlines stay
        in the message), then Enter."""
        buffer = "parhelia-message"
        try:
            loaded = self.run("load-buffer", "-b", buffer, "-", stdin=text.encode())
            if loaded.returncode != 0:
                raise ParheliaError("E500", "tmux could not load the message")
            self.run("paste-buffer", "-p", "-d", "-b", buffer, "-t", SESSION_NAME)
            time.sleep(0.3)  # the TUI takes the paste in before the Enter that sends it
            self.run("send-keys", "-t", SESSION_NAME, "Enter")
        except subprocess.TimeoutExpired:
            raise ParheliaError("E500", "tmux did not answer while the first message was "
                                        "typed") from None

    def stop(self, grace: float) -> bool:
        """SIGTERM the agent (it writes its transcript's last lines), SIGKILL it after
        ``grace`` seconds; then the server goes, and its clients with it. True when the
        agent had to be killed."""
        killed = False
        st = self.state()
        if st.alive and st.pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(st.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and self.state().alive:
                time.sleep(0.1)
            if self.state().alive:
                killed = True
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(st.pid, signal.SIGKILL)  # the guard and the agent
        self.kill_server()
        return killed

    def kill_server(self) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            self.run("kill-server")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)


def _int(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.lstrip("-").isdigit() else None


class TranscriptTail:
    """New complete lines of the session's transcript, as JSON objects: the TUI's telemetry
    (it writes no stream-json). Starts at the transcript's current end, so a resumed
    conversation's earlier lines are not counted again."""

    def __init__(self, path: Path, on_object: Callable[[dict[str, Any]], None]) -> None:
        self.path = path
        self.on_object = on_object
        try:
            self.offset = path.stat().st_size
        except FileNotFoundError:
            self.offset = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tui-transcript", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(TAIL_POLL_SECONDS):
            self.drain()

    def drain(self) -> None:
        with self._lock:
            try:
                with open(self.path, "rb") as fh:
                    fh.seek(self.offset)
                    data = fh.read()
            except (FileNotFoundError, IsADirectoryError):
                return
            end = data.rfind(b"\n")
            if end < 0:
                return
            self.offset += end + 1
            for line in data[: end + 1].splitlines():
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict):
                    try:
                        self.on_object(obj)
                    except Exception:
                        log.exception("failed to handle a transcript line")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.drain()


class TuiAgent:
    """The agent as the interactive TUI in tmux, with the surface of
    :class:`modal_worker.agent.AgentProcess` the worker's supervisor uses."""

    def __init__(self, argv: list[str], *, socket: str, cwd: Path, env: Mapping[str, str],
                 transcript: Path, on_object: Callable[[dict[str, Any]], None],
                 prompt: str = "") -> None:
        self.argv = guarded(argv)
        self.cwd = cwd
        self.env = dict(env)
        self.prompt = prompt
        self.tmux = Tmux(socket, tmux_binary(self.env.get("PATH")))
        self.tail = TranscriptTail(transcript, on_object)
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=SCREEN_TAIL_LINES)
        self.started_at = 0.0
        self.killed = False
        self.ready = False
        self._state = TuiState(False, None, None, 0, 0, 0)
        self._state_at = 0.0
        self._closed = False

    @property
    def socket(self) -> str:
        return self.tmux.socket

    def start(self) -> None:
        self.tmux.start(self.argv, cwd=self.cwd, env=self.env)
        self.started_at = time.monotonic()
        self.tail.start()
        self.ready = self.tmux.wait_ready()
        if self.ready and self.prompt:
            self.tmux.type_message(self.prompt)

    def state(self, fresh: bool = False) -> TuiState:
        now = time.monotonic()
        if fresh or now - self._state_at >= STATE_CACHE_SECONDS:
            self._state = self.tmux.state() if not self._closed else \
                TuiState(False, self._state.exit_status, None, 0, 0, 0)
            self._state_at = now
            if not self._state.alive and not self.stderr_tail and not self._closed:
                self._keep_screen()
        return self._state

    def _keep_screen(self) -> None:
        """The screen's last lines, for the error of an agent that died (redacted)."""
        lines = [redact(line.rstrip()) for line in self.tmux.screen().splitlines()]
        self.stderr_tail.extend(line for line in lines if line.strip())

    @property
    def pid(self) -> int | None:
        return self.state().pid

    def alive(self) -> bool:
        return self.state().alive

    def finished(self) -> bool:
        return self.started_at > 0 and not self.state().alive

    @property
    def returncode(self) -> int | None:
        st = self.state()
        if st.alive:
            return None
        return st.exit_status if st.exit_status is not None else 128 + signal.SIGKILL

    def join_output(self, timeout: float = 5.0) -> None:
        self.tail.drain()

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the agent, SIGKILL it after ``grace``; the tmux server goes with it."""
        if self._closed:
            return
        st = self.state(fresh=True)
        if st.alive:
            self.killed = self.tmux.stop(grace)
            self._state = TuiState(False, 128 + signal.SIGTERM, None, 0, 0, 0)
        self.close()

    def close(self) -> None:
        """End the server (its clients see it end) and remove the private directory."""
        if self._closed:
            return
        self.tail.stop()
        self.tmux.kill_server()
        self._closed = True
        remove_server_files(self.tmux.socket)


# -- the guard: the pane's process --------------------------------------------------------

GUARD_POLL_SECONDS = 0.5
GUARD_GRACE_SECONDS = 5.0


def guarded(argv: list[str], worker_pid: int | None = None) -> list[str]:
    """The pane command that runs ``argv`` under the guard of this worker process."""
    pid = os.getpid() if worker_pid is None else worker_pid
    return [sys.executable, "-m", "modal_worker.tui", "guard", str(pid), "--", *argv]


def _start_time(pid: int) -> str | None:
    """The process's start time as the kernel says (Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def _alive(pid: int, started: str | None) -> bool:
    return pid_alive(pid) and (started is None or _start_time(pid) == started)


def guard(worker_pid: int, argv: list[str]) -> int:
    """Run ``argv``; forward SIGTERM and SIGHUP to it; when the worker is gone, stop it
    (SIGTERM, SIGKILL after a grace) and end this tmux server. Exits with its status."""
    started = _start_time(worker_pid)
    contained = container.contained(argv)
    # A contained agent: its bwrap ignores termination signals; they are sent to the
    # agent inside instead (parhelia.container).
    child = subprocess.Popen(argv, preexec_fn=container.ignore_termination if contained
                             else None)
    forwarded: list[int] = []

    def send(signum: int) -> None:
        if contained:
            container.signal_tree(child.pid, signum)
        else:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    def forward(signum: int, frame: object) -> None:
        forwarded.append(signum)
        send(signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    signal.signal(signal.SIGINT, lambda signum, frame: None)  # the TUI's own key
    orphaned = False
    while child.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(GUARD_POLL_SECONDS)
        if child.poll() is None and not orphaned and not _alive(worker_pid, started):
            orphaned = True
            send(signal.SIGTERM)
            try:
                child.wait(GUARD_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    code = child.returncode
    code = code if code >= 0 else 128 - code
    socket = os.environ.get("TMUX", "").split(",", 1)[0]  # the server this guard runs in
    if socket and orphaned:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run([tmux_binary(), "-S", socket, "kill-server"],
                           capture_output=True, timeout=TMUX_TIMEOUT_SECONDS, check=False)
        remove_server_files(socket)
    elif socket:
        _record_exit(Path(socket).parent / EXIT_NAME, code)
    return code


def remove_server_files(socket: str) -> None:
    """The socket, what Parhelia wrote beside it (configuration, exit record) and their
    private directory."""
    directory = Path(socket).parent
    for path in (Path(socket), directory / CONFIG_NAME, directory / EXIT_NAME):
        with contextlib.suppress(OSError):
            path.unlink()
    with contextlib.suppress(OSError):
        directory.rmdir()


def _record_exit(path: Path, code: int) -> None:
    """Write ``code`` where :meth:`Tmux.state` looks for it (EXIT_NAME)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(str(code))


def main(args: list[str]) -> int:
    if len(args) < 4 or args[0] != "guard" or not args[1].isdigit() or args[2] != "--":
        print("usage: python -m modal_worker.tui guard WORKER_PID -- ARGV...", file=sys.stderr)
        return 2
    return guard(int(args[1]), args[3:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
