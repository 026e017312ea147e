"""How the worker reads a pane's end from tmux: a status is known only once tmux has reaped
the agent (tmux 3.3 marks the pane dead when its terminal closes, a moment before)."""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from modal_worker import tui
from modal_worker.tui import Tmux


def _fake_tmux(tmp_path: Path, answers: list[str]) -> Tmux:
    """A tmux that answers display-message with the next line of ``answers`` (the last one
    repeats)."""
    script_answers = tmp_path / "answers"
    script_answers.write_text("\n".join(answers) + "\n")
    count = tmp_path / "count"
    count.write_text("0")
    exe = tmp_path / "tmux"
    exe.write_text(f"""#!/bin/sh
n=$(cat {count}); echo $((n + 1)) > {count}
total=$(wc -l < {script_answers})
[ "$n" -ge "$total" ] && n=$((total - 1))
sed -n "$((n + 1))p" {script_answers}
""")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return Tmux(str(tmp_path / "s" / "sock"), str(exe))


def test_a_dead_pane_without_a_status_yet_is_still_ending(tmp_path: Path) -> None:
    tmux = _fake_tmux(tmp_path, ["1|||42|0|0|0", "1|3||42|0|0|0"])
    first = tmux.state()
    assert first.alive and first.exit_status is None
    second = tmux.state()
    assert (second.alive, second.exit_status) == (False, 3)


def test_a_dead_pane_tmux_never_reaped_has_the_status_the_guard_recorded(
        tmp_path: Path) -> None:
    """tmux 3.3 can miss the SIGCHLD of a pane that ends right after the server started:
    the pane stays dead without a status for good (the guard a zombie)."""
    tmux = _fake_tmux(tmp_path, ["1|||42|0|0|0"])
    tmux.dir.mkdir()
    (tmux.dir / tui.EXIT_NAME).write_text("3")
    st = tmux.state()
    assert (st.alive, st.exit_status) == (False, 3)


def test_the_guard_records_the_agents_status_beside_its_socket(tmp_path: Path) -> None:
    socket = tmp_path / "sock"
    env = {**os.environ, "TMUX": f"{socket},123,0"}
    guard = subprocess.run(tui.guarded(["sh", "-c", "exit 7"]), env=env, timeout=60,
                           check=False)
    assert guard.returncode == 7
    assert (tmp_path / tui.EXIT_NAME).read_text() == "7"
    assert Tmux(str(socket), "tmux")._recorded_exit() == 7


def test_a_pane_ended_by_a_signal_reports_the_shells_status(tmp_path: Path) -> None:
    tmux = _fake_tmux(tmp_path, ["1||9|42|0|0|0"])
    st = tmux.state()
    assert (st.alive, st.exit_status) == (False, 128 + 9)


def test_a_pane_that_never_shows_a_status_is_dead_after_the_settle_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tmux older than 3.3 has no pane_dead_signal: an agent killed by a signal never
    shows a status, and must not look alive for ever."""
    tmux = _fake_tmux(tmp_path, ["1|||42|0|0|0"])
    now = [1000.0]
    monkeypatch.setattr(tui.time, "monotonic", lambda: now[0])
    assert tmux.state().alive
    now[0] += tui.STATUS_SETTLE_SECONDS + 0.1
    st = tmux.state()
    assert (st.alive, st.exit_status) == (False, None)


def test_no_server_is_a_dead_agent(tmp_path: Path) -> None:
    exe = tmp_path / "tmux"
    exe.write_text("#!/bin/sh\nexit 1\n")
    exe.chmod(0o700)
    assert not Tmux(str(tmp_path / "sock"), str(exe)).state().alive
