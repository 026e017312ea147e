"""CLI behaviour against an in-process fake of the API (contract-level: statuses, the
E-code in trailing metadata, streams). The real daemon is in test_integration_*.py."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time

import pytest

from parhelia.v1 import common_pb2, system_pb2, tasks_pb2
from tests.helpers.paths import REPO

ANSI = re.compile(r"\x1b\[")


def test_unknown_id_is_e201_exit_3(run, fake):
    result = run("task", "show", "t-nope")
    assert result.exit_code == 3
    assert "Error E201 TASK_NOT_FOUND: no task matches 't-nope'" in result.stderr
    assert "parhelia help E201" in result.stderr


def test_unknown_id_json_error(run, fake):
    result = run("task", "show", "t-nope", "--json")
    assert result.exit_code == 3
    assert json.loads(result.stderr) == {"error": {
        "code": "E201", "name": "TASK_NOT_FOUND", "message": "no task matches 't-nope'"}}
    assert result.stdout == ""


def test_state_errors_map_to_their_exit_code(run, fake):
    task_id = run("task", "create", "x", "--no-workspace").stdout.strip()
    assert run("task", "cancel", task_id).exit_code == 0
    result = run("task", "cancel", task_id)
    assert result.exit_code == 1
    assert "E603 DISPATCH_REJECTED" in result.stderr


def test_create_list_show_cancel_delete_json(run, fake, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not a git repository: uploaded as it is
    created = json.loads(run("task", "create", "Fix it", "--no-dispatch", "--gpu", "a10g",
                             "--memory", "16GiB", "--timeout", "30m", "--max-cost", "2.5",
                             "--json").stdout)
    task_id = created["id"]
    assert created["status"] == "pending"
    req = [r for r in fake.state.requests if isinstance(r, tasks_pb2.CreateTaskRequest)][-1]
    assert req.no_dispatch and req.prompt == "Fix it"
    assert (req.options.gpu, req.options.memory_mb, req.options.timeout_seconds,
            req.options.max_cost_micros) == ("A10G", 16384, 1800, 2_500_000)
    assert req.source.workspace_id == "ws-1"
    upload = [r for r in fake.state.requests
              if isinstance(r, tasks_pb2.UploadWorkspaceRequest)][-1]
    assert upload.path == str(tmp_path)

    listed = json.loads(run("task", "list", "--json").stdout)
    assert [t["id"] for t in listed["tasks"]] == [task_id]
    shown = json.loads(run("task", "show", task_id[:6], "--json").stdout)
    assert shown["options"]["max_cost_usd"] == "2.500000"
    assert shown["created_at"].endswith("Z")
    cancelled = json.loads(run("task", "cancel", task_id, "--json").stdout)
    assert cancelled["status"] == "cancelled"
    assert json.loads(run("task", "delete", task_id[:6], "--json", "-y").stdout) == {
        "id": task_id, "deleted": True}  # the resolved full id
    assert run("task", "show", task_id).exit_code == 3


def test_create_prints_only_the_id(run, fake):
    result = run("task", "create", "x", "--no-workspace")
    assert result.exit_code == 0
    assert re.fullmatch(r"t-\w+\n", result.stdout)


def test_create_uploads_the_git_repository_around_cwd(run, fake, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "sub").mkdir()
    monkeypatch.chdir(repo / "sub")
    result = run("task", "create", "x")
    assert result.exit_code == 0, result.output
    assert "Uploaded 2 files, 2.0 MB (1.5 MB new)" in result.stderr
    upload = [r for r in fake.state.requests if isinstance(r, tasks_pb2.UploadWorkspaceRequest)]
    assert upload[-1].path == str(repo)
    req = [r for r in fake.state.requests if isinstance(r, tasks_pb2.CreateTaskRequest)][-1]
    assert (req.source.workspace_id, req.workspace_path, req.base_commit) == (
        "ws-1", str(repo), "abc123")


def test_create_with_workspace_dir_and_repo(run, fake, tmp_path):
    assert run("task", "create", "x", "--workspace", str(tmp_path)).exit_code == 0
    upload = [r for r in fake.state.requests if isinstance(r, tasks_pb2.UploadWorkspaceRequest)]
    assert upload[-1].path == str(tmp_path)
    assert run("task", "create", "x", "--repo", "https://example.com/r.git", "--ref",
               "v1").exit_code == 0
    req = [r for r in fake.state.requests if isinstance(r, tasks_pb2.CreateTaskRequest)][-1]
    assert (req.source.repo_url, req.source.repo_ref) == ("https://example.com/r.git", "v1")
    assert run("task", "create", "x", "--repo", "https://example.com/r.git", "--branch",
               "feature/x").exit_code == 0
    req = [r for r in fake.state.requests if isinstance(r, tasks_pb2.CreateTaskRequest)][-1]
    assert req.source.repo_ref == "feature/x"


def test_prompt_reaches_the_daemon_byte_for_byte(run, fake):
    prompt = "Say \"hi\" and $(rm -rf /) `x` 'y'\nline two\t\\n ünïcode"
    assert run("task", "create", prompt, "--no-workspace").exit_code == 0
    req = [r for r in fake.state.requests if isinstance(r, tasks_pb2.CreateTaskRequest)][-1]
    assert req.prompt == prompt
    assert run("task", "create", "-", "--no-workspace", input=prompt).exit_code == 0
    req = [r for r in fake.state.requests if isinstance(r, tasks_pb2.CreateTaskRequest)][-1]
    assert req.prompt == prompt


def test_estimate_only_creates_nothing(run, fake):
    result = run("task", "create", "x", "--estimate-only", "--gpu", "H100")
    assert result.exit_code == 0
    assert "Estimated cost: $0.50-$2.00" in result.stdout
    assert fake.state.tasks == {}


def _script(fake, final_status, error_code=""):
    t = common_pb2.Task(status=common_pb2.TASK_STATUS_RUNNING, last_tool="Bash",
                        usage=common_pb2.Usage(turns=1, input_tokens=1200, output_tokens=40,
                                               api_cost_micros=12_300))
    running = tasks_pb2.TaskProgress(task=t, elapsed_seconds=2.0, event=common_pb2.Event(
        type="agent_tool_use", level="info", message="Bash: ls"))
    done = common_pb2.Task()
    done.CopyFrom(t)
    done.status = final_status
    done.result.CopyFrom(common_pb2.TaskResult(text="All tests pass.", error_code=error_code,
                                               error_message="boom" if error_code else ""))
    fake.state.watch_script = [running, tasks_pb2.TaskProgress(task=done, elapsed_seconds=5.0)]


def test_sync_success(run, fake):
    _script(fake, common_pb2.TASK_STATUS_COMPLETED)
    result = run("task", "create", "x", "--no-workspace", "--sync")
    assert result.exit_code == 0, result.output
    assert "agent_tool_use: Bash: ls" in result.stdout
    assert "All tests pass." in result.stdout
    assert "parhelia task pull t-" in result.stdout
    assert "\r" not in result.stdout
    assert not ANSI.search(result.output)


def test_sync_failure_exits_1_with_the_code(run, fake):
    _script(fake, common_pb2.TASK_STATUS_FAILED, "E400")
    result = run("task", "create", "x", "--no-workspace", "--sync")
    assert result.exit_code == 1
    assert "Error E400 UNAUTHORIZED: boom" in result.stderr


def test_sync_json(run, fake):
    _script(fake, common_pb2.TASK_STATUS_COMPLETED)
    result = run("task", "create", "x", "--no-workspace", "--sync", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["result"]["text"] == "All tests pass."


def test_watch(run, fake):
    task_id = run("task", "create", "x", "--no-workspace").stdout.strip()
    _script(fake, common_pb2.TASK_STATUS_CANCELLED)
    result = run("task", "watch", task_id)
    assert result.exit_code == 1
    assert "cancelled" in result.stdout


def test_status_json(run, fake):
    run("task", "create", "x", "--no-workspace")
    result = run("status", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    for key in ("version", "pid", "started_at", "uptime_seconds", "socket_path",
                "database_path", "tasks_by_status", "backends", "instance_id", "health"):
        assert key in data
    assert data["tasks_by_status"] == {"pending": 1}
    assert data["backends"] == [{"name": "local", "available": True, "detail": None}]
    # the root --json works too
    assert json.loads(run("--json", "status").stdout)["pid"] == 1234


def test_status_text_and_attention(run, fake):
    result = run("status")
    assert result.exit_code == 0
    assert "Uptime" in result.stdout and "Backends" in result.stdout
    fake.state.needs_attention = True
    result = run("status")
    assert result.exit_code == 1
    assert "container c-1 is dead" in result.stdout


def test_doctor(run, fake):
    fake.state.doctor = [system_pb2.DoctorCheck(name="agent", status="ok", detail="claude 2.0"),
                         system_pb2.DoctorCheck(name="credentials", status="fail",
                                                detail="none found", fix="export ...")]
    result = run("doctor")
    assert result.exit_code == 1
    assert "FAIL" in result.stdout and "fix: export ..." in result.stdout
    data = json.loads(run("doctor", "--json").stdout)
    assert data["ok"] is False and len(data["checks"]) == 2
    fake.state.doctor = fake.state.doctor[:1]
    assert run("doctor").exit_code == 0


def test_doctor_without_daemon(run, home):
    result = run("doctor", "--json")
    assert result.exit_code == 5
    assert json.loads(result.stdout)["checks"][0]["name"] == "daemon"


def test_config_show(run, fake, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("config", "show")
    assert result.exit_code == 0
    assert "orchestrator.max_concurrent_workers" in result.stdout
    data = json.loads(run("config", "show", "--json").stdout)
    assert data["values"][0] == {"key": "budget.default_ceiling_usd", "value": "50",
                                 "source": "default", "in_use": None, "needs_restart": False}
    assert fake.state.requests[-1].project_dir == str(tmp_path)


def test_events_list_and_filters(run, fake):
    run("task", "create", "x", "--no-workspace")
    data = json.loads(run("events", "list", "--json", "--type", "task_created").stdout)
    assert data["events"][0]["type"] == "task_created"
    assert data["events"][0]["data"] == {"k": 1}
    run("e", "list", "--type", "task_created,task_failed", "--type", "task_completed",
        "--level", "WARNING", "--since", "2d", "--until", "2099-01-01T00:00:00Z", "--task", "t-1",
        "--limit", "5")
    req = fake.state.requests[-1]
    assert list(req.filter.types) == ["task_created", "task_failed", "task_completed"]
    assert req.filter.min_level == "warning"
    assert req.filter.task_id == "t-1"
    assert req.filter.since.seconds > 0 and req.filter.until.seconds > 0
    assert req.limit == 5
    text = run("events", "list").stdout
    assert "task_created" in text and "task=t-0001" in text


def test_since_after_until(run, fake):
    result = run("events", "list", "--since", "1h", "--until", "2d")
    assert result.exit_code == 2
    assert "E101" in result.stderr


def test_pull_branch_and_patch(run, fake, tmp_path, monkeypatch):
    task_id = run("task", "create", "x", "--no-workspace").stdout.strip()
    result = run("task", "pull", task_id)
    assert result.exit_code == 0
    assert f"git merge parhelia/{task_id}" in result.stdout
    assert fake.state.requests[-1].repo_path == ""
    monkeypatch.chdir(tmp_path)
    result = run("task", "pull", task_id, "--patch", "out.patch")
    assert fake.state.requests[-1].patch_path == str(tmp_path / "out.patch")
    assert f"git -C /repo apply {tmp_path / 'out.patch'}" in result.stdout


def test_version_mismatch_warns_once(run, fake):
    fake.state.version = "9.9.9"
    result = run("task", "list")
    assert result.exit_code == 0
    assert result.stderr.count("parheliad 9.9.9") == 1
    client_req = [r for r in fake.state.requests if isinstance(r, system_pb2.GetVersionRequest)]
    from parhelia import __version__

    assert client_req[-1].client_version == __version__


def test_version_flag(run, fake, home):
    result = run("--version")
    assert result.exit_code == 0
    from parhelia import __version__

    assert f"parhelia {__version__}" in result.stdout
    assert "parheliad 0.1.0" in result.stdout


def test_version_flag_without_daemon_does_not_autostart(run, home, monkeypatch):
    monkeypatch.delenv("PARHELIA_NO_AUTOSTART")
    from parhelia_cli import client

    monkeypatch.setattr(client, "spawn_daemon", lambda p, stderr: pytest.fail("autostarted"))
    result = run("--version")
    assert result.exit_code == 0
    assert "parheliad: not running" in result.stdout


def test_no_autostart_gives_e504_exit_5(run, home):
    result = run("task", "list")
    assert result.exit_code == 5
    assert "Error E504 DAEMON_UNAVAILABLE: Cannot connect to the Parhelia daemon at unix://" \
        in result.stderr
    assert "is it running?" in result.stderr
    assert "parhelia daemon start" in result.stderr
    result = run("task", "list", "--json")
    assert json.loads(result.stderr)["error"]["code"] == "E504"


def test_autostart_spawns_and_waits(run, home, monkeypatch):
    """Nothing answers: the CLI spawns the daemon (here: the fake) and retries."""
    monkeypatch.delenv("PARHELIA_NO_AUTOSTART")
    from parhelia import paths
    from parhelia_cli import client
    from tests.helpers.fake_daemon import FakeDaemon

    started: list[FakeDaemon] = []

    class Proc:
        pid = 4242

        def poll(self):
            return None

    def spawn(p, stderr=None):
        assert p.socket == paths.resolve().socket

        def later():
            time.sleep(0.3)
            started.append(FakeDaemon(p.socket).start())

        threading.Thread(target=later).start()
        return Proc()

    monkeypatch.setattr(client, "spawn_daemon", spawn)
    try:
        result = run("task", "list", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == {"tasks": [], "next_page_token": None}
        assert "Started parheliad (pid 4242)" in result.stderr
    finally:
        for d in started:
            d.stop()


def test_autostart_failure_is_e504(run, home, monkeypatch):
    monkeypatch.delenv("PARHELIA_NO_AUTOSTART")
    from parhelia_cli import client

    class Dead:
        pid = 1

        def poll(self):
            return 1

    def spawn(p, stderr):
        stderr.write(b"parheliad: E101 INVALID_ARGUMENT: config.toml: not valid TOML\n")
        return Dead()

    monkeypatch.setattr(client, "spawn_daemon", spawn)
    result = run("status")
    assert result.exit_code == 5
    assert "the daemon exited with code 1: parheliad: E101" in result.stderr


def test_spawn_argv(monkeypatch, home):
    from parhelia import paths
    from parhelia_cli import client

    seen = {}

    def popen(argv, **kwargs):
        seen.update(argv=argv, **kwargs)
        return None

    monkeypatch.setattr(subprocess, "Popen", popen)
    p = paths.resolve()
    client.spawn_daemon(p)
    assert seen["argv"][1:] == ["-m", "parheliad", "--socket", str(p.socket)]
    assert seen["start_new_session"] is True
    assert seen["stdin"] == seen["stdout"] == seen["stderr"] == subprocess.DEVNULL


def test_no_ansi_when_not_a_tty(run, fake):
    run("task", "create", "x", "--no-workspace")
    for args in (["task", "list"], ["status"], ["events", "list"], ["--help"], ["help", "task"]):
        result = run(*args)
        assert not ANSI.search(result.output), args


def test_no_color_env_disables_colour(monkeypatch):
    from parhelia_cli import render

    class Tty:
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stdout", Tty())
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert render.color_enabled()
    monkeypatch.setenv("NO_COLOR", "1")
    assert not render.color_enabled()


@pytest.mark.parametrize("cancelled", [False, True], ids=["answered", "cancelled"])
def test_daemon_status_and_stop(run, fake, cancelled):
    """A daemon that stops at once may cancel the Shutdown call it is answering: it still
    stopped, as asked (a run under load failed, the fake stopping before it replied)."""
    fake.state.shutdown_cancelled = cancelled
    result = run("daemon", "status", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["running"] is True
    stopper = threading.Thread(target=lambda: (fake.state.shutdown.wait(5), fake.stop()))
    stopper.start()
    result = run("daemon", "stop")
    stopper.join()
    assert result.exit_code == 0, result.output
    assert "stopped" in result.stdout
    result = run("daemon", "status")
    assert result.exit_code == 5
    assert "not running" in result.stdout


def test_daemon_logs(run, home):
    from parhelia import paths

    log = paths.resolve().log_file
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    result = run("daemon", "logs", "-n", "3")
    assert result.stdout == "line 97\nline 98\nline 99\n"
    assert run("daemon", "logs", "-n", "0").stdout == ""


def test_daemon_logs_missing(run, home):
    result = run("daemon", "logs")
    assert result.exit_code == 1
    assert "no daemon log" in result.stderr


def test_help_never_imports_grpc():
    code = ("import sys\n"
            "from parhelia_cli.main import cli\n"
            "for args in (['--help'], ['task', 'create', '--help'], ['help', 'E201'],"
            " ['events', 'list', '--help'], ['completion', 'bash'], ['mcp-server', '--help']):\n"
            "    cli.main(args, standalone_mode=False)\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('grpc', 'parheliad', 'modal_worker', 'rich', 'google', 'mcp', 'pydantic')]\n"
            "assert not bad, bad\n")
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr


def test_cli_never_imports_the_daemon_or_worker():
    root = REPO / "parhelia_cli"
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+(parheliad|modal_worker)\b", text, re.M), path
        assert not re.search(r"^(from|import)\s+grpc\b", text, re.M), path
