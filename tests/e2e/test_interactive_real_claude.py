"""Interactive sessions with the REAL Claude Code CLI in real tmux (ADR 0020): the
user's terminal is an outer tmux pane running `parhelia session attach`, driven with
send-keys and read with capture-pane, as a person would; the agent talks to the local
fake of the Messages API."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_anthropic import FakeAnthropic, reply, tool_use
from tests.helpers.daemon import RunningDaemon, cli_argv, start_daemon
from tests.helpers.harness import Harness, kill_workers
from tests.helpers.waiting import wait_for

pytestmark = [pytest.mark.claude,
              pytest.mark.requires("tmux")]


@pytest.fixture
def stack(claude_bin: Path, parhelia_home: Path, tmp_path: Path
          ) -> Iterator[tuple[Harness, FakeAnthropic]]:
    with FakeAnthropic() as fake:
        (parhelia_home / "config.toml").write_text(
            f"[agent]\ncommand = ['{claude_bin}']\n[heartbeat]\ninterval_seconds = 0.5\n"
            "[recovery]\nbackoff_seconds = 0.2\n")
        home = tmp_path / "home"
        home.mkdir()
        daemon: RunningDaemon = start_daemon(
            parhelia_home, ANTHROPIC_API_KEY="test-key-interactive-0123456789",
            ANTHROPIC_BASE_URL=fake.url, HOME=str(home), CLAUDE_CODE_MAX_RETRIES="0",
            NO_PROXY="127.0.0.1,localhost")
        try:
            yield Harness(daemon), fake
        finally:
            daemon.stop()
            kill_workers(parhelia_home)


class Terminal:
    """The user's terminal: a pane of a tmux server of the test's own (its own socket),
    running one command. Keys sent to the pane are what the person's keyboard delivers
    to the attached client (past the outer tmux's own bindings: inside the user's tmux a
    person types C-b C-b D, which the outer tmux delivers as C-b D). ``nested`` keeps the
    pane's TMUX variable: the attach runs as a client nested in the user's own tmux."""

    def __init__(self, tmp: Path, env: dict[str, str], *, width: int, height: int,
                 nested: bool = False) -> None:
        self.dir = Path(os.path.realpath(tmp))
        self.dir.mkdir(mode=0o700, exist_ok=True)
        self.socket = str(self.dir / "outer")
        conf = self.dir / "outer.conf"
        conf.write_text("set -g prefix C-a\nset -g remain-on-exit on\nset -g status off\n")
        self.conf = str(conf)
        self.env = env
        self.size = (width, height)
        self.nested = nested

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.socket, "-f", self.conf, *args],
                              capture_output=True, text=True, timeout=20, env=self.env,
                              check=False).stdout

    def run(self, *argv: str) -> None:
        w, h = self.size
        plain = [] if self.nested else ["env", "-u", "TMUX"]
        self.tmux("new-session", "-d", "-s", "user", "-x", str(w), "-y", str(h), "--",
                  *plain, *argv)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "user")

    def keys(self, *keys: str, literal: bool = False) -> None:
        self.tmux("send-keys", "-t", "user", *(["-l"] if literal else []), *keys)

    def ended(self) -> bool:
        return self.tmux("display-message", "-p", "-t", "user", "#{pane_dead}").strip() == "1"

    def close(self) -> None:
        self.tmux("kill-server")




def session(h: Harness, ref: str) -> dict[str, Any]:
    return h.json("session", "show", ref)


def checkpoints(h: Harness, sid: str, trigger: str) -> list[dict[str, Any]]:
    return [e for e in h.events("--session", sid, "--type", "checkpoint_created")
            if (e["data"] or {}).get("trigger") == trigger]


LOG_LINES_SHOWN = 60


def story(h: Harness, sid: str, term: Terminal | None = None) -> Callable[[], str]:
    """What a failed wait shows: the session's events and status, and the user's screen."""
    def tell() -> str:
        lines = [f"{e['type']}: {e.get('message', '')}" for e in h.events("--session", sid)]
        lines.append(f"session status: {session(h, sid)['status']}")
        if term is not None:
            lines += ["screen:", term.screen()]
        log = h.daemon.log_file
        if log.exists():
            lines += ["the daemon's log (its end):", *log.read_text(errors="replace")
                      .splitlines()[-LOG_LINES_SHOWN:]]
        return "\n".join(lines)
    return tell


def tui_width(h: Harness, sid: str) -> int:
    """The width of the session's TUI window (it follows the latest client's terminal)."""
    socket = sqlite3.connect(h.home / "state" / "parheliad.db").execute(
        "SELECT tmux_socket FROM sessions WHERE id = ?", (sid,)).fetchone()[0]
    out = subprocess.run(["tmux", "-S", socket, "display-message", "-p", "-t", "parhelia",
                          "#{window_width}"], capture_output=True, text=True, timeout=10,
                         check=False).stdout.strip()
    return int(out) if out.isdigit() else 0


def attach_in(term: Terminal, h: Harness, sid: str, *args: str) -> None:
    term.run(*cli_argv(), "session", "attach", sid, *args)


def test_interactive_task_attach_type_detach_attach_again(
        stack: tuple[Harness, FakeAnthropic], tmp_path: Path) -> None:
    h, fake = stack
    canary = tmp_path / "pwned"
    fake.add_replies(reply("FIRST-ANSWER from the fake."),
                     reply("SECOND-ANSWER: typed through the attached terminal."))
    prompt = f"Say hello. PROMPT-MARKER\nsecond line $(touch {canary}) `touch {canary}`"
    task_id = h.create(prompt, "--interactive")
    sid = wait_for(lambda: h.task(task_id).get("session_id"), timeout=90, what="a session")

    # the prompt is the TUI's first message, whole, and never went through a shell
    wait_for(lambda: fake.main_requests, timeout=90, what="the first message")
    first = fake.main_requests[0]
    assert "PROMPT-MARKER" in first.messages_text() and f"$(touch {canary})" in \
        first.messages_text(), fake.summary()
    assert not canary.exists()
    s = wait_for(lambda: (x := session(h, sid))["status"] == "detached" and x,
                 timeout=90, what="detached")
    assert s["interactive"] and s["attached_clients"] == 0

    # attach from a plain terminal, type a message, see the answer
    term = Terminal(tmp_path / "t1", h.daemon.env, width=220, height=60)
    try:
        attach_in(term, h, sid)
        wait_for(lambda: "FIRST-ANSWER" in term.screen(),
                 timeout=90, what="the conversation on screen")
        wait_for(lambda: tui_width(h, sid) == 220,
                 timeout=90, what="the TUI at the terminal's width")
        listed = wait_for(lambda: next((x for x in h.json("session", "list")["sessions"]
                                        if x["id"] == sid and x["status"] == "attached"),
                                       None), timeout=90, what="attached in session list")
        assert listed["attached_clients"] == 1
        term.keys("What comes second?", literal=True)
        term.keys("Enter")
        wait_for(lambda: "SECOND-ANSWER" in term.screen(), timeout=90, what="the answer on screen")
        term.keys("C-b", "d")
        wait_for(term.ended, timeout=90, what="the attach to end")
        assert "goes on running" in term.screen()
    finally:
        term.close()
    wait_for(lambda: checkpoints(h, sid, "detach"), timeout=90, what="the detach checkpoint")
    s = wait_for(lambda: (x := session(h, sid))["status"] == "detached" and x,
                 timeout=90, what="detached")
    assert s["attached_clients"] == 0
    assert h.task(task_id)["status"] == "running"
    second = fake.main_requests[-1]
    assert "PROMPT-MARKER" in second.messages_text()
    assert "FIRST-ANSWER" in second.messages_text()

    # again, nested in the user's own tmux, in a small terminal: the conversation is there
    term = Terminal(tmp_path / "t2", h.daemon.env, width=50, height=16, nested=True)
    try:
        attach_in(term, h, sid)
        wait_for(lambda: "SECOND-ANSWER" in term.screen(),
                 timeout=90, what="the conversation again")
        wait_for(lambda: tui_width(h, sid) == 50,
                 timeout=90, what="the TUI at the small terminal's width")
        term.keys("C-b", "d")
        wait_for(term.ended, timeout=90, what="the nested attach to end")
    finally:
        term.close()
    wait_for(lambda: len(checkpoints(h, sid, "detach")) >= 2,
             timeout=90, what="a second detach checkpoint")
    task = h.task(task_id)
    assert task["status"] == "running"
    assert task["usage"]["turns"] >= 2 and task["usage"]["output_tokens"] > 0
    assert checkpoints(h, sid, "turn")
    h.run("session", "kill", sid, "-y", check=True)
    assert session(h, sid)["status"] == "stopped"


def test_take_over_a_headless_task_then_release_it_one_conversation(
        stack: tuple[Harness, FakeAnthropic], tmp_path: Path) -> None:
    """A headless multi-turn task is taken over from a terminal (checkpoint, the headless
    agent stopped, the TUI resumed on the same conversation), a message is typed, then it
    is released with an instruction and finishes headless. Every request of the fake API
    carries every earlier message: one conversation throughout."""
    h, fake = stack
    # The script is in place before the agent starts: its first request must not find an
    # empty script (answered with a plain end_turn, the task would just complete). The
    # workspace path is not known yet, so the first step writes relative to the agent's
    # cwd with Bash (bypassPermissions lets it run).
    fake.add_replies(
        reply("Step 1.", tool_use("Bash", {"command": "printf '1\\n' > step1.txt"})),
        reply("Still thinking...", delay_s=120),  # the headless agent is stopped here
        reply("TUI-ANSWER: hello from the taken-over session."),
        reply("RELEASED-ANSWER: finished headless."))
    out = h.json("task", "create", "Create step1.txt, then wait. PROMPT-MARKER",
                 "--no-workspace", "--no-dispatch", "--permission-mode", "bypassPermissions")
    task_id = out.get("task", out)["id"]
    h.run("task", "dispatch", check=True)
    sid = wait_for(lambda: h.task(task_id).get("session_id"), timeout=90, what="a session")
    workspace = h.home / "data" / "workspaces" / sid
    wait_for(lambda: len(fake.main_requests) >= 2,
             timeout=90, what="the headless agent's second turn")
    assert session(h, sid)["status"] == "headless"

    # without --take-over and without a terminal to ask at, attach refuses and says how
    refused = h.run("session", "attach", sid, "--print")
    assert refused.returncode != 0 and "--take-over" in refused.stderr

    term = Terminal(tmp_path / "t", h.daemon.env, width=100, height=30)
    try:
        attach_in(term, h, sid, "--take-over")
        told = story(h, sid, term)
        wait_for(lambda: "Step 1." in term.screen(),
                 timeout=90, what="the resumed conversation on screen", detail=told)
        assert wait_for(lambda: checkpoints(h, sid, "takeover"),
                        timeout=90, what="the takeover checkpoint", detail=told)
        # the worker reports its TUI's clients as it sees them: "attached" follows the
        # attach, it does not precede the first screen
        wait_for(lambda: session(h, sid)["status"] == "attached",
                 timeout=90, what="the session to show the attached client", detail=told)
        assert h.task(task_id)["options"]["interactive"]  # a recovery would come back so
        term.keys("Say TUI-MESSAGE now", literal=True)
        term.keys("Enter")
        wait_for(lambda: "TUI-ANSWER" in term.screen(), timeout=90, what="the TUI's answer",
                 detail=told)

        released = h.json("session", "release", sid, "Finish up. RELEASE-MARKER")
        assert released["status"] == "headless"
        wait_for(term.ended, timeout=90, what="the attached client to leave with the TUI",
                 detail=told)
    finally:
        term.close()

    task = h.wait(task_id, timeout=120)
    assert task["status"] == "completed", (task, fake.summary())
    assert "RELEASED-ANSWER" in task["result"]["text"]
    assert not task["options"].get("interactive")
    assert (workspace / "step1.txt").read_text() == "1\n"
    assert checkpoints(h, sid, "release")
    kinds = [e["type"] for e in h.events("--session", sid)]
    assert kinds.index("session_interactive") < kinds.index("session_headless")
    # one conversation: each request holds every earlier message
    texts = [r.messages_text() for r in fake.main_requests]
    tui = next(i for i, t in enumerate(texts) if "TUI-MESSAGE" in t)
    last = next(i for i, t in enumerate(texts) if "RELEASE-MARKER" in t)
    assert "PROMPT-MARKER" in texts[tui] and "Step 1." in texts[tui]
    for marker in ("PROMPT-MARKER", "Step 1.", "TUI-MESSAGE", "TUI-ANSWER", "RELEASE-MARKER"):
        assert marker in texts[last], (marker, fake.summary())
    assert session(h, sid)["status"] == "completed"


def test_an_interactive_task_whose_worker_is_sigkilled_comes_back_interactive(
        stack: tuple[Harness, FakeAnthropic], tmp_path: Path) -> None:
    """SIGKILL of the worker: its TUI and tmux server go too (the pane's guard), recovery
    starts a new worker whose TUI resumes the same conversation on a new private socket."""
    h, fake = stack
    fake.add_replies(reply("FIRST-ANSWER before the crash."),
                     reply("AFTER-CRASH-ANSWER: the conversation goes on."))
    task_id = h.create("Say hello. PROMPT-MARKER", "--interactive")
    sid = wait_for(lambda: h.task(task_id).get("session_id"), timeout=90, what="a session")
    wait_for(lambda: checkpoints(h, sid, "turn"), timeout=90, what="the first turn's checkpoint")
    old = wait_for(lambda: (x := session(h, sid))["status"] == "detached" and x,
                   timeout=90, what="detached")
    old_container = old["current_container_id"]
    db = sqlite3.connect(h.home / "state" / "parheliad.db")
    old_socket, backend_id = db.execute(
        "SELECT s.tmux_socket, c.backend_id FROM sessions s JOIN containers c "
        "ON c.id = s.current_container_id WHERE s.id = ?", (sid,)).fetchone()
    assert old_socket and Path(old_socket).is_socket()
    os.kill(int(backend_id.split("@")[0]), signal.SIGKILL)

    wait_for(lambda: not Path(old_socket).exists(), timeout=90, what="the old tmux server to end")
    new = wait_for(lambda: (x := session(h, sid))["status"] == "detached" and
                   x["current_container_id"] not in ("", old_container) and x,
                   timeout=120, what="a new TUI")
    assert h.task(task_id)["restarts"] == 1
    term = Terminal(tmp_path / "t", h.daemon.env, width=100, height=30)
    try:
        attach_in(term, h, new["id"])
        wait_for(lambda: "FIRST-ANSWER" in term.screen(),
                 timeout=90, what="the resumed conversation")
        term.keys("And now?", literal=True)
        term.keys("Enter")
        wait_for(lambda: "AFTER-CRASH-ANSWER" in term.screen(),
                 timeout=90, what="the answer after the crash")
        term.keys("C-b", "d")
        wait_for(term.ended, timeout=90, what="the attach to end")
    finally:
        term.close()
    last = fake.main_requests[-1].messages_text()
    assert "PROMPT-MARKER" in last and "FIRST-ANSWER" in last and "And now?" in last
    h.run("session", "kill", sid, "-y", check=True)


def test_bypass_permissions_tui_starts_at_its_prompt_and_checkpoints_before_risky_commands(
        stack: tuple[Harness, FakeAnthropic], tmp_path: Path) -> None:
    """bypassPermissions: no warning dialog stops the TUI (its acceptance is seeded), the
    prompt goes in as the first message, and the PreToolUse hook checkpoints before a
    risky Bash command as it does headless."""
    h, fake = stack
    fake.add_replies(reply("Cleaning up.", tool_use("Bash", {"command": "rm -rf build-out"})),
                     reply("RISKY-DONE: cleaned."))
    task_id = h.create("Clean the build. PROMPT-MARKER", "--interactive",
                       "--permission-mode", "bypassPermissions")
    sid = wait_for(lambda: h.task(task_id).get("session_id"), timeout=90, what="a session")
    risky = wait_for(lambda: checkpoints(h, sid, "pre_tool"),
                     timeout=90, what="the risky-command checkpoint")
    assert "rm -rf build-out" in risky[0]["data"]["message"]
    wait_for(lambda: len(fake.main_requests) >= 2, timeout=90, what="the turn after the command")
    assert "PROMPT-MARKER" in fake.main_requests[0].messages_text()
    wait_for(lambda: checkpoints(h, sid, "turn"), timeout=90, what="a turn checkpoint")
    assert h.task(task_id)["last_tool"].startswith("Bash")
    h.run("session", "kill", sid, "-y", check=True)
