"""``parhelia top``: a live full-screen view of running and recent tasks.

Fed by ``TaskService.WatchAllTasks`` (the daemon pushes each task as its events commit;
nothing is polled), drawn with the standard library's curses: it works over SSH and in
an 80x24 terminal (every line is cut to the width, never wrapped), honours NO_COLOR,
and gives the terminal back on exit, on an error, on SIGTERM and on SIGHUP.

Keys: up/down (j/k) select, w (Enter) watch, l logs, a attach (`session attach`), c cancel
(asks y/n), q quit.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import click

from parhelia_cli import render
from parhelia_cli.api import Api
from parhelia_cli.context import settings
from parhelia_cli.convert import task_dict, to_dict
from parhelia_cli.durations import human_count, usd_short
from parhelia_cli.errors import CliError, missing

RECENT = 20
"""Finished tasks kept in view, newest first, below the unfinished ones."""
TICK_MS = 250
"""How long a key is waited for before the screen is looked at again (ages tick)."""
RECONNECT_S = 2.0
LIVE_ORDER = {"running": 0, "recovering": 1, "pending": 2, "paused": 3}
FINAL = ("completed", "failed", "cancelled")
KEYS_HELP = "w watch  l logs  a attach  c cancel  q quit"

# (header, width); the last column takes what is left.
COLUMNS: tuple[tuple[str, int], ...] = (
    ("ID", 14), ("STATUS", 10), ("HEALTH", 9), ("TURNS", 5), ("TOKENS", 7),
    ("COST", 7), ("BACKEND", 10), ("LAST TOOL", 0))


@dataclass
class Board:
    """What the screen shows: tasks by id, from the watch stream."""

    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    containers: dict[str, dict[str, Any]] = field(default_factory=dict)
    ready: bool = False
    """The daemon's first state is complete."""
    problem: str = ""
    """Why the view is not live now ("" when it is)."""

    def apply(self, progress: Any) -> None:
        if progress.snapshot_done:
            self.ready = True
            return
        if progress.HasField("task"):
            t = task_dict(progress.task)
            self.tasks[t["id"]] = t
            if progress.HasField("container"):
                self.containers[t["id"]] = to_dict(progress.container)
        elif progress.HasField("event") and progress.event.type == "task_deleted":
            self.tasks.pop(progress.event.task_id, None)
            self.containers.pop(progress.event.task_id, None)

    def ordered(self) -> list[dict[str, Any]]:
        """Unfinished tasks first (running, recovering, pending, paused; oldest first),
        then the newest ``RECENT`` finished ones."""
        live = sorted((t for t in self.tasks.values() if t["status"] not in FINAL),
                      key=lambda t: (LIVE_ORDER.get(t["status"], 9), t["created_at"] or ""))
        done = sorted((t for t in self.tasks.values() if t["status"] in FINAL),
                      key=lambda t: t["finished_at"] or t["updated_at"] or "", reverse=True)
        return live + done[:RECENT]


def fit(text: str, width: int) -> str:
    """``text`` cut (never wrapped) to ``width`` terminal cells, padded with spaces.
    Cells are rich's (``rich.cells``: grapheme clusters, so a combining mark, a joined
    emoji sequence or a skin-tone modifier stays with its character); a wide character
    that would straddle the edge is left out."""
    from rich.cells import set_cell_size

    return set_cell_size(text, max(0, width))


def row_cells(t: dict[str, Any], container: dict[str, Any] | None) -> list[str]:
    u = t["usage"] or {}
    o = t["options"] or {}
    status = t["status"] or "unknown"
    if t.get("overlaps"):
        status += "!"
    health = (container or {}).get("health") or ""
    if status.rstrip("!") in FINAL or not container:
        health = "-" if not health or status.rstrip("!") in FINAL else health
    where = o.get("backend") or "-"
    if o.get("gpu"):
        where = f"{where}:{o['gpu']}"
    tokens = human_count(u.get("input_tokens", 0) + u.get("output_tokens", 0))
    pr = t.get("pull_request") or {}
    last = f"PR #{pr['number']}" if pr.get("number") and status.rstrip("!") in FINAL \
        else render.safe(t["last_tool"]) or "-"
    return [t["id"], status, health, str(u.get("turns", 0)), tokens,
            usd_short(u.get("total_cost_micros", 0)), where, last]


