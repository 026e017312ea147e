"""What a CLI call imports, read from ``python -X importtime`` of the real console script
(not a timing test: which modules get loaded). ``parhelia --help`` loads no Click and
nothing of the daemon's transport; a command that makes one unary call (``status
--json``, ``task list --json``) loads neither grpc nor asyncio, nor protobuf's
pure-Python backend (ADR 0040); both print exactly what Click would."""

from __future__ import annotations

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
    code = "import sys\nfrom parhelia_cli.main import main\nsys.argv[0] = 'parhelia'\nmain()\n"
    return subprocess.run([sys.executable, "-c", code, *args],
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
