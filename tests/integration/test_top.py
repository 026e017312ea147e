"""`parhelia top` driven in a REAL tmux (80x24): three running fake-agent tasks appear
and their turns change as the daemon pushes them; c then y cancels the selected task
(the daemon shows it cancelled); w and a run `task watch` and `session attach` on the
real terminal and come back; NO_COLOR leaves no colour; q and SIGTERM give the terminal
back (tmux says the pane left the alternate screen)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.daemon import cli_argv
from tests.helpers.harness import Harness, fake_prompt, wait_for

WIDTH, HEIGHT = 80, 24
# A colour other than tmux's white-on-black default (which curses always sets).
COLOUR = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-6]|4[1-7]|9[0-7]|38|48)(?:;[0-9;]*)?m")


class Tmux:
    def __init__(self, socket: Path, env: dict[str, str]) -> None:
        self.socket = socket
        self.env = env

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", str(self.socket), *args], env=self.env,
                              capture_output=True, text=True, check=True, timeout=30).stdout

    def screen(self, escapes: bool = False) -> str:
        return self("capture-pane", "-p", *(["-e"] if escapes else []), "-t", "top")

    def rows(self) -> dict[str, list[str]]:
        """Task rows on screen by id: their cells split on spaces."""
        out = {}
        for line in self.screen().splitlines():
            cells = line.split()
            if cells and cells[0].startswith("t-"):
                out[cells[0]] = cells
        return out

    def flag(self, name: str) -> str:
        return self("display-message", "-p", "-t", "top", f"#{{{name}}}").strip()


def _until(what: str, check: Callable[[], object]) -> object:
    return wait_for(check, 45, what)


@pytest.fixture
def tmux(harness: Harness, tmp_path: Path) -> object:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is needed for the terminal tests (apt-get install tmux)")
    t = Tmux(tmp_path / "tmux.sock", {**harness.daemon.env, "TERM": "xterm-256color"})
    t("-f", "/dev/null", "new-session", "-d", "-s", "top", "-x", str(WIDTH), "-y", str(HEIGHT),
      "sh")
    yield t
    subprocess.run(["tmux", "-S", str(t.socket), "kill-server"], capture_output=True,
                   check=False)


def test_top_shows_live_turns_and_cancels_after_confirmation(harness: Harness,
                                                             tmux: Tmux) -> None:
    steps = [[{"write": f"n{i}.txt", "content": str(i)}, {"turn": True}, {"sleep": 0.6}]
             for i in range(100)]
    prompt = fake_prompt(*[step for group in steps for step in group], text="Count turns.")
    ids = [harness.create(prompt) for _ in range(3)]
    for task_id in ids:
        harness.wait(task_id, ("running",))
    command = shlex.join([*cli_argv(), "top"])
    tmux("send-keys", "-t", "top", command, "Enter")

    first = _until("three running tasks on screen", lambda: (
        rows if all(i in (rows := tmux.rows()) and rows[i][1] == "running" for i in ids)
        else None))
    assert isinstance(first, dict)
    screen = tmux.screen()
    lines = screen.splitlines()
    assert len(lines) <= HEIGHT and all(len(line) <= WIDTH for line in lines)
    assert "ID" in lines[1] and "TURNS" in lines[1] and "LAST TOOL" in lines[1]
    assert "q quit" in screen and "c cancel" in screen
    assert tmux.flag("alternate_on") == "1"
    assert not COLOUR.search(tmux.screen(escapes=True))  # NO_COLOR is set in the harness
    turns = {i: int(first[i][3]) for i in ids}
    _until("every task's turns to grow on screen", lambda: all(
        i in (rows := tmux.rows()) and int(rows[i][3]) > turns[i] for i in ids))

    # The first row is selected (running tasks, oldest first): cancel it, saying no first.
    target = ids[0]
    tmux("send-keys", "-t", "top", "c")
    _until("the confirmation", lambda: f"Cancel task {target} (running)?" in tmux.screen())
    tmux("send-keys", "-t", "top", "n")
    _until("the refusal", lambda: f"Not cancelled: {target}" in tmux.screen())
    assert harness.task(target)["status"] == "running"
    tmux("send-keys", "-t", "top", "c")
    _until("the confirmation again", lambda: f"Cancel task {target}" in tmux.screen())
    tmux("send-keys", "-t", "top", "y")
    assert harness.wait(target, ("cancelled",))["status"] == "cancelled"
    _until("the cancelled row", lambda: (tmux.rows().get(target) or [None, None])[1]
           == "cancelled")
    assert all(tmux.rows()[i][1] == "running" for i in ids[1:])
    # The selection stayed on the cancelled task, now below the running ones: go up.
    assert tmux.screen().splitlines()[HEIGHT - 3].startswith(target)
    tmux("send-keys", "-t", "top", "k", "k")
    _until("the first running task selected",
           lambda: tmux.screen().splitlines()[HEIGHT - 3].startswith(ids[1]))

    # w runs `task watch` on the real terminal; Ctrl-C ends it, a key comes back.
    tmux("send-keys", "-t", "top", "w")
    _until("task watch's live line", lambda: "running | turn" in tmux.screen()
           and "agent_turn_completed" in tmux.screen())
    assert tmux.flag("alternate_on") == "0"  # on the real terminal, not top's screen
    tmux("send-keys", "-t", "top", "C-c")
    _until("the way back", lambda: "press a key to return to parhelia top" in tmux.screen())
    tmux("send-keys", "-t", "top", "x")
    _until("top again", lambda: "q quit" in tmux.screen() and ids[1] in tmux.rows())
    assert harness.task(ids[1])["status"] == "running"  # detaching left it running

    # a runs `session attach` on the real terminal: a headless session is offered to be
    # taken over; no leaves it running headless.
    tmux("send-keys", "-t", "top", "a")
    _until("the take-over question", lambda: "runs headless. Take it over?" in tmux.screen())
    tmux("send-keys", "-t", "top", "n", "Enter")
    _until("the way back", lambda: "Nothing was done." in tmux.screen()
           and "press a key to return to parhelia top" in tmux.screen())
    tmux("send-keys", "-t", "top", "x")
    _until("top again", lambda: "q quit" in tmux.screen() and ids[1] in tmux.rows())
    assert harness.task(ids[1])["status"] == "running"

    tmux("send-keys", "-t", "top", "q")
    _until("the shell back", lambda: tmux.flag("alternate_on") == "0")
    assert tmux.flag("cursor_flag") == "1"

    # SIGTERM restores the terminal too.
    tmux("send-keys", "-t", "top", command, "Enter")
    _until("top again", lambda: tmux.flag("alternate_on") == "1" and ids[1] in tmux.screen())
    shell = tmux.flag("pane_pid")
    child = subprocess.run(["pgrep", "-P", shell], capture_output=True, text=True,
                           check=True).stdout.split()[0]
    subprocess.run(["kill", "-TERM", child], check=True)
    _until("the terminal restored after SIGTERM", lambda: tmux.flag("alternate_on") == "0")
    assert tmux.flag("cursor_flag") == "1"
    for task_id in ids[1:]:
        harness.run("task", "cancel", task_id)


def test_item6_selection_follows_the_task_and_views_say_how_to_go_back(
        harness: Harness, tmux: Tmux) -> None:
    """Issue 27, item 6: the selection stays on its task when the rows reorder (a task
    above it finishes and moves down), and the watch and logs views say how to get back
    and go back on q or Esc."""
    busy = harness.create(fake_prompt({"sleep": 120}, text="Busy."))
    held = harness.create("Held for later.", "--no-dispatch")
    harness.wait(busy, ("running",))
    tmux("send-keys", "-t", "top", shlex.join([*cli_argv(), "top"]), "Enter")
    _until("both rows", lambda: busy in tmux.rows() and held in tmux.rows())

    def detail() -> str:
        return tmux.screen().splitlines()[HEIGHT - 3]

    tmux("send-keys", "-t", "top", "j")  # the second row: the held task
    _until("the held task selected", lambda: detail().startswith(held))
    harness.run("task", "cancel", busy, check=True)  # it moves below the held one
    _until("the cancelled task moved down", lambda: [
        line.split()[0] for line in tmux.screen().splitlines()
        if line.split() and line.split()[0] in (busy, held)] == [held, busy])
    assert detail().startswith(held), tmux.screen()  # still the held task

    for key, view in (("w", "task watch"), ("l", "task logs")):
        tmux("send-keys", "-t", "top", key)
        wait_for(lambda view=view: (
            f"-- {view}" in tmux.screen()
            and "-- q, Esc or Ctrl-C: back to top" in tmux.screen()), 45,
            f"the way back from {view}", detail=tmux.screen)
        assert tmux.flag("alternate_on") == "0"
        tmux("send-keys", "-t", "top", "q" if key == "w" else "Escape")
        _until(f"top again after {view}", lambda: tmux.flag("alternate_on") == "1"
               and "q quit" in tmux.screen())
    tmux("send-keys", "-t", "top", "q")
    _until("the shell back", lambda: tmux.flag("alternate_on") == "0")
