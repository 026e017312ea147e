"""Following a task to its end: the live progress line, the event lines, the summary and
the exit status (`task create --sync`, `task watch`, `resume --sync`; the bridge's
``wait`` uses the progress line and the same notion of a task that waits for the user)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from parhelia import statuses as words
from parhelia_cli import render
from parhelia_cli.convert import task_dict, to_dict
from parhelia_cli.durations import human_count, human_seconds, usd_short
from parhelia_cli.errors import CliError, TaskOutcome

if TYPE_CHECKING:
    from parhelia_cli.api import Api


FINAL = words.TASK_FINAL


def progress_text(t: dict[str, Any], elapsed: float) -> str:
    """One line of a running task: status, turn, tokens, cost, time, last tool."""
    u = t["usage"] or {}
    if waits(t):
        return f"{t['status']}: {wait_text(t)} | {human_seconds(elapsed)}"
    parts = [t["status"] or "unknown", f"turn {u.get('turns', 0)}",
             f"{human_count(u.get('input_tokens', 0))} in / "
             f"{human_count(u.get('output_tokens', 0))} out",
             usd_short(u.get("total_cost_micros", 0)), human_seconds(elapsed)]
    if t["last_tool"]:
        parts.append(f"last tool: {render.safe(t['last_tool'])}")
    return " | ".join(parts)


def _history(api: Api, task_id: str) -> list[dict[str, Any]]:
    """Every event of the task so far, oldest first (``ExportEvents`` streams them: no
    list limit cuts a long history)."""
    from parhelia_cli.api import event_filter

    return [to_dict(e) for e in api.events.export(event_filter(task_id=task_id))]


def follow(api: Api, task_id: str, as_json: bool, history: bool = False) -> None:
    """Follow ``WatchTask`` until the task is final; print the result and a summary.

    Each event line shows the task as it was at that event (:mod:`parhelia_cli.timeline`);
    ``history`` first replays every earlier event, in order, with the state line
    following them (re-attaching with `task watch`). Exits 0 when it completed, 1
    otherwise; Ctrl-C detaches (the task keeps running).
    """
    from parhelia_cli.timeline import AtEvent

    last: dict[str, Any] | None = None
    elapsed = 0.0
    live: Any = None
    tty = render.is_tty() and not as_json
    at: AtEvent | None = None
    seen = 0  # the newest event id printed (the backlog and the stream overlap)

    def note(event: dict[str, Any]) -> str | None:
        nonlocal at, seen
        if at is None or (event["id"] and event["id"] <= seen):
            return None
        at, seen = at.after(event), max(seen, event["id"] or 0)
        return at.line(event)

    try:
        if tty:
            from rich.live import Live
            from rich.text import Text

            live = Live(Text("waiting for the task..."), console=render.console(),
                        refresh_per_second=4, transient=True)
            live.start()
        for progress in api.tasks.watch(task_id):
            last = task_dict(progress.task)
            elapsed = progress.elapsed_seconds
            event = to_dict(progress.event) if progress.HasField("event") else None
            if at is None:
                # The first message comes once the stream is subscribed: a backlog read
                # now leaves no gap, and the overlap is skipped by event id.
                earlier = _history(api, last["id"]) if history and not as_json else []
                at = AtEvent.start(last) if not earlier else AtEvent.before(last, earlier[0])
                if earlier:
                    render.line(f"Events of task {last['id']}, from its creation:")
                for old in earlier:
                    text = note(old)
                    if text:
                        render.line(text)
            if stuck(last):
                break
            if as_json:
                continue
            line_text = note(event) if event is not None else None
            if live is not None:
                from rich.text import Text

                if line_text and event and event["level"] in ("warning", "error"):
                    live.console.print(Text(line_text))
                live.update(Text(progress_text(last, elapsed)))
            elif line_text:
                render.line(line_text)
    except KeyboardInterrupt:
        if live is not None:
            live.stop()
            live = None
        render.info(f"\nDetached; task {task_id} keeps running. Re-attach with "
                    f"`parhelia task watch {task_id}`.")
        raise TaskOutcome(130) from None
    finally:
        if live is not None:
            live.stop()
    if last is None:
        raise CliError("E900", f"the daemon sent no progress for task {task_id}")
    if stuck(last):
        if as_json:
            render.emit_resource(last)
        raise CliError(last["status_code"],
                       f"task {last['id']} is {last['status']}: {last['status_reason']}. "
                       f"`parhelia task watch {last['id']}` follows it")
    _finish(last, elapsed, as_json, api)


def stuck(t: dict[str, Any]) -> bool:
    """The task waits for something only the user can change (it cannot fit the budget,
    the budget paused it): following it longer would hang."""
    return t["status"] in WAITING and bool(t["needs_user"]) and bool(t["status_code"])


def _changed_files(api: Api, task_id: str) -> int | None:
    """How many files the task changed (None when that cannot be told)."""
    try:
        resp = api.tasks.diff(task_id, stat_only=True)
    except CliError:
        return None
    return len(resp.files)


def _finish(t: dict[str, Any], elapsed: float, as_json: bool, api: Api | None = None
            ) -> None:
    status = t["status"]
    result = t["result"] or {}
    if as_json:
        render.emit_resource(t)
    else:
        if result.get("text"):
            render.line(render.safe(result["text"], multiline=True).rstrip("\n"))
            render.line()
        u = t["usage"] or {}
        render.fields([
            ("Status", render.status_word(status)),
            ("Turns", u.get("turns", 0)),
            ("Tokens", f"{human_count(u.get('input_tokens', 0))} in / "
                       f"{human_count(u.get('output_tokens', 0))} out"),
            ("Cost", usd_short(u.get("total_cost_micros", 0))),
            ("Duration", human_seconds(_duration(t) or elapsed)),
            ("Task", t["id"]),
        ])
        changed = _changed_files(api, t["id"]) if status == "completed" and api \
            and not unsaved(t) else None
        if changed == 0:
            render.line("\nThe task changed no files: there is nothing to pull.")
        elif status == "completed" and not unsaved(t):
            render.line(f"\nSee the changes: parhelia task diff {t['id']}   "
                        f"bring them back: parhelia task pull {t['id']}")
    if status == "completed" and not unsaved(t):
        return
    if status not in FINAL:
        raise CliError("E900", f"the progress stream ended while task {t['id']} is {status}; "
                               f"`parhelia task watch {t['id']}` re-attaches")
    code = result.get("error_code") or ("E603" if status == "cancelled" else "E900")
    message = render.safe(result.get("error_message") or t["status_reason"]
                          or f"the task {status}")
    render.error(CliError(code, message), as_json)
    raise TaskOutcome(1)


def unsaved(t: dict[str, Any]) -> bool:
    """A completed task whose result (its completion checkpoint) was not saved."""
    return t["status"] == "completed" and bool(t["needs_user"]) and bool(t["status_code"])


def _duration(t: dict[str, Any]) -> float | None:
    start, end = render.parse_ts(t["started_at"]), render.parse_ts(t["finished_at"])
    return (end - start).total_seconds() if start and end else None


WAITING = ("pending", "paused")


def waits(t: dict[str, Any]) -> bool:
    """A pending or paused task with a reason to show (why it is not running)."""
    return t["status"] in WAITING and bool(t["status_reason"])


def wait_text(t: dict[str, Any]) -> str:
    """Why a task waits: ``CODE reason`` (+ that it waits for the user)."""
    text = (f"{t['status_code']} " if t["status_code"] else "") + (t["status_reason"] or "")
    return text + (" [waits for you]" if t["needs_user"] else "")
