"""The interactive TUI's tmux (modal_worker.tui) against hostile surroundings, with real
tmux: another local user, a directory planted in the shared /tmp, a hostile HOME or
workspace with tmux configuration; and the first-run seeding of Claude Code's config."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modal_worker import claude_config
from modal_worker.tui import Tmux, guarded, private_dir, tmux_binary
from parhelia.errors import ParheliaError
from parhelia.tuisocket import socket_path
from tests.helpers.real_tools import require

pytestmark = pytest.mark.requires("tmux")
NOBODY = 65534


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short base directory (a socket path has about 100 bytes)."""
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="tui-", dir="/tmp"))
    yield base
    subprocess.run(["rm", "-rf", str(base)], check=False)


def _started(socket: str, env: dict[str, str] | None = None) -> Tmux:
    tmux = Tmux(socket, tmux_binary())
    tmux.start(["sleep", "60"], cwd=Path("/"), env=env or dict(os.environ))
    return tmux


def _as_nobody() -> None:  # pragma: no cover - runs in the child
    os.setgid(NOBODY)
    os.setuid(NOBODY)


@pytest.mark.requires("root", reason="needs root to act as another user")
def test_another_local_user_can_neither_list_nor_connect(short_tmp: Path) -> None:
    socket = socket_path("c-private", tmp=str(short_tmp))
    tmux = _started(socket)
    try:
        for d in (Path(socket).parent, Path(socket).parent.parent):
            st = os.lstat(d)
            assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()
        os.chmod(short_tmp, 0o755)  # only our directories stand in the way
        for argv in (["tmux", "-S", socket, "list-sessions"],
                     ["tmux", "-S", socket, "send-keys", "-t", "parhelia", "echo", "Enter"],
                     ["ls", str(Path(socket).parent)]):
            other = subprocess.run(argv, capture_output=True, text=True, timeout=10,
                                   preexec_fn=_as_nobody, env={"PATH": os.defpath},
                                   check=False)
            assert other.returncode != 0, argv
            assert "parhelia" not in other.stdout
        assert tmux.state().alive
    finally:
        tmux.kill_server()


@pytest.mark.parametrize("plant", ["open", "symlink", "other_user"])
def test_a_socket_directory_planted_in_tmp_is_refused(short_tmp: Path, plant: str) -> None:
    socket = Path(socket_path("c-planted", tmp=str(short_tmp)))
    base = socket.parent.parent
    if plant == "open":
        base.mkdir(mode=0o777)
        os.chmod(base, 0o777)
    elif plant == "symlink":
        target = short_tmp / "elsewhere"
        target.mkdir(mode=0o700)
        base.symlink_to(target)
    else:
        require("root", "needs root to make a directory of another user")
        base.mkdir(mode=0o700)
        os.chown(base, NOBODY, NOBODY)
    with pytest.raises(ParheliaError) as err:
        _started(str(socket))
    assert err.value.code == "E601" and "not private" in err.value.message
    assert not socket.exists()


def test_no_tmux_configuration_but_ours_is_read(short_tmp: Path) -> None:
    """A hostile HOME or workspace (~/.tmux.conf, $XDG_CONFIG_HOME/tmux/tmux.conf) runs
    nothing: the server reads only the file Parhelia wrote (-f)."""
    hostile = short_tmp / "hostile"
    canary = short_tmp / "canary"
    for rel in (".tmux.conf", ".config/tmux/tmux.conf", "tmux/tmux.conf"):
        path = hostile / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"run-shell 'touch {canary}'\nset -g @hostile yes\n")
    env = {**os.environ, "HOME": str(hostile), "XDG_CONFIG_HOME": str(hostile)}
    tmux = Tmux(socket_path("c-conf", tmp=str(short_tmp)), tmux_binary())
    tmux.start(["sleep", "60"], cwd=hostile, env=env)
    try:
        time.sleep(0.5)
        assert not canary.exists()
        shown = tmux.run("show-options", "-gqv", "@hostile").stdout.decode().strip()
        assert shown == ""
        assert tmux.run("show-options", "-gv", "remain-on-exit").stdout.decode().strip() == "on"
        assert tmux.state().alive
    finally:
        tmux.kill_server()


def test_a_one_word_agent_command_is_refused(short_tmp: Path) -> None:
    """tmux runs a one-word command through a shell: never given one."""
    tmux = Tmux(socket_path("c-one", tmp=str(short_tmp)), tmux_binary())
    with pytest.raises(ValueError):
        tmux.start(["claude"], cwd=Path("/"), env=dict(os.environ))


def test_private_dir_is_idempotent_and_strict(short_tmp: Path) -> None:
    d = private_dir(short_tmp / "a" / "b")
    assert private_dir(d) == d
    os.chmod(d, 0o750)
    with pytest.raises(ParheliaError):
        private_dir(d)