def line_of(cells: list[str], width: int) -> str:
    parts = []
    used = 0
    for (_, w), cell in zip(COLUMNS, cells, strict=True):
        w = w or max(0, width - used)
        parts.append(fit(cell, w))
        used += w + 1
    return fit(" ".join(parts), width)


def header_of(width: int) -> str:
    return line_of([h for h, _ in COLUMNS], width)


def summary(board: Board) -> str:
    counts: dict[str, int] = {}
    for t in board.tasks.values():
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    cost = sum((t["usage"] or {}).get("total_cost_micros", 0) for t in board.tasks.values()
               if t["status"] not in FINAL)
    parts = [f"{counts.get(s, 0)} {s}" for s in ("running", "pending", "recovering", "paused")
             if counts.get(s)]
    live = ", ".join(parts) or "nothing running"
    state = board.problem or ("live" if board.ready else "connecting...")
    return f"parhelia top - {live} - {usd_short(cost)} in flight - {state}"


def detail_of(t: dict[str, Any] | None) -> str:
    """The selected task in one line: why it waits, its overlaps, or its prompt."""
    if t is None:
        return ""
    if t.get("overlaps"):
        o = t["overlaps"][0]
        first = render.clip(render.safe(o["paths"][0]), 40) if o["paths"] else ""
        more = len(t["overlaps"]) - 1
        return (f"! {t['id']}: task {o['task_id']} also changed {o['path_count']} of the same "
                f"path(s): {first}" + (f" (+{more} more tasks)" if more else ""))
    if t["status_reason"] and t["status"] not in ("running", "completed"):
        return f"{t['id']}: {render.safe(t['status_reason'])}"
    pr = t.get("pull_request") or {}
    if pr.get("url"):
        what = f"pull request #{pr['number']}" if pr.get("number") else "compare"
        return f"{t['id']}: {what} {render.safe(pr['url'])}"
    prompt = (t["prompt"] or "").strip().splitlines()
    return f"{t['id']}: {render.safe(prompt[0]) if prompt else ''}"


# --- the watch stream, in a thread ------------------------------------------------------

class Feed:
    """Follows WatchAllTasks in a daemon thread; updates and problems arrive on
    ``queue``. Reconnects after RECONNECT_S when the stream breaks (a daemon restart);
    it ends with the process (closing the connection cancels the stream)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="top-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.queue.put(("reset", None))
                for progress in self.api.tasks.watch_all(recent=RECENT):
                    if self._stop.is_set():
                        return
                    self.queue.put(("progress", progress))
                problem = "the daemon ended the stream"
            except CliError as exc:
                problem = exc.message
            if self._stop.is_set():
                return
            self.queue.put(("problem", f"reconnecting: {problem}"))
            self._stop.wait(RECONNECT_S)


# --- the screen -------------------------------------------------------------------------

@contextlib.contextmanager
def _restored_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP end the view like q does (curses.wrapper then restores the
    terminal)."""
    def stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


