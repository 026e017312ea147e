"""Ids as a user handles them, through the real CLI against a real parheliad: a task id
where its session or container is meant, ambiguous prefixes, ids that can be copied
from an 80-column table, shell completion of ids, and id arguments no id can match."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import termios

import pytest

from tests.helpers.daemon import cli_argv
from tests.helpers.harness import Harness, fake_prompt

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def h(harness_factory) -> Harness:  # noqa: F811
    return harness_factory()


def test_a_task_id_stands_for_its_session_and_container(h: Harness) -> None:
    task_id = h.create(fake_prompt({"write": "a.txt", "content": "a\n"}, {"turn": True}))
    task = h.wait(task_id)
    sid, cid = task["session_id"], task["container_id"]
    by_session = h.json("checkpoint", "list", sid)["checkpoints"]
    by_task = h.json("checkpoint", "list", task_id)["checkpoints"]
    assert by_task and [c["id"] for c in by_task] == [c["id"] for c in by_session]
    assert h.json("checkpoint", "list", task_id[:6])["checkpoints"] == by_task
    assert h.json("session", "show", task_id)["id"] == sid
    assert h.json("container", "show", task_id)["id"] == cid
    replayed = h.run("events", "replay", task_id)
    assert replayed.returncode == 0, replayed.stderr
    assert f"Container {cid}" in replayed.stdout and "task_completed" in replayed.stdout
    # The timeline is in time order: no negative gap.
    assert "(+ -" not in replayed.stdout and "+-" not in replayed.stdout


def test_an_ambiguous_prefix_lists_the_candidates(h: Harness) -> None:
    first = h.create("one", "--no-dispatch")
    second = h.create("two", "--no-dispatch")
    proc = h.run("task", "show", "t-")
    assert proc.returncode == 2, proc.stderr
    assert "E104 AMBIGUOUS_ID" in proc.stderr and "not found" not in proc.stderr.lower()
    assert first in proc.stderr and second in proc.stderr
    assert "E104" in h.run("help", "E104").stdout


@pytest.mark.parametrize("ref", ["t-" + "a" * 100_000, "../../etc/passwd", "t-\x1b[2J",
                                 "cp-../x"])
def test_ids_no_object_can_have_are_refused_with_a_code(h: Harness, ref: str) -> None:
    for args in (("task", "show", ref), ("session", "show", ref), ("checkpoint", "show", ref),
                 ("container", "show", ref), ("checkpoint", "list", ref),
                 ("events", "replay", ref), ("task", "diff", ref)):
        proc = h.run(*args)
        assert proc.returncode in (2, 3), (args, proc.stderr[:300])
        assert "E900" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[:300]
        assert "\x1b" not in proc.stderr
        assert len(proc.stderr) < 2000


def _at_80_columns(h: Harness, *args: str) -> str:
    """The output of ``parhelia ARGS`` on an 80-column terminal."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**h.daemon.env, "NO_COLOR": "1", "COLUMNS": "80", "TERM": "xterm"}
    env.pop("LINES", None)
    proc = subprocess.Popen([*cli_argv(), *args], env=env, stdin=child, stdout=child,
                            stderr=child)
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(60)
    os.close(main)
    return b"".join(chunks).decode(errors="replace")


def test_tables_never_cut_ids_at_80_columns(h: Harness) -> None:
    task_id = h.create(fake_prompt({"turn": True}, text="A long prompt " * 20))
    task = h.wait(task_id)
    sid, cid = task["session_id"], task["container_id"]
    cps = [c["id"] for c in h.json("checkpoint", "list", sid)["checkpoints"]]
    for args, wanted in ((("task", "list"), [task_id]),
                         (("session", "list", "--all"), [sid, task_id]),
                         (("checkpoint", "list"), [cps[0], sid]),
                         (("container", "list"), [cid, task_id])):
        out = _at_80_columns(h, *args)
        lines = out.splitlines()
        assert all(len(line) <= 80 for line in lines), (args, out)
        for wanted_id in wanted:
            assert wanted_id in out, (args, wanted_id, out)
        # Whatever id is shown is shown whole.
        for shown in re.findall(r"\b(?:t|s|c|cp)-[0-9a-f]+\S?", out):
            assert shown.rstrip("\r") in {task_id, sid, cid, *cps}, (args, shown, out)


def _complete(h: Harness, *words: str, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    line = ["parhelia", *words]
    return subprocess.run(cli_argv(), env={**h.daemon.env, **(env or {}),
                                           "_PARHELIA_COMPLETE": "bash_complete",
                                           "COMP_WORDS": " ".join(line),
                                           "COMP_CWORD": str(len(line) - 1)},
                          capture_output=True, text=True, timeout=30)


def test_shell_completion_offers_ids(h: Harness, tmp_path) -> None:
    task_id = h.create(fake_prompt({"turn": True}))
    task = h.wait(task_id)
    out = _complete(h, "task", "show", "")
    assert out.returncode == 0 and f"plain,{task_id}" in out.stdout.splitlines(), out
    out = _complete(h, "task", "show", task_id[:5])
    assert f"plain,{task_id}" in out.stdout.splitlines()
    out = _complete(h, "checkpoint", "list", "")
    assert f"plain,{task['session_id']}" in out.stdout.splitlines()
    out = _complete(h, "events", "list", "--container", "")
    assert f"plain,{task['container_id']}" in out.stdout.splitlines()
    # No daemon there: nothing offered, nothing printed, no autostart.
    gone = _complete(h, "task", "show", "", env={"PARHELIA_SOCKET": str(tmp_path / "s.sock"),
                                                  "PARHELIA_NO_AUTOSTART": ""})
    assert gone.returncode == 0 and gone.stdout.strip() == "" and gone.stderr == ""
    assert not (tmp_path / "s.sock").exists()
