"""Trust of the socket, its directory, PARHELIA_HOME and the env file, with a real
"other user": root here gives files to another uid (chown) or runs a fake daemon that
setuid()s to nobody. Skipped, with the reason, where the test has no root."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from parhelia import envfile
from parhelia.errors import ParheliaError
from tests.helpers.daemon import RunningDaemon, cli_argv, daemon_env

OTHER_UID = 12345
NOBODY = 65534
pytestmark = pytest.mark.requires("root", reason="needs root to act as another user "
                                   "(chown/setuid)")


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cli_argv(), *args], env=env, capture_output=True, text=True,
                          timeout=60)


def _parheliad(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "parheliad", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_client_refuses_a_socket_owned_by_another_user(daemon: RunningDaemon) -> None:
    os.chown(daemon.socket, OTHER_UID, OTHER_UID)
    try:
        out = _cli(daemon.env, "task", "create", "secret prompt", "--no-workspace")
        assert out.returncode != 0
        assert "E401" in out.stderr and f"uid {OTHER_UID}" in out.stderr
    finally:
        os.chown(daemon.socket, 0, 0)
    assert _cli(daemon.env, "task", "list").returncode == 0


def test_client_refuses_a_daemon_running_as_another_user(parhelia_home: Path) -> None:
    """The socket file and its directory are ours, but the process listening on it is
    nobody's (it bound as root, then dropped to uid 65534 before listen): SO_PEERCRED."""
    run = parhelia_home / "run"
    run.mkdir(mode=0o700)
    sock = run / "parheliad.sock"
    fake = subprocess.Popen([sys.executable, "-c", (
        "import os, socket, sys, time\n"
        "s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])\n"
        f"os.setgid({NOBODY}); os.setuid({NOBODY}); s.listen(8)\n"
        "print('ready', flush=True)\n"
        "while True:\n    c, _ = s.accept(); c.recv(65536); time.sleep(5)\n"), str(sock)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert fake.stdout is not None and fake.stdout.readline().strip() == "ready"
        assert sock.stat().st_uid == 0
        out = _cli(daemon_env(parhelia_home), "task", "create", "my secret prompt",
                   "--no-workspace")
        assert out.returncode != 0
        assert "E401" in out.stderr and f"runs as uid {NOBODY}" in out.stderr
    finally:
        fake.kill()
        fake.wait()


def test_socket_dir_of_another_user_or_a_planted_symlink_is_refused(
        parhelia_home: Path, tmp_path: Path) -> None:
    theirs = parhelia_home / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, OTHER_UID, OTHER_UID)
    sock = theirs / "p.sock"
    out = _parheliad(daemon_env(parhelia_home, PARHELIA_SOCKET=str(sock)))
    assert out.returncode == 1
    assert f"belongs to uid {OTHER_UID}" in out.stderr and not sock.exists()
    assert stat.S_IMODE(theirs.stat().st_mode) == 0o755  # untouched
    link = parhelia_home / "link"
    link.symlink_to(tmp_path)
    os.lchown(link, OTHER_UID, OTHER_UID)
    out = _parheliad(daemon_env(parhelia_home, PARHELIA_SOCKET=str(link / "p.sock")))
    assert out.returncode == 1 and "symbolic link" in out.stderr


def test_sticky_socket_dir_is_used_and_never_chmodded(parhelia_home: Path) -> None:
    shared = parhelia_home / "shared-tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    sock = shared / "p.sock"
    d = RunningDaemon(parhelia_home, daemon_env(parhelia_home, PARHELIA_SOCKET=str(sock)))
    d.start()
    try:
        assert stat.S_IMODE(shared.stat().st_mode) == 0o1777  # the sticky bit stays
        assert _cli(d.env, "task", "list").returncode == 0
        doctor = json.loads(_cli(d.env, "doctor", "--json").stdout)
        check = next(c for c in doctor["checks"] if c["name"] == "daemon")
        assert check["status"] == "ok", check  # and doctor does not say "chmod 700 /tmp"
    finally:
        d.stop()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777


@pytest.mark.parametrize("how", ["world-writable", "foreign-owned"])
def test_untrusted_parhelia_home_is_refused(parhelia_home: Path, how: str) -> None:
    if how == "world-writable":
        parhelia_home.chmod(0o777)
    else:
        os.chown(parhelia_home, OTHER_UID, OTHER_UID)
    try:
        out = _parheliad(daemon_env(parhelia_home))
        assert out.returncode == 1
        assert "PARHELIA_HOME" in out.stderr or "not trusted" in out.stderr
        assert not (parhelia_home / "state" / "parheliad.db").exists()
    finally:
        os.chown(parhelia_home, 0, 0)
        parhelia_home.chmod(0o700)


def test_env_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "parheliad.env"
    f.write_text("ANTHROPIC_API_KEY=planted\n")
    f.chmod(0o600)
    os.chown(f, OTHER_UID, OTHER_UID)
    with pytest.raises(ParheliaError) as ei:
        envfile.load(f, {})
    assert ei.value.code == "E401" and f"uid {OTHER_UID}" in ei.value.message



def test_client_refuses_a_symlink_of_another_user_to_its_own_socket(
        daemon: RunningDaemon, tmp_path: Path) -> None:
    """A link another user planted (in a sticky /tmp-like directory) that points at our
    own daemon passes every check made on the target, yet they can repoint it at their
    daemon between the check and the connection: the link itself is refused."""
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    theirs = shared / "theirs"
    theirs.mkdir()
    os.chown(theirs, OTHER_UID, OTHER_UID)
    for link in (shared / "p.sock", theirs / "p.sock"):
        link.symlink_to(daemon.socket)
        os.lchown(link, OTHER_UID, OTHER_UID)
        out = _cli({**daemon.env, "PARHELIA_SOCKET": str(link)}, "task", "list")
        assert out.returncode != 0 and "E401" in out.stderr, out.stderr
        assert f"uid {OTHER_UID}" in out.stderr
    # Through a directory link they made, to our own run directory.
    dlink = shared / "run"
    dlink.symlink_to(daemon.socket.parent)
    os.lchown(dlink, OTHER_UID, OTHER_UID)
    out = _cli({**daemon.env, "PARHELIA_SOCKET": str(dlink / daemon.socket.name)},
               "task", "list")
    assert out.returncode != 0 and "symbolic link" in out.stderr, out.stderr
    # Our own link in the same place is fine.
    mine = shared / "mine.sock"
    mine.symlink_to(daemon.socket)
    assert _cli({**daemon.env, "PARHELIA_SOCKET": str(mine)}, "task", "list").returncode == 0


def test_a_stale_socket_of_another_user_is_never_removed(parhelia_home: Path) -> None:
    """In a shared sticky directory, a dead socket another user left at our path: the
    daemon refuses (root could remove it; nobody may remove what is not theirs)."""
    import socket as socket_

    shared = parhelia_home / "shared-tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    sock = shared / "p.sock"
    with socket_.socket(socket_.AF_UNIX) as s:
        s.bind(str(sock))  # closed without listening: stale
    os.lchown(sock, OTHER_UID, OTHER_UID)
    out = _parheliad(daemon_env(parhelia_home, PARHELIA_SOCKET=str(sock)))
    assert out.returncode == 1, out.stderr
    assert f"uid {OTHER_UID}" in out.stderr and "not removed" in out.stderr
    assert stat.S_ISSOCK(os.lstat(sock).st_mode) and os.lstat(sock).st_uid == OTHER_UID
