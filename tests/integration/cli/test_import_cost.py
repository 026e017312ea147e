"""What a CLI call imports, read from ``python -X importtime`` of the real console script
(not a timing test: which modules get loaded). ``parhelia --help`` loads no Click and
nothing of the daemon's transport; a command that makes one unary call (``status
--json``, ``task list --json``) loads neither grpc nor asyncio, nor protobuf's
pure-Python backend (ADR 0040); both print exactly what Click would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.daemon import RunningDaemon

SCRIPT = Path(sys.executable).parent / "parhelia"

HELP_NEVER = ("click", "typing", "re", "json", "socket", "subprocess", "grpc", "google",
              "asyncio", "parhelia_cli.main", "parhelia_cli.client")
UNARY_NEVER = ("grpc", "grpc_health", "asyncio", "typing_extensions", "ssl", "concurrent",
               "subprocess", "tempfile", "shutil", "logging", "google.protobuf.text_format",
               "google.protobuf.internal.python_message",
               "parhelia.v1.tasks_pb2_grpc", "parhelia.v1.system_pb2_grpc")


CLICK = [sys.executable, "-c",
         "import sys\nfrom parhelia_cli.main import main\nsys.argv[0] = 'parhelia'\nmain()\n"]
"""The CLI run by Click (``parhelia_cli.main``) whatever its arguments: never by the
root help's text or the quick reads."""


def imported(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str],
                                                             set[str]]:
    """Run the console script under ``-X importtime``; (its process, the modules it
    imported)."""
    assert SCRIPT.exists(), f"{SCRIPT} missing: run `uv sync`"
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    proc = subprocess.run([sys.executable, "-X", "importtime", str(SCRIPT), *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    names = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
             if line.startswith("import time:") and not line.endswith("imported package")}
    return proc, names


def offenders(names: set[str], never: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == bad or n.startswith(bad + ".") for bad in never))


def click_says(*args: str, columns: int = 80) -> str:
    return subprocess.run([*CLICK, *args],
                          env={**os.environ, "COLUMNS": str(columns)}, capture_output=True,
                          text=True, timeout=60, check=True).stdout


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_root_help_is_clicks_text_without_click(flag: str) -> None:
    proc, names = imported([flag], dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert offenders(names, HELP_NEVER) == []
    assert "parhelia_cli.roothelp" in names
    assert proc.stdout == click_says(flag)


def test_the_saved_root_help_is_what_click_renders() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))
    try:
        import gen_root_help
    finally:
        sys.path.pop(0)
    from parhelia_cli import roothelp

    assert gen_root_help.render() == roothelp.TEXT, (
        "parhelia_cli/roothelp.py is stale: run `uv run python scripts/gen_root_help.py`")


def test_a_narrow_terminal_gets_clicks_own_wrapping() -> None:
    proc, names = imported(["--help"], {**os.environ, "COLUMNS": "60"})
    assert proc.returncode == 0 and "click" in names
    assert proc.stdout == click_says("--help", columns=60)
    assert max(len(line) for line in proc.stdout.splitlines()) <= 60


@pytest.mark.parametrize("args", [["status", "--json"], ["task", "list", "--json"]])
def test_one_unary_call_loads_no_grpc(daemon: RunningDaemon, args: list[str],
                                      cli: Callable[..., subprocess.CompletedProcess[str]]
                                      ) -> None:
    proc, names = imported(args, daemon.env)
    assert proc.returncode == 0, proc.stderr
    assert offenders(names, UNARY_NEVER) == []
    assert "parhelia_cli.unary" in names
    assert proc.stdout == cli(*args).stdout or args[0] == "status"  # status has uptimes


def test_a_stream_still_uses_grpc(daemon: RunningDaemon) -> None:
    proc, names = imported(["events", "list", "--json"], daemon.env)
    assert proc.returncode == 0, proc.stderr
    assert "grpc" not in names  # a list is unary too
    proc, names = imported(["task", "logs", "t-nope"], daemon.env)
    assert "E201" in proc.stderr and "grpc" in names


# --- the quick reads (parhelia_cli.quick): no Click, and exactly Click's answer ------------

QUICK_NEVER = (*UNARY_NEVER, "click", "rich", "parhelia_cli.main", "parhelia_cli.render", "pathlib",
               "dataclasses", "inspect")


TYPES_NEVER = tuple(n for n in QUICK_NEVER if n not in ("dataclasses", "inspect"))


