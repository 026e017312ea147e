"""Run the real Claude Code CLI against a local fake Anthropic API (tests only).

Reusable by any end-to-end test that launches ``claude`` directly or through Parhelia (daemon ->
local backend -> worker -> claude): build the environment with :func:`claude_env`, the argv with
:func:`claude_argv`, and parse the stream-json output with :func:`parse_stream`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.helpers.daemon import RunningDaemon

REPO_ROOT = Path(__file__).resolve().parents[2]
PINNED_VERSION_FILE = REPO_ROOT / ".ci" / "claude-version"
CACHE_BIN = REPO_ROOT / ".ci" / "cache" / "claude" / "node_modules" / ".bin" / "claude"
BIN_ENV_VAR = "PARHELIA_CLAUDE_BIN"
TEST_API_KEY = "test-key"

# Inherited from the caller's environment; everything else is left out on purpose so that a
# developer's real ANTHROPIC_API_KEY / CLAUDE_CODE_OAUTH_TOKEN / proxy settings never leak in.
INHERITED = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "TERM")


@dataclass(frozen=True)
class ClaudeDirs:
    home: Path
    config: Path  # CLAUDE_CONFIG_DIR
    cwd: Path  # the agent's workspace

    def fresh_config(self, name: str) -> Path:
        """Another, empty CLAUDE_CONFIG_DIR beside the first (e.g. a new worker incarnation)."""
        path = self.config.parent / name
        path.mkdir(mode=0o700)
        return path


def pinned_version() -> str:
    return PINNED_VERSION_FILE.read_text().strip()


def claude_env(
    base_url: str,
    *,
    config_dir: str | os.PathLike[str],
    home: str | os.PathLike[str],
    api_key: str | None = TEST_API_KEY,
    max_retries: int | None = None,
    extra: Mapping[str, str] | None = None,
    inherit: Iterable[str] = INHERITED,
) -> dict[str, str]:
    """The environment for running the real ``claude`` against the fake at ``base_url``.

    - ``config_dir`` becomes ``CLAUDE_CONFIG_DIR`` (``.claude.json``, ``projects/``, ``CLAUDE.md``
      live there and nothing is written to HOME); ``home`` a throwaway ``HOME``.
    - Non-essential traffic, telemetry, error reporting and the auto-updater are disabled, so the
      only HTTP the CLI makes goes to ``base_url`` (verified, see docs/adr/0004-real-claude-e2e.md).
    - ``max_retries`` sets ``CLAUDE_CODE_MAX_RETRIES`` (the CLI's default is 10 retries with
      exponential backoff capped near 40 s: ~3 minutes before it gives up on a 401).
    - ``api_key=None`` leaves the key out (the "no credentials" path).
    """
    env = {k: os.environ[k] for k in inherit if k in os.environ}
    env.setdefault("PATH", os.defpath)
    env.update(
        {
            "HOME": os.fspath(home),
            "CLAUDE_CONFIG_DIR": os.fspath(config_dir),
            "ANTHROPIC_BASE_URL": base_url,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "NO_PROXY": "127.0.0.1,localhost",
        }
    )
    if api_key is not None:
        env["ANTHROPIC_API_KEY"] = api_key
    if max_retries is not None:
        env["CLAUDE_CODE_MAX_RETRIES"] = str(max_retries)
    if extra:
        env.update(extra)
    return env


def claude_argv(
    claude_bin: str | os.PathLike[str],
    prompt: str,
    *,
    session_id: str,
    resume: bool = False,
    permission_mode: str = "acceptEdits",
    max_turns: int = 5,
    extra: Sequence[str] = (),
) -> list[str]:
    """``claude -p PROMPT --output-format stream-json --verbose`` plus the session flags.

    First run: ``--session-id UUID``; resume: ``--resume UUID`` (``--session-id`` together with
    ``--resume`` is refused without ``--fork-session``).
    """
    argv = [os.fspath(claude_bin), "-p", prompt, "--output-format", "stream-json", "--verbose"]
    argv += ["--resume", session_id] if resume else ["--session-id", session_id]
    argv += ["--permission-mode", permission_mode, "--max-turns", str(max_turns), *extra]
    return argv


def encode_project_dir(cwd: str | os.PathLike[str]) -> str:
    """Claude Code's directory name for a cwd under ``projects/``: every character outside
    ``[A-Za-z0-9]`` becomes ``-``. (Paths longer than 200 characters are truncated plus a
    hash by the CLI; not reproduced here.)"""
    encoded = re.sub(r"[^A-Za-z0-9]", "-", os.fspath(cwd))
    if len(encoded) > 200:
        raise ValueError(f"cwd too long to encode reliably ({len(encoded)} > 200): {cwd}")
    return encoded


def transcript_path(
    config_dir: str | os.PathLike[str], cwd: str | os.PathLike[str], session_id: str
) -> Path:
    return Path(config_dir) / "projects" / encode_project_dir(cwd) / f"{session_id}.jsonl"


@dataclass
class ClaudeRun:
    """The outcome of one CLI run: exit code, parsed stream-json events, raw stderr."""

    returncode: int
    events: list[dict[str, Any]]
    stdout: str
    stderr: str
    non_json_lines: list[str] = field(default_factory=list)

    def of_type(self, type_: str, subtype: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e.get("type") == type_ and (subtype is None or e.get("subtype") == subtype)
        ]

    @property
    def init(self) -> dict[str, Any] | None:
        found = self.of_type("system", "init")
        return found[0] if found else None

    @property
    def result(self) -> dict[str, Any] | None:
        found = self.of_type("result")
        return found[-1] if found else None

    def content_blocks(self, type_: str, block_type: str) -> list[dict[str, Any]]:
        """Content blocks of ``type_`` (assistant/user) events whose type is ``block_type``."""
        out: list[dict[str, Any]] = []
        for e in self.of_type(type_):
            content = (e.get("message") or {}).get("content")
            if isinstance(content, list):
                out += [b for b in content if isinstance(b, dict) and b.get("type") == block_type]
        return out

    def describe(self) -> str:
        """Compact text for assertion messages."""
        kinds = [f"{e.get('type')}/{e.get('subtype', '')}" for e in self.events]
        return (
            f"rc={self.returncode} events={kinds} result={self.result}"
            f" stderr={self.stderr[-1500:]!r}"
        )


def parse_stream(stdout: str) -> tuple[list[dict[str, Any]], list[str]]:
    events: list[dict[str, Any]] = []
    other: list[str] = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            other.append(line)
            continue
        if isinstance(obj, dict):
            events.append(obj)
        else:
            other.append(line)
    return events, other


def run_claude(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: str | os.PathLike[str], timeout: float = 60
) -> ClaudeRun:
    """Run the CLI to completion (``subprocess.TimeoutExpired`` past ``timeout``; stdin is
    closed so the CLI never waits for input)."""
    proc = subprocess.run(
        list(argv),
        env=dict(env),
        cwd=os.fspath(cwd),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    events, other = parse_stream(proc.stdout)
    return ClaudeRun(proc.returncode, events, proc.stdout, proc.stderr, other)


@contextlib.contextmanager
def parhelia_on_real_claude(claude_bin: Path, fake_url: str, key: str, config: str
                            ) -> Iterator[RunningDaemon]:
    """A daemon on a temporary PARHELIA_HOME whose agent is the real CLI talking to the
    fake API at ``fake_url``: ``config`` (TOML sections) after the agent command, the
    credential ``key`` given as a service manager gives it (``parheliad.env``, 0600).
    Every worker is reaped and the home removed afterwards."""
    from tests.helpers.daemon import reap, start_daemon

    home = Path(tempfile.mkdtemp(prefix="ph-", dir="/tmp"))
    agent_home = home / "agent-home"
    agent_home.mkdir()
    (home / "config.toml").write_text(f"[agent]\ncommand = ['{claude_bin}']\n" + config)
    env_file = home / "parheliad.env"
    env_file.write_text(f"ANTHROPIC_API_KEY={key}\n")
    env_file.chmod(0o600)
    daemon = start_daemon(home, ANTHROPIC_BASE_URL=fake_url, HOME=str(agent_home),
                          NO_PROXY="127.0.0.1,localhost")
    try:
        yield daemon
    finally:
        if daemon.proc.poll() is None:
            daemon.stop()
        reap(home)
        shutil.rmtree(home, ignore_errors=True)


def user_settings_pointing_at(home: Path, api_url: str) -> Path:
    """``home/.claude/settings.json`` as a user pointing Claude Code at another endpoint
    writes it (the fake Messages API, no retries, no proxy for it); its ``env`` is
    passed to workers (``sync.pass_env``). The file's path."""
    settings = home / ".claude" / "settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"env": {
        "ANTHROPIC_BASE_URL": api_url, "CLAUDE_CODE_MAX_RETRIES": "0",
        "NO_PROXY": "127.0.0.1,localhost"}}))
    return settings
