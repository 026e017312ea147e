"""What `parhelia top` draws for one task: every line exactly the screen's width in
terminal columns (wide characters counted twice, never wrapped), agent-written text
escaped, overlaps marked."""

from __future__ import annotations

import unicodedata

from parhelia.v1 import common_pb2, tasks_pb2
from parhelia_cli.commands.top import Board, detail_of, fit, header_of, line_of, row_cells


def _width(text: str) -> int:
    return sum(0 if unicodedata.combining(c) else
               2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def _board(**task: object) -> Board:
    board = Board()
    msg = common_pb2.Task(id="t-0123456789ab", prompt="Fix it", **{"status": 2, **task})
    msg.options.backend = "modal"
    msg.options.gpu = "H100:8"
    msg.usage.turns = 12
    msg.usage.input_tokens = 15000
    msg.usage.output_tokens = 2300
    board.apply(tasks_pb2.TaskProgress(task=msg, container=common_pb2.Container(health=2)))
    board.apply(tasks_pb2.TaskProgress(snapshot_done=True))
    return board


def test_lines_fit_the_width_with_wide_and_hostile_text() -> None:
    board = _board(last_tool="Write: 日本語のファイル名がとても長い\x1b[31m.txt" * 3)
    (t,) = board.ordered()
    assert board.ready
    for width in (79, 40, 120):
        line = line_of(row_cells(t, board.containers[t["id"]]), width)
        assert _width(line) == width
        assert "\x1b" not in line
        assert _width(header_of(width)) == width
    cells = row_cells(t, board.containers[t["id"]])
    assert cells[:4] == ["t-0123456789ab", "running", "healthy", "12"]
    assert cells[4] == "17.3k" and cells[6] == "modal:H100:8"
    assert fit("日本", 3) == "日 " and fit("abc", 2) == "ab" and fit("é", 3) == "é  "


def test_item4_top_measures_cells_as_graphemes() -> None:
    """Combining marks, zero-width joiners and emoji modifiers: a cluster is measured
    and cut as one (the hand-made measure counted the parts of 👍🏽 as 4 cells, of 👩‍💻
    as 4, and could cut a cluster in two)."""
    from rich.cells import cell_len

    assert fit("e\u0301" * 3, 3) == "e\u0301" * 3
    assert fit("👍🏽ab", 4) == "👍🏽ab" and cell_len(fit("👍🏽ab", 4)) == 4
    assert fit("👩\u200d💻x", 3) == "👩\u200d💻x"
    assert fit("👩\u200d💻", 1) == " "  # never half a cluster
    long = "👍🏽" * 50
    assert cell_len(line_of(["t-0123456789ab", "running", "-", "1", "0", "$0.00", "local",
                             long], 80)) == 80


def test_an_overlap_marks_the_row_and_the_detail_line_escapes_the_path() -> None:
    board = _board(overlaps=[common_pb2.TaskOverlap(
        task_id="t-ffffffffffff", paths=["src/\x1b]0;x\x07" + "d" * 300], path_count=3)])
    (t,) = board.ordered()
    assert row_cells(t, None)[1] == "running!"
    detail = detail_of(t)
    assert "task t-ffffffffffff also changed 3 of the same path(s)" in detail
    assert "\x1b" not in detail and "\x07" not in detail and len(detail) < 200


def test_a_task_with_a_pull_request_shows_it_in_its_row_and_detail_line() -> None:
    pr = common_pb2.PullRequest(url="https://github.com/acme/app/pull/7\x1b[2J", number=7,
                                branch="parhelia/t-0123456789ab", base="main")
    board = _board(pull_request=pr)
    (t,) = board.ordered()
    # While it runs, the row shows what the agent does; once final, the pull request.
    assert row_cells(t, None)[7] != "PR #7"
    done = _board(pull_request=pr, status=common_pb2.TASK_STATUS_COMPLETED)
    (t,) = done.ordered()
    assert row_cells(t, None)[7] == "PR #7"
    detail = detail_of(t)
    assert detail.startswith("t-0123456789ab: pull request #7 https://github.com/acme/app")
    assert "\x1b" not in detail
    pushed = _board(pull_request=common_pb2.PullRequest(
        url="https://gitlab.com/g/p/-/compare/main...b", branch="b"),
        status=common_pb2.TASK_STATUS_COMPLETED)
    (t,) = pushed.ordered()
    assert detail_of(t) == "t-0123456789ab: compare https://gitlab.com/g/p/-/compare/main...b"
    assert row_cells(t, None)[7] != "PR #0"
