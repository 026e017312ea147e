"""`session attach` on Modal through the SDK (ADR 0022), whole stack: the real `parhelia`
CLI in the user's terminal (an outer tmux pane, driven as a person would) -> parheliad's
AttachTerminal -> the real modal SDK -> an exec with a PTY through the stand-in's task
command router, in a stand-in sandbox -> `tmux attach` on
the worker's TUI socket -> the REAL Claude Code TUI -> the fake Messages API."""

from __future__ import annotations

import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from parhelia import tuisocket
from tests.e2e.test_interactive_real_claude import (
    Terminal,
    attach_in,
    checkpoints,
    session,
    story,
)
from tests.e2e.test_modal_daemon_real_claude import stack as stack  # noqa: F401 - fixture
from tests.fake_anthropic import FakeAnthropic, reply
from tests.helpers.harness import Harness
from tests.helpers.waiting import wait_for
from tests.modal_host import state
from tests.modal_standin.fixture import StandIn

pytestmark = [pytest.mark.claude, pytest.mark.timeout(420),
              pytest.mark.requires("tmux"),
              pytest.mark.requires("root", reason="the fake sandbox's TUI socket is root's, "
                                   "as in a Modal sandbox")]


def interactive_on_modal(h: Harness, prompt: str) -> tuple[str, str]:
    """An interactive task on the Modal backend, once its sandbox runs: (task id, session
    id). The session is "detached" from dispatch on; attaching needs the running sandbox
    (E601 "not running yet" before)."""
    out = h.json("task", "create", prompt, "--interactive", "--backend", "modal",
                 "--no-workspace")
    task_id = out.get("task", out)["id"]
    sid = wait_for(lambda: h.task(task_id).get("session_id"), timeout=120, what="a session")
    wait_for(lambda: session(h, sid)["status"] == "detached", timeout=180, what="detached")
    wait_for(lambda: h.run("session", "attach", sid, "--print").returncode == 0, timeout=180,
             what="an attachable sandbox")
    return task_id, sid


def test_attach_to_a_modal_session_through_the_sdk_type_resize_detach(
        stack: tuple[Harness, FakeAnthropic], modal_standin: StandIn, tmp_path: Path) -> None:
    h, api = stack
    api.add_replies(reply("FIRST-ANSWER from the fake."),
                    reply("SECOND-ANSWER: typed through the daemon's PTY exec."))
    task_id, sid = interactive_on_modal(h, "Say hello. PROMPT-MARKER")
    printed = h.run("session", "attach", sid, "--print", check=True)
    assert printed.stdout.strip() == f"parhelia session attach {sid}"

    term = Terminal(tmp_path / "t1", h.daemon.env, width=110, height=35)
    try:
        attach_in(term, h, sid)
        wait_for(lambda: "FIRST-ANSWER" in term.screen(),
                 timeout=90, what="the conversation on screen")
        listed = wait_for(lambda: next((x for x in h.json("session", "list")["sessions"]
                                        if x["id"] == sid and x["status"] == "attached"),
                                       None), timeout=90, what="attached in session list")
        assert listed["attached_clients"] == 1
        # The sandbox's tmux sees the user's terminal size, and follows a resize.
        container = h.task(task_id)["container_id"]
        sandbox_tmp = state.sandbox_tmp(modal_standin.sandbox(container)["id"])
        inner = ["tmux", "-S", tuisocket.socket_path(container, tmp=sandbox_tmp, uid=0),
                 "list-clients", "-F", "#{client_width}x#{client_height}"]
        size = lambda: subprocess.run(inner, capture_output=True, text=True,  # noqa: E731
                                      check=False).stdout.strip()
        wait_for(lambda: size() == "110x35", timeout=90, what="the first size")
        term.tmux("resize-window", "-t", "user", "-x", "90", "-y", "28")  # SIGWINCH
        wait_for(lambda: size() == "90x28", timeout=90, what="the resize")
        term.keys("What comes second?", literal=True)
        term.keys("Enter")
        wait_for(lambda: "SECOND-ANSWER" in term.screen(), timeout=90, what="the answer on screen")
        term.keys("C-b", "d")
        wait_for(term.ended, timeout=90, what="the attach to end")
        assert "goes on running" in term.screen()
    finally:
        term.close()
    wait_for(lambda: checkpoints(h, sid, "detach"), timeout=120, what="the detach checkpoint")
    s = wait_for(lambda: (x := session(h, sid))["status"] == "detached" and x,
                 timeout=90, what="detached")
    assert s["attached_clients"] == 0
    assert h.task(task_id)["status"] == "running"
    assert "FIRST-ANSWER" in api.main_requests[-1].messages_text()
    h.run("session", "kill", sid, "-y", check=True)


