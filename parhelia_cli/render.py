"""Output: JSON for machines, rich tables for people, errors and warnings on stderr.

``rich`` is imported only when a table is drawn. Colour and styles are used only
when the stream is a terminal and ``NO_COLOR`` is unset; nothing live is drawn
when stdout is not a terminal.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

import click

from parhelia_cli.durations import human_seconds

if TYPE_CHECKING:
    from rich.console import Console

    from parhelia_cli.errors import CliError

_warned: set[str] = set()


def is_tty(stream: IO[Any] | None = None) -> bool:
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def color_enabled(stream: IO[Any] | None = None) -> bool:
    """Colour only on a terminal, without ``NO_COLOR``, and not on a dumb terminal."""
    return (is_tty(stream) and "NO_COLOR" not in os.environ
            and os.environ.get("TERM") != "dumb")


def console(stderr: bool = False) -> Console:
    """A rich console for stdout (or stderr) honouring TTY and ``NO_COLOR``."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if color_enabled(stream):
        return Console(file=stream, highlight=False)
    if is_tty(stream) and os.environ.get("TERM") != "dumb":
        # NO_COLOR takes the colours away, not the terminal: live lines and bars still
        # redraw in place.
        return Console(file=stream, no_color=True, color_system=None, highlight=False,
                       emoji=False)
    width = None if is_tty(stream) else 200
    return Console(file=stream, color_system=None, highlight=False, width=width,
                   force_terminal=False, emoji=False)


def emit_json(value: Any, compact: bool = False) -> None:
    """Print ``value`` as JSON on stdout: indented on a terminal, else on one line
    (``compact`` forces one line; the C encoder is 3-4x faster without indent)."""
    import json

    if compact or not is_tty():
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    else:
        text = json.dumps(value, ensure_ascii=False, indent=2)
    click.echo(text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e"
                     "\u2066-\u2069]")
_UNSAFE_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e"
                              "\u2066-\u2069]")


def safe(text: str | None, multiline: bool = False) -> str:
    """``text`` (a prompt, an agent's result, a file name, an event message: anything
    the agent, a repository or a user may have written) made safe for a terminal:
    control characters (escape sequences, carriage returns, backspaces) and bidi
    overrides become visible ``\\x1b``-style escapes. ``multiline`` keeps newlines and
    tabs; otherwise they are escaped too. The one place such strings are neutralised."""
    if not text:
        return ""
    return (_UNSAFE if multiline else _UNSAFE_ONE_LINE).sub(_escape, text)


def clip(text: str, width: int) -> str:
    """``text`` (already made :func:`safe`) cut to ``width`` characters, the middle
    replaced by ``...`` (both ends of a long path name the file)."""
    if width <= 3 or len(text) <= width:
        return text[: max(0, width)]
    keep = width - 3
    return text[: keep - keep // 2] + "..." + text[len(text) - keep // 2:]


def emit_resource(resource: dict[str, Any], **related: Any) -> None:
    """The one ``--json`` shape of a show/create/action command: the resource object
    itself (its ``id`` at the top level), with data about related things under named
    keys (``manifest``, ``recent_heartbeats``). Lists print ``{"<kind>s": [...],
    "next_page_token": ...}`` (:func:`emit_page`),
    errors ``{"error": {...}}`` on stderr (see ``parhelia help json``)."""
    from parhelia_cli.convert import with_related

    emit_json(with_related(resource, **related))


def emit_page(key: str, items: list[Any], next_page_token: str) -> None:
    """The ``--json`` shape of a list: ``{"<kind>s": [...], "next_page_token": ...}``,
    the token (null when nothing more matches) asking for the next page."""
    emit_json({key: items, "next_page_token": next_page_token or None})


def more(next_page_token: str) -> None:
    """After a list's table: how to see the next page, when there is one (stderr)."""
    if next_page_token:
        info(f"More: repeat with --page-token {next_page_token} for the next page.")


def line(text: str = "", err: bool = False) -> None:
    """Plain text; flushed so pipes see lines as they happen."""
    click.echo(text, err=err)
    (sys.stderr if err else sys.stdout).flush()


def info(text: str) -> None:
    """A side note for people (stderr, so stdout stays scriptable)."""
    click.echo(text, err=True)


def warn(text: str) -> None:
    """``Warning: text`` on stderr, at most once per invocation for the same text."""
    if text in _warned:
        return
    _warned.add(text)
    prefix = click.style("Warning:", fg="yellow", bold=True) if color_enabled(sys.stderr) \
        else "Warning:"
    click.echo(f"{prefix} {text}", err=True)


def error(err: CliError, as_json: bool) -> None:
    """``Error E### NAME: message`` plus a hint line on stderr (JSON too with ``--json``)."""
    if as_json:
        import json

        payload = {"error": {"code": err.code, "name": err.spec.name, "message": err.message}}
        click.echo(json.dumps(payload, ensure_ascii=False), err=True)
        return
    head = f"Error {err.code} {err.spec.name}:"
    if color_enabled(sys.stderr):
        head = click.style(head, fg="red", bold=True)
    click.echo(f"{head} {err.message}", err=True)
    hint = err.hint if err.hint is not None else f"See `parhelia help {err.code}` for what to do."
    if hint:
        click.echo(f"Hint: {hint}", err=True)


_ID_RE = re.compile(r"(t|s|c|cp)-[0-9a-f]{4,}")


def _is_id(value: Any) -> bool:
    """Whether a cell holds a Parhelia id (``t-``, ``s-``, ``c-``, ``cp-`` + hex)."""
    text = value[0] if isinstance(value, tuple) else value
    return isinstance(text, str) and _ID_RE.fullmatch(text) is not None


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None,
          empty: str = "Nothing to show.") -> None:
    """A simple table on stdout (plain aligned columns when not on a terminal).

    Columns of ids are never cut or wrapped, so an id can always be copied; when the
    terminal is narrow the other columns shrink (ending in "…") instead, and when even
    that is not enough, id columns after the first are left out (and a line says which).
    """
    from rich import box
    from rich.table import Column, Table
    from rich.text import Text

    rows = list(rows)
    if not rows:
        line(empty)
        return
    out = console()
    id_width: dict[int, int] = {}
    for i, name in enumerate(columns):
        values = [r[i] for r in rows if i < len(r) and r[i] not in (None, "", "-")]
        if values and all(_is_id(v) for v in values):
            id_width[i] = max(len(name), *(len(v[0] if isinstance(v, tuple) else v)
                                           for v in values))
    keep = list(range(len(columns)))

    def needed() -> int:  # ids whole, every other column at least 4 wide, 2 between
        return sum(id_width.get(i, 4) for i in keep) + 2 * (len(keep) - 1)

    dropped = []
    for i in sorted(id_width, reverse=True):
        if needed() <= out.width or i == 0:
            break
        keep.remove(i)
        dropped.append(columns[i])
    specs = [Column(columns[i], no_wrap=True, min_width=id_width[i]) if i in id_width
             else Column(columns[i], no_wrap=True, overflow="ellipsis") for i in keep]
    t = Table(*specs, title=title, box=box.SIMPLE_HEAD if out.is_terminal else box.SIMPLE,
              header_style="bold" if out.is_terminal else "", title_justify="left",
              pad_edge=False)
    for row in rows:
        t.add_row(*(_cell(row[i] if i < len(row) else "", Text) for i in keep))
    out.print(t)
    if dropped:
        line(f"(Too narrow for {', '.join(reversed(dropped))}: widen the terminal or use "
             "--json.)")


