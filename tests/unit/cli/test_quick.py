"""The quick reads (:mod:`parhelia_cli.quick`): which argv they take, that what they take
is what Click declares, and that they leave to Click whatever has more to say than the
answer. Their output against a real daemon is compared with Click's in
``tests/integration/cli/test_import_cost.py``."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import click
import pytest

from parhelia import __version__
from parhelia_cli import calls, params, quick
from parhelia_cli.main import load_command

TASK_LIST = ("task", "list")
NO_OPTIONS = {"statuses": (), "active": False, "limit": None, "page_token": ""}
EVENTS_LIST = ("events", "list")
NO_FILTER = {"types": (), "task_id": None, "session_id": None, "container_id": None,
             "limit": None, "page_token": ""}

TAKEN = [
    (["status", "--json"], ("status",), {}, []),
    (["--json", "status"], ("status",), {}, []),
    (["task", "list", "--json"], TASK_LIST, NO_OPTIONS, []),
    (["t", "list", "--json"], TASK_LIST, NO_OPTIONS, []),
    (["task", "list", "--json", "--status", "running", "--status=pending"], TASK_LIST,
     {**NO_OPTIONS, "statuses": ("running", "pending")}, []),
    (["task", "list", "--limit", "7", "--json", "--active"], TASK_LIST,
     {**NO_OPTIONS, "limit": 7, "active": True}, []),
    (["task", "list", "--json", "--limit=1000", "--page-token", "-x9"], TASK_LIST,
     {**NO_OPTIONS, "limit": 1000, "page_token": "-x9"}, []),
    (["task", "show", "t-1a2b", "--json"], ("task", "show"), {}, ["t-1a2b"]),
    (["task", "show", "--json", "t-1a2b"], ("task", "show"), {}, ["t-1a2b"]),
    (["e", "list", "--json"], EVENTS_LIST, NO_FILTER, []),
    (["events", "list", "--json", "--task", "t-1", "--type", "task_created,task_completed",
      "--type= checkpoint_created ,", "--limit", "10000"], EVENTS_LIST,
     {**NO_FILTER, "task_id": "t-1", "limit": 10_000,
      "types": ("task_created", "task_completed", "checkpoint_created")}, []),
    (["events", "list", "--session=s-1", "--container", "", "--type", ",", "--json"],
     EVENTS_LIST, {**NO_FILTER, "session_id": "s-1", "container_id": ""}, []),
]

LEFT_TO_CLICK = [
    ["status"],  # a table, not JSON
    ["task", "list"],
    ["--json"],
    [],
    ["status", "--json", "--help"],
    ["status", "--json", "extra"],
    ["status", "--json=1"],
    ["--socket", "/tmp/x.sock", "status", "--json"],
    ["task", "--json", "list"],
    ["task", "ls", "--json"],
    ["task", "list", "--json", "--limit", "0"],
    ["task", "list", "--json", "--limit", "10001"],
    ["task", "list", "--json", "--limit", " 7"],
    ["task", "list", "--json", "--limit", "+7"],
    ["task", "list", "--json", "--limit", "1_0"],
    ["task", "list", "--json", "--limit", "\u0667"],  # an Arabic-Indic 7: int() takes it
    ["task", "list", "--json", "--limit", "5" * 5000],  # int() refuses: Click says E101
    ["task", "list", "--json", "--limit", "0" * 18 + "5"],
    ["task", "list", "--json", "--limit", "5", "--limit", "6"],
    ["task", "list", "--json", "--limit"],
    ["task", "list", "--json", "--status", "sleeping"],
    ["task", "list", "--json", "--status", "Running"],
    ["task", "list", "--json", "--active=yes"],
    ["task", "list", "--json", "-q"],
    ["task", "list", "--json", "--lim", "5"],
    ["task", "list", "--json", "--", "x"],
    ["task", "list", "--json", "-"],
    ["task", "show", "--json"],
    ["task", "show", "a", "b", "--json"],
    ["task", "show", "-t-1", "--json"],
    ["session", "list", "--json"],
    ["events", "list", "--json", "--type", "task_exploded"],
    ["events", "list", "--json", "--type", "task_created,Task_Completed"],
    ["events", "list", "--json", "--level", "info"],
    ["events", "list", "--json", "--since", "5m"],
    ["events", "list", "--json", "--task", "a", "--task", "b"],
    ["events", "watch", "--json"],
    ["task", "watch", "t-1", "--json"],
]


@pytest.mark.parametrize(("argv", "path", "options", "args"), TAKEN,
                         ids=[" ".join(a) for a, *_ in TAKEN])
def test_the_forms_it_answers(argv: list[str], path: tuple[str, ...],
                              options: dict[str, Any], args: list[str]) -> None:
    reads = quick._reads()
    parsed = quick.parse(argv, reads)
    assert parsed is not None
    assert parsed == (reads[path], options, args)


@pytest.mark.parametrize("argv", LEFT_TO_CLICK, ids=[" ".join(a) or "(none)"
                                                      for a in LEFT_TO_CLICK])
def test_everything_else_is_left_to_click(argv: list[str]) -> None:
    assert quick.parse(argv) is None


def click_command(path: tuple[str, ...]) -> click.Command:
    command = load_command(path[0])
    for name in path[1:]:
        assert isinstance(command, click.Group)
        sub = command.commands.get(name)
        assert sub is not None, f"{path}: no such Click command"
        command = sub
    return command


def declaration_gaps(reads: dict[tuple[str, ...], quick.Read]) -> list[str]:
    """Each option the quick reads take, against the Click command's declaration: same
    destination, a kind that accepts no more than Click, the same words and bounds; the
    same number of arguments; and ``--json``."""
    gaps = []
    for path, read in reads.items():
        command = click_command(path)
        by_flag = {opt: p for p in command.params for opt in p.opts}
        arguments = [p for p in command.params if isinstance(p, click.Argument)]
        if len(arguments) != read.arguments or any(a.nargs != 1 for a in arguments):
            gaps.append(f"{path}: {read.arguments} argument(s), Click declares "
                        f"{[a.name for a in arguments]}")
        if "--json" not in by_flag:
            gaps.append(f"{path}: Click declares no --json")
        for flag, (dest, kind, detail) in read.options.items():
            param = by_flag.get(flag)
            if not isinstance(param, click.Option):
                gaps.append(f"{path} {flag}: not a Click option")
                continue
            where = f"{path} {flag}"
            if param.name != dest:
                gaps.append(f"{where}: destination {dest!r}, Click's {param.name!r}")
            ptype = param.type
            if kind == quick.FLAG and not param.is_flag:
                gaps.append(f"{where}: a flag here, not in Click")
            elif kind == quick.WORDS and not (
                    isinstance(ptype, click.Choice) and param.multiple
                    and ptype.case_sensitive and tuple(ptype.choices) == tuple(detail)):
                gaps.append(f"{where}: words {detail}, Click's {ptype!r}")
            elif kind == quick.COUNT and not (
                    isinstance(ptype, click.IntRange) and (ptype.min, ptype.max) == detail
                    and not ptype.min_open and not ptype.max_open and not ptype.clamp
                    and not param.multiple):
                gaps.append(f"{where}: integers in {detail}, Click's {ptype!r}")
            elif kind in (quick.TEXT, quick.ID) and (ptype is not click.STRING
                                                     or param.multiple):
                gaps.append(f"{where}: any text, Click's {ptype!r}")
            elif kind == quick.TYPES and not (isinstance(ptype, params.EventTypes)
                                              and param.multiple):
                gaps.append(f"{where}: event types, Click's {ptype!r}")
        given = command.make_context(path[-1], ["x"] * len(arguments)).params
        for dest, default in quick._defaults(read).items():
            if dest in given and given[dest] != default:
                gaps.append(f"{path}: {dest} is {default!r} when absent, {given[dest]!r} "
                            "in Click")
    return gaps


def test_what_it_takes_is_what_click_declares() -> None:
    assert declaration_gaps(quick._reads()) == []


def test_the_declaration_check_catches_a_drift() -> None:
    """The guard above, seen failing: quick reads that disagree with Click."""
    reads = quick._reads()
    task_list = reads[TASK_LIST]
    drifted = {
        ("task", "list"): quick.Read(task_list.answer, options={
            **task_list.options,
            "--limit": ("limit", quick.COUNT, (1, 100)),
            "--status": ("statuses", quick.WORDS, ("running",)),
            "--active": ("finished", quick.FLAG, None),
            "--page-token": ("page_token", quick.FLAG, None),
            "--since": ("since", quick.TEXT, None)}),
        ("events", "list"): quick.Read(task_list.answer, options={
            "--task": ("task_id", quick.TEXT, None),
            "--type": ("types", quick.WORDS, ("task_created",))}),
        ("task", "show"): quick.Read(task_list.answer, arguments=2),
    }
    gaps = declaration_gaps(drifted)
    assert any("--limit: integers in (1, 100)" in g for g in gaps), gaps
    assert any("--status: words ('running',)" in g for g in gaps), gaps
    assert any("--active: destination 'finished'" in g for g in gaps), gaps
    assert any("--since: not a Click option" in g for g in gaps), gaps
    assert any("page_token is False when absent, '' in Click" in g for g in gaps), gaps
    assert any("task_id is '' when absent, None in Click" in g for g in gaps), gaps
    assert any("--type: words ('task_created',)" in g for g in gaps), gaps
    assert any("('task', 'show'): 2 argument(s)" in g for g in gaps), gaps


# --- what it leaves to Click once it has asked the daemon ----------------------------------

class Closed:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def listening(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A socket where paths.resolve() looks (bound, not accepting: the owner check
    passes and nothing answers but the fake hello)."""
    home = tmp_path / "h"
    (home / "run").mkdir(parents=True, mode=0o700)
    home.chmod(0o700)
    path = home / "run" / "parheliad.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    monkeypatch.setenv("PARHELIA_HOME", str(home))
    monkeypatch.delenv("PARHELIA_SOCKET", raising=False)
    monkeypatch.delenv("_PARHELIA_COMPLETE", raising=False)
    yield path
    sock.close()


