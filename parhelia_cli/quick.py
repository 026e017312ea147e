"""The reads a script polls, answered without Click: ``status``, ``task list``,
``task show`` and ``events list`` with ``--json``.

Importing Click costs a CLI call that makes one RPC more than the call itself
(``bench/cli_latency.py``, ADR 0040). These reads are what an agent or a script
runs in a loop, so :func:`answer` matches argv against the options their Click
commands declare (``tests/unit/cli/test_quick.py`` compares the two), makes the same
calls through the same views (:mod:`parhelia_cli.views`) and prints the same JSON
(:func:`parhelia_cli.convert.json_text`).

It prints the answer, or the daemon's refusal as Click's ``--json`` error (the same
:func:`parhelia_cli.calls.rpc_error` and E-code, so a slow daemon is not waited for
twice), and ends as Click would on Ctrl-C (130) or a reader gone away (1). Anything
else is left to Click, which then does the whole command as if this module did not
exist: help; an option, a value or a form this parser does not take exactly as Click
would (the parser accepts a subset, never a superset); no daemon on the socket
(autostart), a socket that fails the owner check, a connection that went away; a
daemon of another version or a budget banner to print (warnings on stderr); shell
completion; a stdout that is not UTF-8. Reads are idempotent, so a call made here
and made again by Click is harmless. Module-level imports: ``os``, ``sys`` and
``typing`` (which protobuf loads anyway).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from parhelia_cli.api import Api

FLAG, TEXT, ID, WORDS, TYPES, COUNT = "flag", "text", "id", "words", "types", "count"
"""Option kinds: a flag; any text (absent: ``""``); an id (any text, absent: None); one
of ``words``, repeatable (``multiple=True``); event types, comma-separated and
repeatable (``params.EventTypes``; ``detail`` gives the catalogue when asked); an
integer in ``[low, high]``. Each is what Click's flag, ``str``, ``Choice``,
``EventTypes`` and ``IntRange`` accept, restricted to plain ASCII digits for numbers."""

MAX_DIGITS = 18
"""Longer numbers are Click's to refuse (or take: leading zeros)."""
INTERRUPTED = "Interrupted."
"""What Ctrl-C prints, after a new line (as the Click root group does)."""

Answer = Callable[["Api", dict[str, Any], list[str]], tuple[Any, int]]
"""(the typed client, options by destination, arguments) -> (JSON value, exit code)."""


class Fallback(Exception):
    """Not for this module: Click runs the command (and says what is wrong, if anything)."""


class Read:
    """One command answered here: its options (``--name`` -> (destination, kind,
    detail)), how many arguments it takes, and its answer."""

    __slots__ = ("answer", "arguments", "options")

    def __init__(self, answer: Answer, *, arguments: int = 0,
                 options: dict[str, tuple[str, str, Any]] | None = None) -> None:
        self.answer, self.arguments, self.options = answer, arguments, options or {}


def _status(api: Api, _options: dict[str, Any], _args: list[str]) -> tuple[Any, int]:
    from parhelia_cli import views
    from parhelia_cli.convert import to_dict

    data = to_dict(api.system.status())
    return data, 1 if views.needs_attention(data) else 0


def _task_list(api: Api, options: dict[str, Any], _args: list[str]) -> tuple[Any, int]:
    from parhelia_cli import views

    if options["active"] and options["statuses"]:
        raise Fallback  # Click refuses the pair (E101)
    resp = views.task_list(api, statuses=options["statuses"], active=options["active"],
                           limit=options["limit"], page_token=options["page_token"])
    return views.task_page(resp), 0


def _task_show(api: Api, _options: dict[str, Any], args: list[str]) -> tuple[Any, int]:
    from parhelia_cli import views

    return views.task_show(api, args[0]), 0


def _events_list(api: Api, options: dict[str, Any], _args: list[str]) -> tuple[Any, int]:
    from parhelia_cli import views
    from parhelia_cli.api import event_filter

    flt = event_filter(types=options["types"], task_id=options["task_id"],
                       session_id=options["session_id"], container_id=options["container_id"])
    resp = api.events.list(flt, limit=options["limit"], page_token=options["page_token"])
    return views.event_page(resp), 0


def _event_types() -> Any:
    from parhelia.events import CATALOGUE  # loads dataclasses: only for --type

    return CATALOGUE


def _reads() -> dict[tuple[str, ...], Read]:
    from parhelia import limits
    from parhelia import statuses as words

    return {
        ("status",): Read(_status),
        ("task", "list"): Read(_task_list, options={
            "--status": ("statuses", WORDS, words.TASK_STATUSES),
            "--active": ("active", FLAG, None),
            "--limit": ("limit", COUNT, (1, limits.MAX_LIST)),
            "--page-token": ("page_token", TEXT, None),
        }),
        ("task", "show"): Read(_task_show, arguments=1),
        ("events", "list"): Read(_events_list, options={
            "--type": ("types", TYPES, _event_types),
            "--task": ("task_id", ID, None),
            "--session": ("session_id", ID, None),
            "--container": ("container_id", ID, None),
            "--limit": ("limit", COUNT, (1, limits.MAX_LIST)),
            "--page-token": ("page_token", TEXT, None),
        }),
    }


def _defaults(read: Read) -> dict[str, Any]:
    """Each destination's value when its option is absent (Click's defaults)."""
    empty = {FLAG: False, TEXT: "", ID: None, WORDS: (), TYPES: (), COUNT: None}
    return {dest: empty[kind] for dest, kind, _ in read.options.values()}


