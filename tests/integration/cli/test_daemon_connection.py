"""The CLI as a subprocess against a real ``parheliad`` on a temporary PARHELIA_HOME."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from parhelia import __version__, paths
from tests.helpers.daemon import RunningDaemon, cli_argv, daemon_env, wait_serving

pytestmark = pytest.mark.timeout(120)


def test_unknown_ids_are_e201_exit_3(daemon: RunningDaemon):
    for args in (["task", "show", "t-doesnotexist"], ["task", "cancel", "t-doesnotexist"],
                 ["task", "delete", "t-doesnotexist", "-y"]):
        out = daemon.cli(*args)
        assert out.returncode == 3, (args, out.stderr)
        assert "E201 TASK_NOT_FOUND" in out.stderr
        assert "Traceback" not in out.stderr
    out = daemon.cli("task", "show", "t-doesnotexist", "--json")
    assert json.loads(out.stderr)["error"]["code"] == "E201"


def test_invalid_values_are_e101_exit_2(daemon: RunningDaemon):
    out = daemon.cli("task", "create", "x", "--gpu", "Z80", "--no-workspace")
    assert out.returncode == 2
    assert "E101" in out.stderr and "Z80" in out.stderr
    out = daemon.cli("events", "list", "--since", "eventually")
    assert out.returncode == 2 and "eventually" in out.stderr


def test_task_round_trip_json(daemon: RunningDaemon):
    out = daemon.cli("task", "create", "Round trip", "--no-dispatch", "--no-workspace",
                     "--max-turns", "3", "--json")
    assert out.returncode == 0, out.stderr
    created = json.loads(out.stdout)
    task_id = created["id"]
    assert created["status"] == "pending"
    assert created["prompt"] == "Round trip"

    listed = json.loads(daemon.cli("task", "list", "--json").stdout)["tasks"]
    assert task_id in [t["id"] for t in listed]
    pending = json.loads(daemon.cli("task", "list", "--status", "pending", "--json").stdout)
    assert task_id in [t["id"] for t in pending["tasks"]]

    shown = json.loads(daemon.cli("task", "show", task_id[:8], "--json").stdout)
    assert shown["id"] == task_id
    assert shown["options"]["max_turns"] == 3
    assert shown["created_at"].endswith("Z")

    out = daemon.cli("task", "cancel", task_id, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "cancelled"
    out = daemon.cli("task", "delete", task_id[:8], "--json", "-y")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"id": task_id, "deleted": True}
    assert daemon.cli("task", "show", task_id).returncode == 3


def test_text_output_has_no_ansi(daemon: RunningDaemon):
    daemon.cli("task", "create", "plain", "--no-dispatch", "--no-workspace")
    for args in (["task", "list"], ["status"], ["events", "list"]):
        out = daemon.cli(*args, env={"NO_COLOR": None})  # not a terminal is enough
        assert out.returncode in (0, 1), out.stderr
        assert "\x1b[" not in out.stdout + out.stderr


def test_status_json_fields(daemon: RunningDaemon):
    out = daemon.cli("status", "--json")
    assert out.returncode in (0, 1), out.stderr
    data = json.loads(out.stdout)
    assert data["version"]
    assert data["pid"] == daemon.proc.pid
    assert data["socket_path"] == str(daemon.socket)
    assert data["database_path"]
    assert isinstance(data["tasks_by_status"], dict)
    assert isinstance(data["backends"], list)
    assert data["uptime_seconds"] >= 0
    assert data["started_at"].endswith("Z")


def test_version(daemon: RunningDaemon):
    out = daemon.cli("--version")
    assert out.returncode == 0
    assert f"parhelia {__version__}" in out.stdout
    assert "parheliad " in out.stdout and "not running" not in out.stdout


def test_events_watch_receives_a_new_event(daemon: RunningDaemon):
    watcher = subprocess.Popen([*cli_argv(), "events", "watch", "--json", "--type",
                                "task_created"], env=daemon.env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)  # let it subscribe
        assert watcher.poll() is None, watcher.stderr.read() if watcher.stderr else ""
        out = daemon.cli("task", "create", "watched", "--no-dispatch", "--no-workspace")
        task_id = out.stdout.strip()
        line = watcher.stdout.readline() if watcher.stdout else ""
        event = json.loads(line)
        assert event["type"] == "task_created"
        assert event["task_id"] == task_id
    finally:
        watcher.terminate()
        watcher.wait(10)


def test_events_list_sees_the_task(daemon: RunningDaemon):
    task_id = daemon.cli("task", "create", "evt", "--no-dispatch", "--no-workspace").stdout.strip()
    out = daemon.cli("events", "list", "--task", task_id, "--json")
    assert out.returncode == 0, out.stderr
    assert "task_created" in [e["type"] for e in json.loads(out.stdout)["events"]]


def test_no_autostart_opt_out(home):
    env = daemon_env(home)
    out = subprocess.run([*cli_argv(), "task", "list"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 5
    assert "E504 DAEMON_UNAVAILABLE" in out.stderr
    assert "parhelia daemon start" in out.stderr


def test_autostart(home):
    env = daemon_env(home)
    env.pop("PARHELIA_NO_AUTOSTART")
    socket = paths.resolve(env=env).socket
    try:
        out = subprocess.run([*cli_argv(), "task", "list", "--json"], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["tasks"] == []
        assert wait_serving(socket, None, 5)
    finally:
        stop = subprocess.run([*cli_argv(), "daemon", "stop"], env=env, capture_output=True,
                              text=True, timeout=60)
        assert stop.returncode == 0, stop.stderr
    assert not wait_serving(socket, None, 0.5)


def test_daemon_start_status_stop(home):
    env = daemon_env(home)
    run = lambda *a: subprocess.run([*cli_argv(), *a], env=env, capture_output=True,  # noqa: E731
                                    text=True, timeout=60)
    try:
        out = run("daemon", "start")
        assert out.returncode == 0, out.stderr
        assert "started" in out.stdout
        assert "already running" in run("daemon", "start").stdout
        status = json.loads(run("daemon", "status", "--json").stdout)
        assert status["running"] is True and status["pid"]
        assert run("daemon", "logs", "-n", "5").returncode == 0
    finally:
        out = run("daemon", "stop")
        assert out.returncode == 0, out.stderr
    assert run("daemon", "status").returncode == 5

