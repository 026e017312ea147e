"""The reads a script polls, answered without Click: ``status``, ``task list`` and
``task show`` with ``--json``.

Importing Click costs a CLI call that makes one RPC more than the call itself
(``bench/cli_latency.py``, ADR 0040). These three reads are what an agent or a script
runs in a loop, so :func:`answer` matches argv against the options their Click
commands declare (``tests/unit/cli/test_quick.py`` compares the two), makes the same
calls through the same views (:mod:`parhelia_cli.views`) and prints the same JSON
(:func:`parhelia_cli.convert.json_text`).

It answers only when there is nothing to say but the answer. Anything else is left
to Click, which then does the whole command as if this module did not exist: help;
an option, a value or a form this parser does not take exactly as Click would (the
parser accepts a subset, never a superset); no daemon on the socket (autostart), a
socket that fails the owner check, a call that fails; a daemon of another version or
a budget banner to print (warnings on stderr); shell completion; a stdout that is
not UTF-8. Reads are idempotent, so a call made here and made again by Click is
harmless. Module-level imports: ``os`` and ``sys`` only.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from parhelia_cli.api import Api

FLAG, TEXT, WORDS, COUNT = "flag", "text", "words", "count"
"""Option kinds: a flag; any text; one of ``words``, repeatable (``multiple=True``); an
integer in ``[low, high]``. Each is what Click's flag, ``str``, ``Choice`` (with
``multiple``) and ``IntRange`` accept, restricted to plain ASCII digits for numbers."""

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
    }


def _defaults(read: Read) -> dict[str, Any]:
    """Each destination's value when its option is absent (Click's defaults)."""
    empty = {FLAG: False, TEXT: "", WORDS: (), COUNT: None}
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
        if flag in seen:
            return None  # Click keeps the last; saying nothing about it is Click's call
        seen.add(flag)
        if kind == COUNT:
            low, high = detail
            if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:
                return None
            options[dest] = int(value)
        else:
            options[dest] = value
    if not as_json or len(args) != read.arguments:
        return None
    return read, options, args


def answer(argv: list[str]) -> int | None:
    """Print the answer to ``argv`` and return the exit code; None when Click should
    run the command instead (nothing was printed)."""
    if "_PARHELIA_COMPLETE" in os.environ:
        return None
    parsed = parse(argv)
    encoding = getattr(sys.stdout, "encoding", None) or ""
    if parsed is None or encoding.lower().replace("-", "") != "utf8":
        return None
    read, options, args = parsed
    from parhelia import __version__, ownership, paths

    socket = paths.socket_path()
    if (paths.socket_path_problem(socket) is not None or not os.path.exists(socket)
            or ownership.socket_problem(socket) is not None):
        return None
    from parhelia_cli import calls, convert, unary
    from parhelia_cli.api import Api

    hello = calls.hello(socket)
    if hello is None:
        return None
    version, connection = hello
    try:
        if version.version != __version__ or version.budget_detail:
            return None  # Click's client warns about them
        value, code = read.answer(Api(_Connection(connection)), options, args)
    except (Fallback, unary.RpcFailure):
        return None
    finally:
        connection.close()
    try:
        pretty = sys.stdout.isatty()
    except ValueError:
        pretty = False
    text = convert.json_text(value, pretty=pretty) + "\n"
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (`| head`), as Click's path
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return code


class _Connection:
    """:class:`parhelia_cli.api.Transport` over one open connection, failures raised
    as they come (:class:`unary.RpcFailure`: :func:`answer` leaves them to Click)."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    def call(self, service: str, method: str, request: Any, *,
             timeout: float | None = None, idempotent: bool = False,
             on_progress: Any = None) -> Any:
        from parhelia_cli.calls import unary_call

        if on_progress is not None:
            raise Fallback
        return unary_call(self._connection, service, method, request, timeout)

    def stream(self, service: str, method: str, request: Any) -> Any:
        raise Fallback
