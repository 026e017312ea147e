"""Launching Claude Code: argv, environment, pre-flight checks, the process itself.

The argv is always a list (never a shell string) and never holds the prompt: a
command line is readable by every local user (``/proc/PID/cmdline``) and bounded by
the OS argument limit, so the prompt goes to ``claude -p`` on its standard input
(an unlinked 0600 temporary file). Credentials come from the worker's environment
and are checked before launch, so a task without them fails at once instead of
retrying for minutes.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from parhelia import container
from parhelia.checkpoint.projects import TMP_SUBDIR
from parhelia.credentials import CREDENTIAL_VARS
from parhelia.errors import ParheliaError
from parhelia.redact import redact
from parhelia.spec import AgentSpec

log = logging.getLogger(__name__)

INSTALL_HINT = "npm install -g @anthropic-ai/claude-code"
STDERR_TAIL_LINES = 20
PR_SET_PDEATHSIG = 1


def build_argv(agent: AgentSpec, command: list[str] | None = None, *,
               project_memory: Path | None = None) -> list[str]:
    """The exact argv of one agent run (docs/contracts.md; Claude Code 2.1.332).

    First run: ``--session-id UUID``; resume: ``--resume UUID`` (never both). No
    prompt argument: ``claude -p`` then reads the prompt from its standard input
    (verified with Claude Code 2.1.332, tests/e2e). Unless the user trusts the project
    (``agent.project_settings``), ``--setting-sources user`` keeps the repository's own
    Claude Code settings out and ``project_memory`` (its CLAUDE.md, as text) is appended
    to the system prompt (:mod:`modal_worker.project_memory`).
    """
    cmd = list(command or agent.command)
    session = (["--resume", agent.session_uuid] if agent.resume
               else ["--session-id", agent.session_uuid])
    # --include-partial-messages: the Messages API's stream events, the only place the
    # CLI reports a reply's output tokens before its final result (modal_worker.stream).
    options = ["--output-format", "stream-json", "--verbose", "--include-partial-messages",
               *session, "--permission-mode", agent.permission_mode]
    if agent.max_turns is not None:
        options += ["--max-turns", str(agent.max_turns)]
    if agent.max_budget_usd is not None:
        options += ["--max-budget-usd", f"{agent.max_budget_usd:g}"]
    if agent.model:
        options += ["--model", agent.model]
    options += allowed_tool_options(agent)
    options += project_setting_options(agent, project_memory)
    return [*cmd, "-p", *options]


def build_tui_argv(agent: AgentSpec, command: list[str] | None = None, *,
                   project_memory: Path | None = None) -> list[str]:
    """The interactive TUI's argv (docs/contracts.md): the session flags of
    :func:`build_argv` without ``-p`` and without a prompt (it is typed into the TUI as
    its first message: :mod:`modal_worker.tui`). ``--max-turns`` and ``--max-budget-usd``
    are print-mode options; the daemon's budget still stops the session."""
    cmd = list(command or agent.command)
    session = (["--resume", agent.session_uuid] if agent.resume
               else ["--session-id", agent.session_uuid])
    options = [*session, "--permission-mode", agent.permission_mode]
    if agent.model:
        options += ["--model", agent.model]
    options += allowed_tool_options(agent)
    return [*cmd, *options, *project_setting_options(agent, project_memory)]


def allowed_tool_options(agent: AgentSpec) -> list[str]:
    """``--allowedTools`` with the environment's pre-approved commands (one argument
    each: the option takes a list), none when the mode already allows everything."""
    if not agent.allowed_tools or agent.permission_mode == "bypassPermissions":
        return []
    return ["--allowedTools", *agent.allowed_tools]


def project_setting_options(agent: AgentSpec, project_memory: Path | None) -> list[str]:
    """The options that decide what of the workspace's own Claude Code configuration the
    agent loads; shared by every way the worker starts the agent."""
    if agent.project_settings:
        return []
    options = ["--setting-sources", "user"]
    if project_memory is not None:
        options += ["--append-system-prompt-file", str(project_memory)]
    return options


VERSION_TIMEOUT_SECONDS = 60