class Screen:
    def __init__(self, stdscr: Any, api: Api, socket: str, feed: Feed,
                 self_argv: list[str]) -> None:
        import curses

        self.curses = curses
        self.scr = stdscr
        self.api = api
        self.socket = socket
        self.feed = feed
        self.argv = self_argv
        self.board = Board()
        self.selected = 0
        self.selected_id: str | None = None
        """The task the selection is on: it follows the task when rows reorder."""
        self.message = ""
        self.colour = "NO_COLOR" not in os.environ and curses.has_colors()
        self.styles: dict[str, int] = {}
        if self.colour:
            with contextlib.suppress(curses.error):
                curses.start_color()
                curses.use_default_colors()
            pairs = {"running": curses.COLOR_BLUE, "recovering": curses.COLOR_YELLOW,
                     "paused": curses.COLOR_YELLOW, "pending": curses.COLOR_CYAN,
                     "completed": curses.COLOR_GREEN, "failed": curses.COLOR_RED,
                     "cancelled": curses.COLOR_MAGENTA}
            for n, (word, fg) in enumerate(pairs.items(), 1):
                with contextlib.suppress(curses.error):
                    curses.init_pair(n, fg, -1)
                    self.styles[word] = curses.color_pair(n)
        with contextlib.suppress(curses.error):
            curses.curs_set(0)
        stdscr.keypad(True)
        stdscr.timeout(TICK_MS)

    # drawing

    def put(self, y: int, text: str, attr: int = 0) -> None:
        height, width = self.scr.getmaxyx()
        if 0 <= y < height:
            # The bottom-right cell cannot be written without scrolling: one column less.
            with contextlib.suppress(self.curses.error):
                self.scr.addnstr(y, 0, fit(text, width - 1), width - 1, attr)

    def draw(self) -> None:
        self.scr.erase()
        height, width = self.scr.getmaxyx()
        rows = self.board.ordered()
        self.follow_selection(rows)
        self.put(0, summary(self.board), self.curses.A_BOLD)
        self.put(1, header_of(width - 1), self.curses.A_REVERSE)
        room = max(0, height - 5)
        top = max(0, self.selected - room + 1)
        for i, t in enumerate(rows[top: top + room]):
            index = top + i
            attr = self.styles.get(t["status"], 0)
            if index == self.selected:
                attr |= self.curses.A_REVERSE
            self.put(2 + i, line_of(row_cells(t, self.board.containers.get(t["id"])),
                                    width - 1), attr)
        if not rows:
            self.put(2, "No tasks yet. Create one with `parhelia task create \"...\"`."
                     if self.board.ready else "Waiting for the daemon...")
        chosen = rows[self.selected] if rows else None
        self.put(height - 3, detail_of(chosen), self.curses.A_BOLD if chosen and
                 chosen.get("overlaps") else 0)
        self.put(height - 2, self.message)
        self.put(height - 1, KEYS_HELP, self.curses.A_DIM)
        self.scr.refresh()

    def follow_selection(self, rows: list[dict[str, Any]]) -> None:
        """Keep the selection on the same task when rows reorder (a task finishes and
        moves down, a new one appears above); on the same row when its task is gone."""
        ids = [t["id"] for t in rows]
        if self.selected_id in ids:
            self.selected = ids.index(self.selected_id)
        self.selected = max(0, min(self.selected, len(rows) - 1))
        self.selected_id = ids[self.selected] if rows else None

    def move(self, step: int) -> None:
        rows = self.board.ordered()
        self.selected = max(0, min(self.selected + step, len(rows) - 1))
        self.selected_id = rows[self.selected]["id"] if rows else None

    # the loop

    def selected_task(self) -> dict[str, Any] | None:
        rows = self.board.ordered()
        return rows[self.selected] if 0 <= self.selected < len(rows) else None

    def drain(self) -> bool:
        changed = False
        while True:
            try:
                kind, value = self.feed.queue.get_nowait()
            except queue.Empty:
                return changed
            changed = True
            if kind == "progress":
                self.board.apply(value)
                self.board.problem = ""
            elif kind == "reset":
                self.board.ready = False
            elif kind == "problem":
                self.board.problem = str(value)

    def run(self) -> None:
        last_draw = 0.0
        while True:
            changed = self.drain()
            if changed or time.monotonic() - last_draw > 1.0:
                self.draw()
                last_draw = time.monotonic()
            key = self.scr.getch()
            if key == -1:
                continue
            if not self.key(key):
                return
            self.draw()
            last_draw = time.monotonic()

    def key(self, key: int) -> bool:
        """Handle one key; False to quit."""
        c = self.curses
        if key in (ord("q"), ord("Q"), 27):
            return False
        if key in (c.KEY_UP, ord("k")):
            self.move(-1)
        elif key in (c.KEY_DOWN, ord("j")):
            self.move(1)
        elif key == c.KEY_RESIZE:
            pass
        else:
            t = self.selected_task()
            if t is None:
                self.message = "No task selected."
            elif key in (ord("w"), ord("\n"), c.KEY_ENTER):
                self.outside(["task", "watch", t["id"]], view=True)
            elif key == ord("l"):
                self.outside(["task", "logs", "--follow", t["id"]], view=True)
            elif key == ord("a"):
                self.attach(t)
            elif key == ord("c"):
                self.cancel(t)
        return True

    def attach(self, t: dict[str, Any]) -> None:
        """`parhelia session attach` on the real terminal (it offers to take a headless
        session over, and says how to detach)."""
        if not t["session_id"] or t["status"] in FINAL or t["status"] == "pending":
            self.message = (f"Cannot attach to {t['id']}: it is {t['status']}; nothing runs "
                            "to attach to.")
        else:
            self.outside(["session", "attach", t["session_id"]])

    def cancel(self, t: dict[str, Any]) -> None:
        if t["status"] in FINAL:
            self.message = f"Task {t['id']} is already {t['status']}."
            return
        self.message = (f"Cancel task {t['id']} ({t['status']})? A checkpoint is taken "
                        "first. y/N")
        self.draw()
        self.scr.timeout(-1)
        try:
            answer = self.scr.getch()
        finally:
            self.scr.timeout(TICK_MS)
        if answer not in (ord("y"), ord("Y")):
            self.message = f"Not cancelled: {t['id']}."
            return
        try:
            done = task_dict(self.api.tasks.cancel(t["id"]))
        except CliError as exc:
            self.message = f"{exc.code}: {render.safe(exc.message)}"
            return
        self.board.tasks[done["id"]] = {**self.board.tasks.get(done["id"], {}), **done}
        self.message = f"Cancelling {done['id']} (now {done['status']})."

    def outside(self, args: list[str], view: bool = False) -> None:
        """Run ``parhelia ARGS`` on the real terminal, then come back (Ctrl-C ends it).
        ``view`` (watch, logs: they read no keys): a first line says how to get back,
        and q or Esc end the view and return at once."""
        c = self.curses
        c.def_prog_mode()
        c.endwin()
        env = {**os.environ, "PARHELIA_SOCKET": self.socket}
        try:
            if view:
                sys.stdout.write(f"-- {' '.join(args)} -- q, Esc or Ctrl-C: back to top\n")
                sys.stdout.flush()
            child = subprocess.Popen([*self.argv, *args], env=env)
            if view and _until_key_or_exit(child, (b"q", b"Q", b"\x1b")):
                return
            while True:
                try:
                    child.wait()
                    break
                except KeyboardInterrupt:
                    continue  # Ctrl-C reached the child too: it ends, top stays
            sys.stdout.write("\n-- press a key to return to parhelia top --")
            sys.stdout.flush()
            _one_key()
        finally:
            c.reset_prog_mode()
            self.scr.clear()
        self.message = f"Back from `parhelia {' '.join(args)}`."