def _cell(value: Any, text_cls: Any) -> Any:
    """A table cell: plain text (never rich markup), or ``(text, style)``."""
    if isinstance(value, tuple):
        return text_cls(safe(str(value[0])), style=value[1] or "")
    return text_cls("" if value is None else safe(str(value)))


def fields(pairs: Sequence[tuple[str, Any]], title: str | None = None) -> None:
    """``Label: value`` lines, aligned (values of None are skipped)."""
    shown = [(k, v) for k, v in pairs if v is not None and v != ""]
    width = max((len(k) for k, _ in shown), default=0)
    if title:
        line(click.style(title, bold=True) if color_enabled() else title)
    for key, value in shown:
        line(f"  {key + ':':<{width + 1}} {value}")


def parse_ts(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value)


def age(value: str | None, now: datetime | None = None) -> str:
    """``5m ago`` for an RFC 3339 timestamp in the past, ``in 3s`` for one in the future
    ("" when unset)."""
    dt = parse_ts(value)
    if dt is None:
        return ""
    seconds = ((now or datetime.now(UTC)) - dt).total_seconds()
    if seconds <= -1:
        return f"in {human_seconds(-seconds)}"
    if seconds < 1:
        return "just now" if seconds >= 0 else "now"
    return f"{human_seconds(seconds)} ago"


def when(value: str | None) -> str | None:
    """``2026-11-28 19:00:03Z (5m ago)`` for detail views (None when unset)."""
    dt = parse_ts(value)
    if dt is None:
        return None
    return f"{dt.strftime('%Y-%m-%d %H:%M:%SZ')} ({age(value)})"


def style(text: str, spec: str) -> str:
    """Apply a rich-like style word (``green``, ``red``, ``bold``...) only when colour is on."""
    if not spec or not color_enabled():
        return text
    if spec == "bold":
        return click.style(text, bold=True)
    if spec == "dim":
        return click.style(text, dim=True)
    return click.style(text, fg=spec)


STATUS_COLOURS = {"pending": "cyan", "running": "blue", "recovering": "yellow",
                  "paused": "yellow", "completed": "green", "failed": "red",
                  "cancelled": "magenta", "ok": "green", "warn": "yellow", "fail": "red",
                  "error": "red", "warning": "yellow", "info": "", "debug": "dim"}


def status_word(status: str | None) -> str:
    """A status for plain lines, coloured when colour is on."""
    word = status or "unknown"
    colour = STATUS_COLOURS.get(word, "")
    return style(word, colour) if colour else word


def status_cell(status: str | None) -> tuple[str, str]:
    """A status for table cells: ``(word, style)``."""
    word = status or "unknown"
    return word, STATUS_COLOURS.get(word, "")