def test_attach_over_ssh_pinned_host_key_and_a_server_with_another_key_refused(
        stack: tuple[Harness, FakeAnthropic], modal_standin: StandIn,  # noqa: F811
        tmp_path: Path) -> None:
    """`--ssh`: the real OpenSSH client with the session's own key (0600) and a
    known_hosts holding only the host key the worker reported, through the sandbox's raw
    TCP tunnel (the local sandbox's sshd stands in for OpenSSH's in the image). Then another
    server answers behind the tunnel: refused with E601, nothing sent."""
    h, api = stack
    api.add_replies(reply("SSH-FIRST-ANSWER from the fake."),
                    reply("SSH-SECOND-ANSWER: typed over SSH."))
    task_id, sid = interactive_on_modal(h, "Say hello over ssh.")
    container = h.task(task_id)["container_id"]
    assert modal_standin.sandbox(container)["unencrypted_ports"] == [22]
    [reported] = wait_for(lambda: h.events("--session", sid, "--type", "ssh_host_key"),
                          timeout=90, what="the sandbox's host key")
    host_key = reported["data"]["host_key"]
    assert host_key.startswith("ssh-ed25519 ")

    got = h.json("session", "attach", sid, "--ssh")
    key = Path(got["key_path"])
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    known = Path(got["known_hosts_path"]).read_text().splitlines()
    assert known == [f"[{got['host']}]:{got['port']} {host_key}"]
    argv = got["argv"]
    assert "StrictHostKeyChecking=yes" in argv and "StrictHostKeyChecking=no" not in argv
    assert f"UserKnownHostsFile={got['known_hosts_path']}" in argv
    assert any(a.startswith("ServerAliveInterval=") for a in argv)
    assert h.run("session", "attach", sid, "--ssh", "--print",
                 check=True).stdout.strip() == shlex.join(argv)

    term = Terminal(tmp_path / "t1", h.daemon.env, width=100, height=30)
    try:
        attach_in(term, h, sid, "--ssh")
        told = story(h, sid, term)
        wait_for(lambda: "SSH-FIRST-ANSWER" in term.screen(), timeout=90,
                 what="the TUI over ssh", detail=told)
        term.keys("And now?", literal=True)
        term.keys("Enter")
        wait_for(lambda: "SSH-SECOND-ANSWER" in term.screen(),
                 timeout=90, what="the answer over ssh", detail=told)
        term.keys("C-b", "d")
        wait_for(term.ended, timeout=90, what="ssh to end", detail=told)
        assert "goes on running" in term.screen(), told()
    finally:
        term.close()
    wait_for(lambda: checkpoints(h, sid, "detach"), timeout=120, what="the detach checkpoint",
             detail=story(h, sid))

    modal_standin.switch("ssh_mitm")  # another server behind the tunnel, another host key
    asked = len(api.main_requests)
    term = Terminal(tmp_path / "t2", h.daemon.env, width=100, height=30)
    try:
        attach_in(term, h, sid, "--ssh")
        wait_for(term.ended, timeout=90, what="the refused attach to end")
        screen = term.screen()
        assert "E601" in screen and "does not hold the host key" in screen, screen
        assert reported["data"]["fingerprint"] in screen
        assert "reconnecting" not in screen
    finally:
        term.close()
        modal_standin.switch("ssh_mitm", on=False)
    assert len(api.main_requests) == asked
    assert session(h, sid)["status"] == "detached"
    h.run("session", "kill", sid, "-y", check=True)
