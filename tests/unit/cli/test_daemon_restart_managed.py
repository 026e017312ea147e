"""`parhelia daemon restart` under a service manager: it says to restart through the
manager (issue 27: a restart outside the manager leaves the manager's unit stopped)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from parhelia_cli import service_files
from parhelia_cli.commands import daemon


@pytest.mark.skipif(sys.platform == "darwin", reason="the systemd branch")
def test_an_installed_unit_names_the_managers_restart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert daemon._managed_restart() is None  # nothing installed: a plain restart
    unit = service_files.systemd_unit_path()
    unit.parent.mkdir(parents=True)
    unit.write_text("[Unit]\n")
    assert daemon._managed_restart() == (unit, "systemctl --user restart parheliad")
