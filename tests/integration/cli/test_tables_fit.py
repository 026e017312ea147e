"""Issue 27, item 4: tables at 80 and 120 columns in a REAL pty, and through a pipe.

On a terminal the id, status, time and cost columns stay whole and the free text (the
prompt, a checkpoint's message) gets the rest of the width; piped, every row is one
line of tab-separated fields, nothing cut. Lists say how much `--limit` left out, and
`-q` prints ids only."""

from __future__ import annotations

import re

import pytest

from tests.helpers.daemon import cli_argv
from tests.helpers.harness import Harness, fake_prompt
from tests.helpers.terminal import in_pty

pytestmark = pytest.mark.timeout(240)

LONG = "Refactor the parser " + "and keep every test green " * 11  # ~300 characters
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _seed(h: Harness) -> list[str]:
    """A completed task with a ~300-character prompt, a cancelled one, a completed one."""
    done = h.create(fake_prompt({"turn": True}, text=LONG))
    slow = h.create(fake_prompt({"sleep": 60}, text="Wait a minute."))
    quick = h.create(fake_prompt({"turn": True}, text="Say hi."))
    h.wait(done)
    h.wait(quick)
    h.wait(slow, ("running",))
    h.run("task", "cancel", slow, check=True)
    h.wait(slow, ("cancelled",))
    return [done, slow, quick]


def _screen(h: Harness, columns: int, *args: str) -> list[str]:
    code, shown, _ = in_pty([*cli_argv(), *args], h.daemon.env, columns=columns)
    assert code == 0, shown
    return [ANSI.sub("", line).rstrip() for line in shown.replace("\r", "").splitlines()]


def test_item4_tables_fit_80_and_120_columns_and_pipe_whole_rows(harness: Harness) -> None:
    h = harness
    ids = _seed(h)
    for columns in (80, 120):
        lines = _screen(h, columns, "task", "list")
        assert all(len(line) <= columns for line in lines), (columns, lines)
        header = next(line for line in lines if line.startswith("ID"))
        for word in ("STATUS", "CREATED", "BACKEND", "TURNS", "TOTAL", "PROMPT"):
            assert re.search(rf"\b{word}\b", header), (columns, header)
        rows = {line.split()[0]: line for line in lines if line.startswith("t-")}
        assert set(rows) == set(ids)
        assert " completed " in rows[ids[0]] and " cancelled " in rows[ids[1]]
        assert re.search(r" \$\d+\.\d{2,} ", rows[ids[0]]), rows[ids[0]]  # the cost, whole
        assert "Refactor the parse" in rows[ids[0]]
        assert rows[ids[0]].endswith("…")  # the prompt, and only the prompt, is cut
        if columns == 120:  # the extra 40 columns all went to the prompt
            assert len(rows[ids[0]]) == 120

    piped = h.run("task", "list", check=True).stdout.splitlines()
    fields = {line.split("\t")[0]: line.split("\t") for line in piped}
    assert set(fields) == set(ids) and all(len(f) == 7 for f in fields.values())
    assert fields[ids[0]][1] == "completed" and fields[ids[1]][1] == "cancelled"
    assert fields[ids[0]][6] == LONG.strip()  # nothing cut, nothing padded
    assert not any(ch in "".join(piped) for ch in "─━│…")

    for args in (("session", "list"), ("checkpoint", "list")):
        lines = _screen(h, 80, *args)
        assert all(len(line) <= 80 for line in lines), (args, lines)
        header = next(line for line in lines if line.startswith("ID"))
        assert re.match(r"ID +(TASK|SESSION) ", header), header  # the id columns whole
        rows = [line for line in lines if re.match(r"(s|cp)-[0-9a-f]", line)]
        assert rows and all(re.match(r"(s|cp)-[0-9a-f]{12,} ", r) for r in rows), rows

    cut = h.run("task", "list", "--limit", "2", check=True)
    assert len(cut.stdout.splitlines()) == 2
    assert "Showing 2 of 3 tasks" in cut.stderr
    assert "Showing" not in h.run("task", "list", check=True).stderr
    assert sorted(h.run("task", "list", "-q", check=True).stdout.split()) == sorted(ids)
    sessions = h.run("session", "list", "-q", check=True).stdout.split()
    assert len(sessions) == 3 and all(s.startswith("s-") for s in sessions)
    checkpoints = h.run("checkpoint", "list", "-q", check=True).stdout.split()
    assert checkpoints and all(c.startswith("cp-") for c in checkpoints)
