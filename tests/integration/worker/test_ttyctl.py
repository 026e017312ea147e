"""``python -m modal_worker tty``: the PTY of an attach, on hostile input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modal_worker import ttyctl


@pytest.fixture(autouse=True)
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    return tmp_path


@pytest.mark.parametrize("argv", [
    ["attach", "../x", "24", "80", "--", "true"], ["attach", "a", "0", "80", "--", "true"],
    ["attach", "a", "24", "99999", "--", "true"], ["resize", "a/b", "24", "80"],
    ["resize", "a", "24"], ["attach", "a", "24", "80", "--"], ["nope"]])
def test_bad_requests_exit_2(argv: list[str]) -> None:
    assert ttyctl.main(argv) == 2


def test_attach_needs_a_terminal() -> None:
    proc = subprocess.run([sys.executable, "-m", "modal_worker", "tty", "attach", "a1", "24",
                           "80", "--", "true"], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, check=False, env={**os.environ})
    assert proc.returncode == 2 and "not a terminal" in proc.stderr


def test_the_registry_must_be_private(private_tmp: Path) -> None:
    reg = private_tmp / f"parhelia-tty-{os.geteuid()}"
    reg.mkdir(mode=0o777)
    reg.chmod(0o777)
    assert ttyctl.main(["resize", "a1", "24", "80"]) == 2


def test_a_hangup_spares_a_process_that_is_not_on_the_attach_pty(private_tmp: Path) -> None:
    """A recorded pid reused by another process (not on the PTY) is never signalled."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                             stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        master, slave = os.openpty()
        reg = ttyctl.registry()
        (reg / "a1").write_text(f"{other.pid} {os.ttyname(slave)}")
        assert ttyctl.main(["hangup", "a1"]) == 0
        time.sleep(0.2)
        assert other.poll() is None
        assert not (reg / "a1").exists()
        os.close(master)
        os.close(slave)
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()


def test_a_hangup_of_an_unknown_attach_is_a_no_op() -> None:
    assert ttyctl.main(["hangup", "a-gone"]) == 0
