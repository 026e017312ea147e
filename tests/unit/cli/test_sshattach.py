"""`session attach --ssh`'s loop around ssh: a dropped connection (exit 255) is reconnected,
asking the daemon again each time; a refused host key is E601 at once, never retried.
A small script stands in for ssh (its exit code and its stderr are what the loop reads)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from parhelia_cli import sshattach
from parhelia_cli.errors import CliError


class FakeSessions:
    def __init__(self, argvs: list[list[str]]) -> None:
        self.argvs = argvs
        self.asked = 0

    def ssh_session(self, session_id: str) -> Any:
        argv = self.argvs[min(self.asked, len(self.argvs) - 1)]
        self.asked += 1
        return SimpleNamespace(argv=argv, host="r1.modal.host", port=4000,
                               host_key_fingerprint="SHA256:pinned")


def _ssh(tmp_path: Path, name: str, code: int, said: str) -> list[str]:
    script = tmp_path / name
    script.write_text(f"import sys\nsys.stderr.write({said!r})\nsys.exit({code})\n")
    return [sys.executable, str(script)]


def test_a_dropped_connection_is_reconnected_then_the_detach_ends_it(tmp_path: Path) -> None:
    drop = _ssh(tmp_path, "drop.py", 255, "Connection to r1 closed by remote host.\n")
    detach = _ssh(tmp_path, "detach.py", 0, "")
    sessions = FakeSessions([drop, drop, detach])
    pauses: list[float] = []
    assert sshattach.run(SimpleNamespace(sessions=sessions), "s-1", sleep=pauses.append) == 0
    assert sessions.asked == 3 and pauses == [2.0, 4.0]


def test_another_host_key_is_refused_at_once(tmp_path: Path) -> None:
    mitm = _ssh(tmp_path, "mitm.py", 255, "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS "
                "CHANGED! @@@\nHost key verification failed.\n")
    sessions = FakeSessions([mitm])
    with pytest.raises(CliError) as err:
        sshattach.run(SimpleNamespace(sessions=sessions), "s-1", sleep=lambda s: None)
    assert err.value.code == "E601" and "SHA256:pinned" in err.value.message
    assert sessions.asked == 1


def test_a_connection_that_keeps_dropping_gives_up_with_e502(tmp_path: Path) -> None:
    drop = _ssh(tmp_path, "drop.py", 255, "ssh: connect to host r1 port 4000: refused\n")
    sessions = FakeSessions([drop])
    with pytest.raises(CliError) as err:
        sshattach.run(SimpleNamespace(sessions=sessions), "s-1", sleep=lambda s: None)
    assert err.value.code == "E502" and "goes on running" in err.value.message
    assert sessions.asked == sshattach.RECONNECTS + 1