def _until_key_or_exit(child: subprocess.Popen[bytes], keys: tuple[bytes, ...]) -> bool:
    """Wait for ``child`` while reading keys (cbreak, no echo): True when one of ``keys``
    ended it (SIGINT, as Ctrl-C would), False when it ended by itself or by Ctrl-C."""
    import select
    import signal
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        while child.poll() is None:
            try:
                ready, _, _ = select.select([fd], [], [], 0.2)
            except KeyboardInterrupt:
                continue  # Ctrl-C reached the child too: it ends
            if ready and os.read(fd, 1) in keys:
                child.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(5)
                if child.poll() is None:
                    child.kill()
                    child.wait()
                return True
        return False
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _one_key() -> None:
    """Wait for one key on the terminal outside curses (no echo, no Enter needed)."""
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        os.read(fd, 1)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def self_argv() -> list[str]:
    """How to run this CLI again (for watch, logs, attach)."""
    return [sys.executable, "-m", "parhelia_cli"]


def run_screen(api: Api, socket: str) -> None:
    import curses

    feed = Feed(api)
    feed.start()

    def main(stdscr: Any) -> None:
        Screen(stdscr, api, socket, feed, self_argv()).run()

    try:
        with _restored_on_signals():
            curses.wrapper(main)
    except KeyboardInterrupt:
        pass
    finally:
        feed.stop()


@click.command()
def top() -> None:
    """A live full-screen view of running and recent tasks: status, health, turns,
    tokens, cost, backend and GPU, last tool; overlaps marked with !.

    Keys: up/down (j/k) select, w or Enter watch, l logs, a attach, c cancel (asks
    y/n), q quit. Needs a terminal (works over SSH, from 80x24; NO_COLOR honoured).
    """
    if not (render.is_tty(sys.stdin) and render.is_tty(sys.stdout)):
        raise missing("`parhelia top` draws on a terminal and stdin/stdout are not one; "
                      "`parhelia task list --active` or `parhelia events watch` print "
                      "the same for scripts")
    if os.environ.get("TERM", "") in ("", "dumb"):
        raise missing("`parhelia top` needs a terminal that can move the cursor (TERM is "
                      f"{os.environ.get('TERM', '') or 'unset'}); `parhelia task list "
                      "--active` prints the same once")
    client = settings().client()
    run_screen(client.api, str(client.socket))
