"""`daemon install`: the systemd unit passes `systemd-analyze verify` with no output at
all; the launchd plist parses and has the right keys, types and absolute paths."""

from __future__ import annotations

import os
import plistlib
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

from parhelia import paths
from parhelia_cli import service_files
from tests.helpers.paths import REPO


def test_templates_match_the_repository_copies():
    assert (REPO / "systemd" / "parheliad.service").read_bytes() == \
        service_files.SYSTEMD_TEMPLATE.read_bytes()
    assert (REPO / "launchd" / "dev.parhelia.parheliad.plist").read_bytes() == \
        service_files.LAUNCHD_TEMPLATE.read_bytes()


def _verify(unit_text: str) -> str:
    with tempfile.TemporaryDirectory() as d:
        unit = Path(d) / "parheliad.service"
        unit.write_text(unit_text)
        runtime = Path(d) / "runtime"
        runtime.mkdir(mode=0o700)
        out = subprocess.run(["systemd-analyze", "verify", "--user", "--man=no", str(unit)],
                             env=dict(os.environ, XDG_RUNTIME_DIR=str(runtime)),
                             capture_output=True, text=True, timeout=60)
        return (out.stdout + out.stderr).strip() + ("" if out.returncode == 0 else
                                                    f"\nexit {out.returncode}")


needs_systemd = pytest.mark.requires("systemd-analyze")


@needs_systemd
@pytest.mark.parametrize("socket_env", [None, "/tmp/some dir/with%percent/p.sock"])
def test_systemd_unit_verifies_cleanly(home, monkeypatch, socket_env):
    if socket_env:
        monkeypatch.setenv("PARHELIA_SOCKET", socket_env)
    else:
        monkeypatch.delenv("PARHELIA_HOME")
    text = service_files.systemd_unit(paths.resolve())
    assert _verify(text) == ""


@needs_systemd
def test_systemd_unit_with_python_m_fallback_verifies(home):
    import sys

    text = service_files.systemd_unit(paths.resolve(), argv=[sys.executable, "-m", "parheliad"])
    assert f"ExecStart={sys.executable} -m parheliad" in text
    assert _verify(text) == ""


@needs_systemd
def test_verify_does_catch_problems():
    """The lint is real: a typo'd key produces output."""
    text = service_files.systemd_unit(paths.resolve()).replace("UMask=", "UMsk=")
    assert _verify(text) != ""


def test_systemd_unit_contents(home, monkeypatch):
    monkeypatch.delenv("PARHELIA_HOME")
    text = service_files.systemd_unit(paths.resolve())
    lines = text.splitlines()
    for expected in ("Type=notify", "RuntimeDirectory=parhelia", "RuntimeDirectoryMode=0700",
                     "UMask=0077", "Restart=on-failure", "TimeoutStopSec=30",
                     'Environment="PARHELIA_SOCKET=%t/parhelia/parheliad.sock"',
                     "WantedBy=default.target"):
        assert expected in lines, expected
    exec_start = next(x for x in lines if x.startswith("ExecStart="))
    program = exec_start.removeprefix("ExecStart=").split()[0]
    assert os.path.isabs(program) and os.access(program, os.X_OK)
    assert not re.search(r"@[A-Z_]+@", text)


def test_systemd_unit_keeps_a_custom_home(home):
    text = service_files.systemd_unit(paths.resolve())
    assert f'Environment="PARHELIA_HOME={home}"' in text
    assert f'Environment="PARHELIA_SOCKET={home}/run/parheliad.sock"' in text


def test_launchd_plist(home):
    text = service_files.launchd_plist(paths.resolve())
    plist = plistlib.loads(text.encode())
    assert plist["Label"] == "dev.parhelia.parheliad"
    args = plist["ProgramArguments"]
    assert isinstance(args, list) and all(isinstance(a, str) for a in args)
    assert os.path.isabs(args[0]) and os.access(args[0], os.X_OK)
    assert args[-2:] == ["--socket", str(paths.resolve().socket)]
    assert os.path.isabs(args[-1])
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    for key in ("StandardOutPath", "StandardErrorPath"):
        assert isinstance(plist[key], str) and os.path.isabs(plist[key])
    assert plist["EnvironmentVariables"]["PARHELIA_HOME"] == str(home)
    assert all(isinstance(v, str) for v in plist["EnvironmentVariables"].values())
    assert not re.search(r"@[A-Z_]+@", text)
    assert "Program" not in plist or os.path.isabs(plist["Program"])
    assert plist.get("AbandonProcessGroup") is True


def test_install_print(run, home):
    result = run("daemon", "install", "--print", "--manager", "systemd")
    assert result.exit_code == 0
    assert result.stdout.startswith("# systemd user unit")
    result = run("daemon", "install", "--print", "--manager", "launchd")
    assert plistlib.loads(result.stdout.encode())["Label"] == "dev.parhelia.parheliad"


def test_install_writes_the_unit(run, home, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("HOME", str(tmp_path))
    result = run("daemon", "install", "--manager", "systemd")
    assert result.exit_code == 0, result.output
    unit = tmp_path / "cfg" / "systemd" / "user" / "parheliad.service"
    assert unit.exists()
    assert str(unit) in result.stdout
    assert "systemctl --user daemon-reload && systemctl --user enable --now parheliad" \
        in result.stdout
    result = run("daemon", "install", "--manager", "launchd")
    plist = tmp_path / "Library" / "LaunchAgents" / "dev.parhelia.parheliad.plist"
    assert plist.exists()
    assert "launchctl bootstrap gui/" in result.stdout