@pytest.mark.parametrize(("version", "detail"), [
    ("0.0.1", ""),  # another daemon version: Click's client warns
    ("", ""),  # a daemon too old to say
    (__version__, "Budget ceiling reached: $10.00 of $10.00"),  # the banner
])
def test_a_warning_to_print_is_left_to_click(listening: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str],
                                             version: str, detail: str) -> None:
    connection = Closed()
    said = calls.pb2("system").GetVersionResponse(version=version, budget_detail=detail)
    monkeypatch.setattr(calls, "hello", lambda _socket: (said, connection))
    monkeypatch.setattr(quick, "_reads", lambda: {("status",): quick.Read(
        lambda *_: pytest.fail("answered despite a warning to print"))})
    assert quick.answer(["status", "--json"]) is None
    assert connection.closed
    assert capsys.readouterr() == ("", "")


def test_completion_and_a_missing_daemon_are_left_to_click(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listening: Path) -> None:
    monkeypatch.setattr(calls, "hello", lambda _socket: pytest.fail("dialled"))
    monkeypatch.setenv("_PARHELIA_COMPLETE", "bash_complete")
    assert quick.answer(["status", "--json"]) is None
    monkeypatch.delenv("_PARHELIA_COMPLETE")
    monkeypatch.setenv("PARHELIA_SOCKET", str(tmp_path / "none.sock"))
    assert quick.answer(["status", "--json"]) is None