def agent_version(command: list[str], env: Mapping[str, str]) -> str:
    """``claude --version``'s first word (``2.1.332``); E500 when it does not answer."""
    try:
        proc = subprocess.run([*command, "--version"], env=dict(env), capture_output=True,
                              text=True, timeout=VERSION_TIMEOUT_SECONDS,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        proc = None
    words = proc.stdout.split() if proc is not None and proc.returncode == 0 else []
    if not words:
        raise ParheliaError("E500", f"the agent {command[0]!r} did not answer --version")
    return words[0]


def build_env(base: Mapping[str, str], *, extra: Mapping[str, str], config_dir: Path,
              workspace: Path, permission_mode: str, is_root: bool | None = None) -> dict[str, str]:
    env = dict(base)
    env.update(extra)
    env.update({
        "CLAUDE_CONFIG_DIR": str(config_dir),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "PWD": str(workspace),
        # The session's files all under the config dir, where checkpoints find them
        # (docs/contracts.md, "Claude Code's session files"): background-task output, and
        # the file history headless runs keep only when asked.
        "CLAUDE_CODE_TMPDIR": str(config_dir / TMP_SUBDIR),
        "CLAUDE_CODE_ENABLE_SDK_FILE_CHECKPOINTING": "1",
    })
    root = os.geteuid() == 0 if is_root is None else is_root
    if root and permission_mode == "bypassPermissions":
        env["IS_SANDBOX"] = "1"
    return env


def check_credentials(env: Mapping[str, str]) -> None:
    """E400 unless one of the agent's credential variables is set and non-empty."""
    if any(env.get(name, "").strip() for name in CREDENTIAL_VARS):
        return
    raise ParheliaError(
        "E400",
        "no credentials for the agent: set one of " + ", ".join(CREDENTIAL_VARS)
        + " in the worker's environment. Export ANTHROPIC_API_KEY (or CLAUDE_CODE_OAUTH_TOKEN) "
        "where the daemon runs (or `parhelia auth set`); on Modal the daemon sends it as an "
        "ephemeral secret, or the Modal secret `anthropic-api-key` holds it "
        "(https://modal.com/secrets).",
    )


def resolve_command(command: list[str], env: Mapping[str, str]) -> list[str]:
    """``command`` with its program resolved on the worker's PATH (E500 if absent)."""
    program = command[0]
    if "/" in program:
        found = program if os.access(program, os.X_OK) and os.path.isfile(program) else None
    else:
        found = shutil.which(program, path=env.get("PATH", os.defpath))
    if found is None:
        raise ParheliaError(
            "E500",
            f"the agent command {program!r} was not found on PATH. Install Claude Code with "
            f"`{INSTALL_HINT}`, or set `agent.command` in the configuration.",
        )
    return [found, *command[1:]]


RAW_LOG_STREAM_EVENTS = frozenset({"message_start", "message_delta"})


def _streamed_piece(obj: object) -> bool:
    """A partial-message event the raw log leaves out: the deltas repeat what the
    assistant lines carry; message_start / message_delta (the usage) are kept."""
    if not isinstance(obj, dict) or obj.get("type") != "stream_event":
        return False
    event = obj.get("event")
    return not (isinstance(event, dict) and event.get("type") in RAW_LOG_STREAM_EVENTS)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the agent gets SIGKILL if the worker dies (kill -9) before stopping it."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _die_with_parent_contained() -> None:  # pragma: no cover - runs in the child
    """The same for the bwrap of a contained agent, which also lets the termination
    signals sent to the agent's process group pass it by (:mod:`parhelia.container`)."""
    _die_with_parent()
    container.ignore_termination()


class AgentProcess:
    """One agent run in its own process session, stdout parsed line by line."""

    def __init__(self, argv: list[str], *, cwd: Path, env: Mapping[str, str], raw_log: Path,
                 on_object: Callable[[dict[str, Any]], None], prompt: str = "",
                 stderr_sink: TextIO | None = None) -> None:
        self.argv = argv
        self.prompt = prompt
        self.cwd = cwd
        self.env = dict(env)
        self.raw_log = raw_log
        self.on_object = on_object
        self.stderr_sink = stderr_sink or sys.stderr
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self.proc: subprocess.Popen[bytes] | None = None
        self._threads: list[threading.Thread] = []
        self.started_at = 0.0
        self.killed = False  # stop() had to SIGKILL it: it wrote nothing on its way out

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        self.raw_log.parent.mkdir(parents=True, exist_ok=True)
        # The prompt on stdin from an unlinked 0600 file: no size limit, no pipe to feed,
        # nothing another user can read.
        with tempfile.TemporaryFile() as stdin:
            stdin.write(self.prompt.encode())
            stdin.seek(0)
            self.proc = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdin=stdin,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                preexec_fn=(_die_with_parent_contained if container.contained(self.argv)
                            else _die_with_parent) if sys.platform == "linux" else None,
            )
        self.started_at = time.monotonic()
        self._threads = [
            threading.Thread(target=self._read_stdout, name="agent-stdout", daemon=True),
            threading.Thread(target=self._read_stderr, name="agent-stderr", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def finished(self) -> bool:
        """The process exited and its output was fully read."""
        return (self.proc is not None and self.proc.poll() is not None
                and not any(t.is_alive() for t in self._threads))

    def join_output(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc else None

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the agent's process group, then SIGKILL it after ``grace`` seconds."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
            self.killed = self.proc.poll() is None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)  # stragglers of the group, if any
        self.proc.wait()
        self.join_output()

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with open(self.raw_log, "ab") as raw:
            for line in self.proc.stdout:
                text = line.strip()
                try:
                    obj = json.loads(text) if text else None
                except ValueError:
                    obj = None
                    log.warning("agent wrote a non-JSON line: %s", redact(text[:200].decode(
                        errors="replace")))
                if not _streamed_piece(obj):
                    raw.write(line)
                    raw.flush()
                if isinstance(obj, dict):
                    try:
                        self.on_object(obj)
                    except Exception:
                        log.exception("failed to handle an agent line")

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = redact(raw.decode(errors="replace").rstrip("\n"))
            self.stderr_tail.append(line)
            with contextlib.suppress(Exception):
                self.stderr_sink.write(f"[agent] {line}\n")
                self.stderr_sink.flush()
