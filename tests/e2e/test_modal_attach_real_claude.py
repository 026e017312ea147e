"""`session attach` on Modal through the SDK (ADR 0022), whole stack: the real `parhelia`
CLI in the user's terminal (an outer tmux pane, driven as a person would) -> parheliad's
AttachTerminal -> an exec with a PTY in the fake Modal SDK's sandbox -> `tmux attach` on
the worker's TUI socket -> the REAL Claude Code TUI -> the fake Messages API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from modal_worker import tui
from tests.conftest import RunningDaemon, start_daemon
from tests.e2e.test_interactive_real_claude import (
    Terminal,
    attach_in,
    checkpoints,
    session,
    wait_for,
)
from tests.fake_anthropic import FakeAnthropic, reply
from tests.fake_modal.fixture import FakeModal
from tests.fake_modal.fixture import fake_modal as fake_modal  # noqa: F401 - the fixture
from tests.integration.conftest import Harness, kill_workers

pytestmark = [pytest.mark.claude, pytest.mark.timeout(420),
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
              pytest.mark.skipif(os.geteuid() != 0, reason="the fake sandbox's TUI socket "
                                 "is root's, as in a Modal sandbox")]

PASSED = ("ANTHROPIC_BASE_URL", "CLAUDE_CODE_MAX_RETRIES", "NO_PROXY")


@pytest.fixture
def stack(claude_bin: Path, parhelia_home: Path, tmp_path: Path,
          fake_modal: FakeModal) -> Iterator[tuple[Harness, FakeAnthropic]]:  # noqa: F811
    with FakeAnthropic() as api:
        home = tmp_path / "home"
        (home / ".claude").mkdir(parents=True)
        (home / ".claude" / "settings.json").write_text(json.dumps({"env": {
            "ANTHROPIC_BASE_URL": api.url, "CLAUDE_CODE_MAX_RETRIES": "0",
            "NO_PROXY": "127.0.0.1,localhost"}}))
        (parhelia_home / "config.toml").write_text(
            f"[agent]\ncommand = [{json.dumps(str(claude_bin))}]\n"
            "[heartbeat]\ninterval_seconds = 1.0\n"
            "[orchestrator]\ndispatch_interval_seconds = 0.5\n"
            f"[sync]\npass_env = {json.dumps(list(PASSED))}\n")
        daemon: RunningDaemon = start_daemon(
            parhelia_home, ANTHROPIC_API_KEY="test-key-interactive-0123456789",
            HOME=str(home), **fake_modal.env())
        try:
            yield Harness(daemon), api
        finally:
            daemon.stop()
            kill_workers(parhelia_home)


def test_attach_to_a_modal_session_through_the_sdk_type_resize_detach(
        stack: tuple[Harness, FakeAnthropic], tmp_path: Path) -> None:
    h, api = stack
    api.add_replies(reply("FIRST-ANSWER from the fake."),
                    reply("SECOND-ANSWER: typed through the daemon's PTY exec."))
    out = h.json("task", "create", "Say hello. PROMPT-MARKER", "--interactive",
                 "--backend", "modal", "--no-workspace")
    task_id = out.get("task", out)["id"]
    sid = wait_for(lambda: h.task(task_id).get("session_id"), "a session", timeout=120)
    wait_for(lambda: (x := session(h, sid))["status"] == "detached" and x, "detached",
             timeout=180)
    printed = h.run("session", "attach", sid, "--print", check=True)
    assert printed.stdout.strip() == f"parhelia session attach {sid}"

    term = Terminal(tmp_path / "t1", h.daemon.env, width=110, height=35)
    try:
        attach_in(term, h, sid)
        wait_for(lambda: "FIRST-ANSWER" in term.screen(), "the conversation on screen")
        listed = wait_for(lambda: next((x for x in h.json("session", "list")["sessions"]
                                        if x["id"] == sid and x["status"] == "attached"),
                                       None), "attached in session list")
        assert listed["attached_clients"] == 1
        # The sandbox's tmux sees the user's terminal size, and follows a resize.
        inner = ["tmux", "-S", tui.socket_path(h.task(task_id)["container_id"], tmp="/tmp",
                                                uid=0), "list-clients", "-F",
                 "#{client_width}x#{client_height}"]
        size = lambda: subprocess.run(inner, capture_output=True, text=True,  # noqa: E731
                                      check=False).stdout.strip()
        wait_for(lambda: size() == "110x35", "the first size")
        term.tmux("resize-window", "-t", "user", "-x", "90", "-y", "28")  # SIGWINCH
        wait_for(lambda: size() == "90x28", "the resize")
        term.keys("What comes second?", literal=True)
        term.keys("Enter")
        wait_for(lambda: "SECOND-ANSWER" in term.screen(), "the answer on screen")
        term.keys("C-b", "d")
        wait_for(term.ended, "the attach to end")
        assert "goes on running" in term.screen()
    finally:
        term.close()
    wait_for(lambda: checkpoints(h, sid, "detach"), "the detach checkpoint", timeout=120)
    s = wait_for(lambda: (x := session(h, sid))["status"] == "detached" and x, "detached")
    assert s["attached_clients"] == 0
    assert h.task(task_id)["status"] == "running"
    assert "FIRST-ANSWER" in api.main_requests[-1].messages_text()
    h.run("session", "kill", sid, "-y", check=True)