def test_seeding_skips_first_run_screens_and_keeps_what_is_there(tmp_path: Path) -> None:
    config = tmp_path / "cfg"
    config.mkdir(mode=0o700)
    (config / ".claude.json").write_text(json.dumps({
        "mcpServers": {"docs": {"command": "docs-server"}}, "theme": "light",
        "customApiKeyResponses": {"approved": [], "rejected": ["0123456789abcdefghij"]},
        "projects": {"/ws": {"allowedTools": ["Bash"]}}}))
    key = "sk-ant-api03-" + "x" * 40 + "0123456789abcdefghij"
    claude_config.seed_tui(config, Path("/ws"), version="2.1.332", api_key=key)
    assert not (config / "settings.json").exists()  # no bypass: nothing to accept
    claude_config.seed_tui(config, Path("/ws"), version="2.1.332", api_key=key,
                           bypass_permissions=True)
    assert json.loads((config / "settings.json").read_text()) == {
        "skipDangerousModePermissionPrompt": True}
    path = config / ".claude.json"
    state = json.loads(path.read_text())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert state["hasCompletedOnboarding"] is True
    assert state["lastOnboardingVersion"] == "2.1.332"
    assert state["theme"] == "light"  # the user's choice stays
    assert state["mcpServers"] == {"docs": {"command": "docs-server"}}
    assert state["customApiKeyResponses"] == {"approved": ["0123456789abcdefghij"],
                                              "rejected": []}
    assert key not in path.read_text()  # only the tail Claude Code itself keeps
    assert state["projects"]["/ws"] == {"allowedTools": ["Bash"],
                                        "hasTrustDialogAccepted": True,
                                        "hasCompletedProjectOnboarding": True}


def test_seeding_never_writes_through_a_planted_symlink(tmp_path: Path) -> None:
    config = tmp_path / "cfg"
    config.mkdir(mode=0o700)
    victim = tmp_path / "victim.json"
    victim.write_text("{}")
    (config / ".claude.json").symlink_to(victim)
    with pytest.raises(ParheliaError):
        claude_config.seed_tui(config, Path("/ws"), version="2.1.332", api_key="k" * 30)
    assert victim.read_text() == "{}"


def test_a_worker_killed_with_sigkill_takes_its_tui_and_tmux_server_along(
        short_tmp: Path) -> None:
    """tmux daemonises its server out of the worker's process group: the guard in the pane
    ends the agent and the server when the worker is gone."""
    worker = subprocess.Popen(["sleep", "300"])
    marker = short_tmp / "agent-pid"
    agent = ["sh", "-c", f'echo $$ > {marker}; exec sleep 300']
    tmux = Tmux(socket_path("c-guard", tmp=str(short_tmp)), tmux_binary())
    tmux.start(guarded(agent, worker_pid=worker.pid), cwd=Path("/"), env=dict(os.environ))
    try:
        deadline = time.monotonic() + 20
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        agent_pid = int(marker.read_text())
        assert tmux.state().alive
        worker.kill()
        worker.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (tmux.run("list-sessions").returncode == 0 or
                                               Path(f"/proc/{agent_pid}").exists()):
            time.sleep(0.2)
        assert not Path(f"/proc/{agent_pid}").exists(), "the agent outlived its worker"
        assert tmux.run("list-sessions").returncode != 0, "the tmux server outlived it"
    finally:
        tmux.kill_server()
        worker.kill()


def test_the_guard_passes_the_agents_exit_status_and_a_stop(short_tmp: Path) -> None:
    tmux = Tmux(socket_path("c-status", tmp=str(short_tmp)), tmux_binary())
    tmux.start(guarded(["sh", "-c", "exit 3"]), cwd=Path("/"), env=dict(os.environ))
    try:
        deadline = time.monotonic() + 20
        while tmux.state().alive and time.monotonic() < deadline:
            time.sleep(0.1)
        st = tmux.state()
        assert (st.alive, st.exit_status) == (False, 3)
    finally:
        tmux.kill_server()
    tmux.start(guarded(["sleep", "300"]), cwd=Path("/"), env=dict(os.environ))
    assert tmux.state().alive
    assert tmux.stop(5.0) is False  # SIGTERM reached the agent through the guard
    assert tmux.run("list-sessions").returncode != 0


def test_the_local_backend_attaches_only_to_a_private_running_server(tmp_path: Path) -> None:
    from parhelia.paths import resolve
    from parheliad.backends.local import LocalBackend

    backend = LocalBackend(resolve(env={"PARHELIA_HOME": str(tmp_path)}), env={})
    container = f"c-attach{os.getpid()}"
    me = f"{os.getpid()}@1.00"
    with pytest.raises(ParheliaError) as err:
        backend.attach_argv(me, container)
    assert err.value.code == "E601"
    tmux = _started(socket_path(container))
    try:
        argv = backend.attach_argv(me, container)
        assert argv[1:] == ["-S", tmux.socket, "-f", os.devnull, "attach-session", "-t",
                            "parhelia"]
        os.chmod(Path(tmux.socket).parent, 0o755)
        with pytest.raises(ParheliaError) as err:
            backend.attach_argv(me, container)
        assert err.value.code == "E601" and "open to other users" in err.value.message
    finally:
        tmux.kill_server()
        shutil.rmtree(Path(tmux.socket).parent, ignore_errors=True)