def parse(argv: list[str], reads: dict[tuple[str, ...], Read] | None = None
          ) -> tuple[Read, dict[str, Any], list[str]] | None:
    """``(read, options, arguments)`` when ``argv`` is one of the reads with ``--json``
    in a form Click would take the same way; None otherwise."""
    from parhelia_cli.names import ALIASES

    reads = _reads() if reads is None else reads
    rest = list(argv)
    as_json = False
    while rest and rest[0] == "--json":  # the root group's --json
        as_json = True
        rest.pop(0)
    if not rest:
        return None
    name = ALIASES.get(rest[0], rest[0])
    path: tuple[str, ...]
    if (name,) in reads:
        path, rest = (name,), rest[1:]
    elif len(rest) > 1 and (name, rest[1]) in reads:
        path, rest = (name, rest[1]), rest[2:]
    else:
        return None
    read = reads[path]
    options = _defaults(read)
    seen: set[str] = set()
    args: list[str] = []
    while rest:
        token = rest.pop(0)
        if not token.startswith("-"):
            args.append(token)
            continue
        flag, has_value, value = token.partition("=")
        if flag == "--json" and not has_value:
            as_json = True
            continue
        if flag not in read.options:
            return None  # --help, --, a short option, a typo: Click's to say
        dest, kind, detail = read.options[flag]
        if kind == FLAG:
            if has_value:
                return None
            options[dest] = True
            continue
        if not has_value:
            if not rest:
                return None
            value = rest.pop(0)
        if kind == WORDS:
            if value not in detail:
                return None
            options[dest] = (*options[dest], value)
            continue
        if kind == TYPES:
            items = [item.strip() for item in value.split(",") if item.strip()]
            if any(item not in detail() for item in items):
                return None
            options[dest] = (*options[dest], *items)
            continue
        if flag in seen:
            return None  # Click keeps the last; saying nothing about it is Click's call
        seen.add(flag)
        if kind == COUNT:
            low, high = detail
            if not (value.isascii() and value.isdigit()) or len(value) > MAX_DIGITS:
                return None  # (int() refuses more than 4,300 digits; Click says E101)
            if not low <= int(value) <= high:
                return None
            options[dest] = int(value)
        else:
            options[dest] = value
    if not as_json or len(args) != read.arguments:
        return None
    return read, options, args


def answer(argv: list[str]) -> int | None:
    """Print the answer to ``argv`` (or the daemon's refusal) and return the exit code;
    None when Click should run the command instead (nothing was printed). Exit codes
    and messages are Click's: ``Interrupted.`` and 130 on Ctrl-C, 1 when the reader of
    stdout went away."""
    try:
        return _answer(argv)
    except KeyboardInterrupt:
        _write(sys.stderr, f"\n{INTERRUPTED}\n")
        return 130


def _answer(argv: list[str]) -> int | None:
    if "_PARHELIA_COMPLETE" in os.environ:
        return None
    parsed = parse(argv)
    encoding = getattr(sys.stdout, "encoding", None) or ""
    if parsed is None or encoding.lower().replace("-", "") != "utf8":
        return None
    read, options, args = parsed
    from parhelia import __version__, ownership, paths

    try:
        socket = paths.socket_path()
    except RuntimeError:  # a home that cannot be found: Click's to report
        return None
    if (paths.socket_path_problem(socket) is not None or not os.path.exists(socket)
            or ownership.socket_problem(socket) is not None):
        return None
    from parhelia_cli import calls, convert
    from parhelia_cli.api import Api

    hello = calls.hello(socket)
    if hello is None:
        return None
    version, connection = hello
    try:
        if version.version != __version__ or version.budget_detail:
            return None  # Click's client warns about them
        value, code = read.answer(Api(_Connection(connection, socket)), options, args)
    except Fallback:
        return None
    except Refused as refused:
        _write(sys.stderr, refused.error.json() + "\n")
        return int(refused.error.exit_code)
    finally:
        connection.close()
    try:
        pretty = sys.stdout.isatty()
    except ValueError:
        pretty = False
    if not _write(sys.stdout, convert.json_text(value, pretty=pretty) + "\n"):
        return 1  # as Click does when the reader went away (`| head`)
    return code


def _write(stream: Any, text: str) -> bool:
    """Write and flush; False when the reader went away (stdout then goes to /dev/null,
    so that the interpreter's last flush does not complain)."""
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
        return False
    return True


class Refused(Exception):
    """The daemon refused the read: ``error`` is the :class:`~parhelia_cli.errors.CliError`
    Click's client would print for it."""

    def __init__(self, error: Any) -> None:
        super().__init__(str(error))
        self.error = error


class _Connection:
    """:class:`parhelia_cli.api.Transport` over one open connection. A failure becomes
    :class:`Refused` with the E-code Click's client would print, except a connection
    that went away (UNAVAILABLE): Click's client reconnects, or starts the daemon."""

    def __init__(self, connection: Any, socket: str) -> None:
        self._connection, self._socket = connection, socket

    def call(self, service: str, method: str, request: Any, *,
             timeout: float | None = None, idempotent: bool = False,
             on_progress: Any = None) -> Any:
        from parhelia_cli import calls, unary

        if on_progress is not None:
            raise Fallback
        try:
            return calls.unary_call(self._connection, service, method, request, timeout)
        except unary.RpcFailure as exc:
            if exc.code().name == "UNAVAILABLE":
                raise Fallback from None
            raise Refused(calls.rpc_error(exc, self._socket, method)) from None

    def stream(self, service: str, method: str, request: Any) -> Any:
        raise Fallback