def click_runs(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The command run by Click (``parhelia_cli.main``), never by the quick reads."""
    return subprocess.run([*CLICK, *args], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def same_answer(args: list[str], env: dict[str, str]) -> set[str]:
    """Run ``args`` through the console script and through Click: the same exit code,
    stdout and stderr (``status --json``'s uptime aside); the modules the script
    imported."""
    proc, names = imported(args, env)
    clicks = click_runs(args, env)
    assert proc.returncode == clicks.returncode, (proc.stderr, clicks.stderr)
    if "status" in args and "--help" not in args:
        mine, theirs = json.loads(proc.stdout), json.loads(clicks.stdout)
        assert mine.pop("uptime_seconds") <= theirs.pop("uptime_seconds")
        assert mine == theirs
    else:
        assert proc.stdout == clicks.stdout
    timing = [ln for ln in proc.stderr.splitlines() if not ln.startswith("import time:")]
    assert timing == clicks.stderr.splitlines()
    return names


def test_polled_reads_answer_as_click_does_without_loading_it(daemon: RunningDaemon,
                                                               tmp_path: Path) -> None:
    created = [json.loads(daemon.cli("task", "create", f"Held {i}.", "--no-dispatch",
                                     "--json", cwd=tmp_path).stdout)["id"] for i in range(3)]
    first_page = json.loads(click_runs(["task", "list", "--json", "--limit", "2"],
                                       daemon.env).stdout)
    assert len(first_page["tasks"]) == 2 and first_page["next_page_token"]
    for args in (["status", "--json"], ["--json", "status"],
                 ["task", "list", "--json"], ["t", "list", "--json", "--active"],
                 ["task", "list", "--json", "--status", "pending", "--status=running"],
                 ["task", "list", "--json", "--limit", "2"],
                 ["task", "list", "--json", "--page-token", first_page["next_page_token"]],
                 ["task", "show", created[1], "--json"],
                 ["task", "show", "--json", created[0][:6]],
                 ["events", "list", "--json", "--task", created[0]],
                 ["e", "list", "--task", created[2], "--type", "task_created,task_failed",
                  "--limit", "1", "--json"]):
        names = same_answer(args, daemon.env)
        # --type checks its words against parhelia.events, whose kinds are dataclasses
        never = TYPES_NEVER if "--type" in args else QUICK_NEVER
        assert offenders(names, never) == [], args
        assert "parhelia_cli.quick" in names
    # three tasks held by --no-dispatch: status says they need the user (exit 1)
    assert imported(["status", "--json"], daemon.env)[0].returncode == 1


def test_a_refusal_is_clicks_error_and_anything_more_goes_through_click(
        daemon: RunningDaemon, tmp_path: Path) -> None:
    for args in (["task", "show", "t-nope", "--json"],  # the daemon's E201
                 ["task", "show", "--json", ""],
                 ["events", "list", "--json", "--task", "t-nope"]):
        names = same_answer(args, daemon.env)
        assert "click" not in names and "parhelia_cli.quick" in names, args
    for args in (["task", "list", "--json", "--limit", "0"],  # E101
                 ["task", "list", "--json", "--active", "--status", "running"],
                 ["task", "list", "--json", "--limit", "+3"],
                 ["task", "list", "--json", "--limit", "9" * 5000],
                 ["events", "list", "--json", "--type", "task_exploded"],
                 ["events", "list", "--json", "--since", "5m", "--task", "t-nope"],
                 ["status", "--json", "--help"]):
        names = same_answer(args, daemon.env)
        assert "click" in names, args
    latin = {**daemon.env, "PYTHONIOENCODING": "latin-1"}
    assert "click" in same_answer(["task", "list", "--json"], latin)
    gone = {**daemon.env, "PARHELIA_SOCKET": str(tmp_path / "gone.sock"),
            "PARHELIA_NO_AUTOSTART": "1"}
    proc, names = imported(["status", "--json"], gone)
    assert proc.returncode != 0 and '"E504"' in proc.stderr and "click" in names


def test_a_reader_that_went_away_ends_it_as_click_would(daemon: RunningDaemon) -> None:
    """stdout is a pipe nobody reads any more (``| head`` after it exited): no traceback,
    and the exit code Click gives (1)."""
    outcomes = []
    for argv in ([str(SCRIPT), "task", "list", "--json"],
                 [*CLICK, "task", "list", "--json"]):
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            proc = subprocess.run(argv, env=daemon.env, stdout=write_end,
                                  stderr=subprocess.PIPE, text=True, timeout=60, check=False)
        finally:
            os.close(write_end)
        outcomes.append((proc.returncode, proc.stderr))
    assert outcomes[0] == outcomes[1] == (1, ""), outcomes


def test_ctrl_c_while_the_daemon_thinks_is_clicks_interrupted(tmp_path: Path) -> None:
    """A socket that accepts and never answers: SIGINT once the call is on its way (the
    owner check's connection, then the call's preface read here), through the quick
    reads and through Click."""
    import signal
    import socket

    home = tmp_path / "h"
    (home / "run").mkdir(parents=True)
    home.chmod(0o700)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(home / "run" / "parheliad.sock"))
    listener.listen(8)
    listener.settimeout(60)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PARHELIA_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PARHELIA_HOME=str(home), PARHELIA_NO_AUTOSTART="1")
    outcomes = []
    try:
        for argv in ([str(SCRIPT), "status", "--json"],
                     [*CLICK, "status", "--json"]):
            proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            owner_check, _ = listener.accept()
            call, _ = listener.accept()
            preface = call.recv(24)
            assert preface.startswith(b"PRI * HTTP/2.0"), preface
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
            owner_check.close()
            call.close()
            outcomes.append((proc.returncode, out, err))
    finally:
        listener.close()
    assert outcomes[0] == outcomes[1] == (130, "", "\nInterrupted.\n"), outcomes
