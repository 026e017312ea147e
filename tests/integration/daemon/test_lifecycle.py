"""The daemon process: permissions, single instance, signals, restarts, sd_notify."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import grpc

from parhelia.v1 import system_pb2, system_pb2_grpc, tasks_pb2, tasks_pb2_grpc
from tests.helpers.daemon import RunningDaemon, daemon_env, start_daemon, wait_serving


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def stub(d: RunningDaemon, cls=system_pb2_grpc.SystemServiceStub):
    return cls(grpc.insecure_channel(f"unix://{d.socket}"))


def create_task(d: RunningDaemon, prompt: str = "do it") -> str:
    reply = stub(d, tasks_pb2_grpc.TaskServiceStub).CreateTask(
        tasks_pb2.CreateTaskRequest(prompt=prompt, no_dispatch=True), timeout=10)
    return reply.task.id


def lock_is_free(path: Path) -> bool:
    with path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(fh, fcntl.LOCK_UN)
        return True


def test_socket_0600_and_directories_0700(daemon: RunningDaemon) -> None:
    p = daemon.paths
    assert stat.S_ISSOCK(p.socket.stat().st_mode)
    assert mode(p.socket) == 0o600
    assert mode(p.socket.parent) == 0o700
    assert mode(p.state_dir) == 0o700
    assert mode(p.log_file) == 0o600
    assert mode(p.database) == 0o600
    assert not lock_is_free(p.lock_file)
    assert int(p.pid_file.read_text()) == daemon.proc.pid


def test_existing_socket_dir_is_never_changed(parhelia_home: Path) -> None:
    # Not the daemon's to change (it may be /tmp); the 0600 socket guards itself. A socket
    # dir others can write is refused instead (tests/integration/daemon/test_socket_trust.py).
    run_dir = parhelia_home / "run"
    run_dir.mkdir(mode=0o755)
    os.chmod(run_dir, 0o755)
    d = start_daemon(parhelia_home)
    try:
        assert mode(run_dir) == 0o755 and mode(d.socket) == 0o600
    finally:
        d.stop()


def test_data_dir_is_private(parhelia_home: Path) -> None:
    # The data dir holds the volume (agent.jsonl: the agent's raw output, tool results
    # included; worker logs; blobs), the workspaces and the transcripts: owner only,
    # whatever the umask, also when it already existed wider.
    d = start_daemon(parhelia_home)
    try:
        assert mode(d.paths.data_dir) == 0o700
    finally:
        d.stop()
    os.chmod(d.paths.data_dir, 0o755)
    d = start_daemon(parhelia_home)
    try:
        assert mode(d.paths.data_dir) == 0o700
    finally:
        d.stop()


def test_second_daemon_refused_first_keeps_serving(daemon: RunningDaemon) -> None:
    inode = daemon.socket.stat().st_ino
    second = subprocess.run([sys.executable, "-m", "parheliad"], env=daemon.env,
                            capture_output=True, text=True, timeout=30)
    assert second.returncode == 1
    assert f"another parheliad is serving unix://{daemon.socket}" in second.stderr
    assert f"pid {daemon.proc.pid}" in second.stderr
    assert daemon.socket.stat().st_ino == inode  # the socket was not touched
    reply = stub(daemon).GetStatus(system_pb2.GetStatusRequest(), timeout=5)
    assert reply.pid == daemon.proc.pid
    assert daemon.proc.poll() is None


def test_lock_held_refuses_even_without_socket(parhelia_home: Path) -> None:
    env = daemon_env(parhelia_home)
    d = RunningDaemon(parhelia_home, env)
    d.paths.state_dir.mkdir(parents=True, mode=0o700)
    with d.paths.lock_file.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        out = subprocess.run([sys.executable, "-m", "parheliad"], env=env,
                             capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "another parheliad holds" in out.stderr
    assert not d.socket.exists()


def test_sigterm_is_clean_and_restart_is_immediate(daemon: RunningDaemon) -> None:
    task_id = create_task(daemon)
    assert daemon.stop(signal.SIGTERM) == 0
    p = daemon.paths
    assert not p.socket.exists()
    assert not p.pid_file.exists()
    assert lock_is_free(p.lock_file)
    assert "Traceback" not in daemon.output()
    # its last words reach the log file and stderr (it exits without the interpreter's
    # teardown, after flushing them)
    assert '"daemon.stopped"' in daemon.log_file.read_text().splitlines()[-1]
    assert '"daemon.stopped"' in daemon.output().splitlines()[-1]
    daemon.start()  # at once: no stale state in the way
    got = stub(daemon, tasks_pb2_grpc.TaskServiceStub).GetTask(
        tasks_pb2.GetTaskRequest(task_id=task_id), timeout=5)
    assert got.id == task_id


def test_sigint_is_clean(daemon: RunningDaemon) -> None:
    assert daemon.stop(signal.SIGINT) == 0
    assert not daemon.socket.exists()


def test_shutdown_rpc_stops_cleanly(daemon: RunningDaemon) -> None:
    stub(daemon).Shutdown(system_pb2.ShutdownRequest(), timeout=5)
    assert daemon.proc.wait(20) == 0
    assert not daemon.socket.exists()


def test_tasks_survive_restart_and_sigkill(daemon: RunningDaemon) -> None:
    ids = [create_task(daemon, f"task {i}") for i in range(3)]
    instance = stub(daemon).GetVersion(system_pb2.GetVersionRequest(), timeout=5).instance_id
    daemon.restart()
    ids.append(create_task(daemon, "after restart"))
    assert daemon.kill() == -signal.SIGKILL
    assert daemon.socket.exists()  # SIGKILL leaves a stale socket behind...
    daemon.start()  # ...which the next daemon removes (nobody answers, lock is free)
    listed = stub(daemon, tasks_pb2_grpc.TaskServiceStub).ListTasks(
        tasks_pb2.ListTasksRequest(), timeout=5)
    assert sorted(t.id for t in listed.tasks) == sorted(ids)
    again = stub(daemon).GetVersion(system_pb2.GetVersionRequest(), timeout=5).instance_id
    assert again == instance and instance.startswith("phd-")


def test_socket_path_too_long_is_refused(parhelia_home: Path) -> None:
    long_socket = parhelia_home / ("x" * 120) / "p.sock"
    out = subprocess.run([sys.executable, "-m", "parheliad", "--socket", str(long_socket)],
                         env=daemon_env(parhelia_home), capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 1
    assert "more than the 103 a Unix socket allows" in out.stderr


def test_explicit_socket_option(parhelia_home: Path) -> None:
    sock = parhelia_home / "alt.sock"
    d = RunningDaemon(parhelia_home, daemon_env(parhelia_home, PARHELIA_SOCKET=str(sock)),
                      ("--socket", str(sock)))
    d.start()
    try:
        assert wait_serving(sock, d.proc, 5) and mode(sock) == 0o600
    finally:
        assert d.stop() == 0
    assert not sock.exists()


def _notify_listener(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(20)
    return sock


def _read_until(sock: socket.socket, wanted: str) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        seen.append(sock.recv(4096).decode())
        if any(wanted in m.splitlines() for m in seen):
            return seen
    raise AssertionError(f"{wanted} not received: {seen}")


def test_sd_notify_ready_and_stopping(parhelia_home: Path) -> None:
    path = parhelia_home / "notify.sock"
    with _notify_listener(str(path)) as listener:
        d = start_daemon(parhelia_home, NOTIFY_SOCKET=str(path))
        ready = _read_until(listener, "READY=1")
        assert any("STATUS=serving unix://" in m for m in ready)
        assert d.stop() == 0
        _read_until(listener, "STOPPING=1")


def test_sd_notify_abstract_namespace(parhelia_home: Path) -> None:
    name = f"parhelia-test-{os.getpid()}-{time.monotonic_ns()}"
    with _notify_listener("\0" + name) as listener:
        d = start_daemon(parhelia_home, NOTIFY_SOCKET="@" + name)
        _read_until(listener, "READY=1")
        assert d.stop() == 0
        _read_until(listener, "STOPPING=1")
