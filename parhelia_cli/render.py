"""Output: JSON for machines, rich tables for people, errors and warnings on stderr.

``rich`` is imported only when a table is drawn. Colour and styles are used only
when the stream is a terminal and ``NO_COLOR`` is unset; nothing live is drawn
when stdout is not a terminal.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
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
    (``compact`` forces one line)."""
    from parhelia_cli.convert import json_text

    click.echo(json_text(value, pretty=not compact and is_tty()))


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
    """Print a list's ``--json`` shape (:func:`parhelia_cli.convert.page`)."""
    from parhelia_cli.convert import page

    emit_json(page(key, items, next_page_token))


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


def warn(text: str, key: str | None = None) -> None:
    """``Warning: text`` on stderr, at most once per invocation for the same text (or
    the same ``key``, when the text varies but the news does not)."""
    if (key or text) in _warned:
        return
    _warned.add(key or text)
    prefix = click.style("Warning:", fg="yellow", bold=True) if color_enabled(sys.stderr) \
        else "Warning:"
    click.echo(f"{prefix} {text}", err=True)


def error(err: CliError, as_json: bool) -> None:
    """``Error E### NAME: message`` plus a hint line on stderr (JSON too with ``--json``)."""
    if as_json:
        click.echo(err.json(), err=True)
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


FLEX_MIN = 8
"""The narrowest a free-text column gets before other columns give up width."""
OTHER_MIN = 3
"""The narrowest a column that may shrink gets before extra id columns are left out."""
_GAP = 2  # between two columns: a padding of one on the right and the (blank) divider
_MONEY = re.compile(r"-?\$[\d,]+\.\d+")


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None,
          empty: str = "Nothing to show.", flex: Sequence[str] = ()) -> None:
    """A table on stdout, as ``gh`` draws one.

    Not on a terminal: one line per row, fields separated by tabs, with no header, no
    title, no padding and nothing cut (``cut -f1`` gives the first column). On a
    terminal: columns of ids, statuses (cells given as ``(word, style)``) and amounts
    (``$1.25``) are kept whole; the free-text columns (``flex``; by default the column
    with the longest text) get the rest of the width and end in "…" when cut. When the
    width is too small, the free text shrinks first, then the other columns, then id
    columns after the first are left out (a line says which).
    """
    cells = [[_plain(r[i]) if i < len(r) else ("", "") for i in range(len(columns))]
             for r in rows]
    if not cells:
        line(empty)
        return
    if not is_tty():
        for row in cells:
            line("\t".join(text.replace("\t", " ").replace("\n", " ") for text, _ in row))
        return
    styled = {i for i in range(len(columns))
              for r in rows if i < len(r) and isinstance(r[i], tuple)}
    _draw(columns, cells, title, flex, styled)


def _plain(value: Any) -> tuple[str, str]:
    """A cell as (safe text, style): plain text, never rich markup."""
    if isinstance(value, tuple):
        return safe(str(value[0])), str(value[1] or "")
    return ("" if value is None else safe(str(value))), ""


def _draw(columns: Sequence[str], rows: list[list[tuple[str, str]]], title: str | None,
          flex_names: Sequence[str], styled: set[int]) -> None:
    from rich import box
    from rich.cells import cell_len
    from rich.table import Column, Table
    from rich.text import Text

    out = console()
    natural = [max(cell_len(name), *(cell_len(r[i][0]) for r in rows))
               for i, name in enumerate(columns)]

    def every(i: int, test: Callable[[str], bool]) -> bool:
        shown = [r[i][0] for r in rows if r[i][0] not in ("", "-")]
        return bool(shown) and all(test(v) for v in shown)

    ids = {i for i in range(len(columns)) if every(i, _is_id)}
    whole = ids | styled | {i for i in range(len(columns))
                            if every(i, lambda v: _MONEY.fullmatch(v) is not None)}
    flex = {i for i, name in enumerate(columns) if name in flex_names}
    if not flex:
        candidates = [i for i in range(len(columns)) if i not in whole]
        widest = max(candidates, key=lambda i: natural[i], default=None)
        if widest is not None and natural[widest] > FLEX_MIN:
            flex = {widest}
    keep = list(range(len(columns)))

    def need(other_min: int) -> int:
        return sum(min(natural[i], FLEX_MIN) if i in flex else natural[i] if i in whole
                   else min(natural[i], other_min) for i in keep) + _GAP * (len(keep) - 1)

    dropped = []
    for i in sorted(ids, reverse=True):
        if need(OTHER_MIN) <= out.width or i == min(ids):
            break
        keep.remove(i)
        dropped.append(columns[i])
    specs = []
    if need(OTHER_MIN) <= out.width:
        gaps = _GAP * (len(keep) - 1)
        fixed = sum(natural[i] for i in keep if i in whole)
        others = [i for i in keep if i not in whole and i not in flex]
        flexed = [i for i in keep if i in flex]
        if need(10**6) <= out.width:  # every other column whole: free text takes the rest
            widths = dict(zip(others, (natural[i] for i in others), strict=True))
            room = out.width - fixed - gaps - sum(widths.values())
            widths.update(zip(flexed, _share(room, [natural[i] for i in flexed]), strict=True))
        else:  # free text at its least, the other columns share what is left
            widths = {i: min(natural[i], FLEX_MIN) for i in flexed}
            room = out.width - fixed - gaps - sum(widths.values())
            widths.update(zip(others, _share(room, [natural[i] for i in others]),
                              strict=True))
        for i in keep:
            specs.append(Column(columns[i], no_wrap=True, overflow="ellipsis",
                                width=natural[i] if i in whole else widths[i]))
    else:  # too narrow even so: rich shrinks what is not an id
        specs = [Column(columns[i], no_wrap=True, min_width=natural[i]) if i in ids
                 else Column(columns[i], no_wrap=True, overflow="ellipsis") for i in keep]
    t = Table(*specs, title=title, box=box.SIMPLE_HEAD, header_style="bold",
              title_justify="left", pad_edge=False, show_edge=False, padding=(0, 1, 0, 0))
    for row in rows:
        t.add_row(*(Text(row[i][0], style=row[i][1]) for i in keep))
    out.print(t)
    if dropped:
        line(f"(Too narrow for {', '.join(reversed(dropped))}: widen the terminal or use "
             "--json.)")


def _share(room: int, wants: list[int]) -> list[int]:
    """``room`` cells split among free-text columns that want ``wants``: none gets more
    than it wants, the rest is shared evenly."""
    out = [0] * len(wants)
    left = sorted(range(len(wants)), key=lambda i: wants[i])
    while left:
        even = max(1, room // len(left))
        i = left.pop(0)
        out[i] = min(wants[i], even)
        room -= out[i]
    return out


def ids(values: Iterable[str]) -> None:
    """``-q``: one id per line, nothing else."""
    for value in values:
        line(value)


def showing(listed: int, total: int, noun: str, next_page_token: str = "") -> None:
    """On stderr, when ``--limit`` (or the default limit) cut a list: how much of it was
    shown, so nobody takes 100 rows for all of them, and how to see the next page."""
    if total <= listed:
        more(next_page_token)
        return
    hint = (f"repeat with --page-token {next_page_token} for the next page"
            if next_page_token else "--limit N shows more")
    info(f"Showing {listed} of {total} {noun}, newest first; {hint}.")


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
