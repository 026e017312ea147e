"""A real daemon whose agent is the scripted fake Claude, plus helpers to drive tasks
through the real CLI and to clean up every worker a test leaves behind. The fixtures
``harness_factory`` and ``harness`` are offered to every test by ``tests/conftest.py``."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import RunningDaemon, reap, start_daemon
from tests.helpers.paths import FAKE_AGENT
from tests.helpers.waiting import wait_for


def fake_prompt(*steps: dict[str, Any], text: str = "Do the thing.") -> str:
    return f"{text}\nFAKE_SCRIPT: {json.dumps(list(steps))}"


def write_config(home: Path, extra: str = "", orchestrator: str = "",
                 heartbeat: float = 0.5) -> None:
    """The daemon's config: the fake agent, fast heartbeats and dispatch; ``orchestrator``
    adds keys to [orchestrator], ``extra`` appends whole sections."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f"[agent]\ncommand = ['{FAKE_AGENT}']\n"
        f"[heartbeat]\ninterval_seconds = {heartbeat}\n"
        "[orchestrator]\ndispatch_interval_seconds = 0.5\ncancel_grace_seconds = 3\n"
        + orchestrator + "[recovery]\nbackoff_seconds = 0.2\n" + extra)



def readable_by_agents(*paths: Path) -> str:
    """Config that lets a contained agent read ``paths`` (``[sandbox] read_only``, ADR
    0030): a gate file a test opens from outside must be visible inside the container."""
    return "[sandbox]\nread_only = [" + ", ".join(f"'{p}'" for p in paths) + "]\n"


def kill_workers(home: Path) -> None:
    reap(home)


class Harness:
    """Drive a daemon through the real CLI (a subprocess per command)."""

    def __init__(self, daemon: RunningDaemon) -> None:
        self.daemon = daemon

    @property
    def home(self) -> Path:
        return self.daemon.home

    def run(self, *args: str, timeout: float = 90, check: bool = False,
            env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        proc = self.daemon.cli(*args, timeout=timeout, env=env, cwd=cwd)
        if check and proc.returncode != 0:
            raise AssertionError(f"parhelia {' '.join(args)} -> {proc.returncode}\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json", check=True).stdout)

    def create(self, prompt: str, *args: str) -> str:
        out = self.json("task", "create", prompt, "--no-workspace", *args)
        return str(out["task_id"] if "task_id" in out else out["id"])

    def task(self, task_id: str) -> dict[str, Any]:
        data = self.json("task", "show", task_id)
        return data.get("task", data) if isinstance(data, dict) else data

    def status(self, task_id: str) -> str:
        """The task's status, read over the daemon's API from this process (a poll; what a
        test asserts on comes from the CLI)."""
        from parhelia_cli.client import Client
        from parhelia_cli.convert import task_dict

        client = Client.connect(str(self.daemon.socket), autostart=False)
        try:
            return str(task_dict(client.api.tasks.get(task_id))["status"])
        finally:
            client.close()

    def wait(self, task_id: str, statuses: tuple[str, ...] = ("completed", "failed",
                                                               "cancelled"),
             timeout: float = 60) -> dict[str, Any]:
        """Poll until the task is in one of ``statuses``; its ``task show --json`` then.

        The polls read the status over the daemon's API from this process; only a status
        that has arrived is confirmed through the CLI (a CLI process at every poll, 0.2 s
        apart in 148 waits, was most of the suite's CPU)."""
        seen: dict[str, Any] = {}

        def settled() -> dict[str, Any] | None:
            seen["status"] = self.status(task_id)
            if seen["status"] not in statuses:
                return None
            seen.update(self.task(task_id))
            return dict(seen) if seen["status"] in statuses else None

        try:
            return wait_for(settled, timeout, what=f"task {task_id} to be one of {statuses}",
                            interval=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; it is {seen.get('status')!r}") from None

    def events(self, *args: str) -> list[dict[str, Any]]:
        data = self.json("events", "list", "--limit", "10000", *args)
        return data["events"] if isinstance(data, dict) else data

    def workspace(self, task_id: str) -> Path:
        return self.home / "data" / "workspaces" / self.task(task_id)["session_id"]


@pytest.fixture
def harness_factory(parhelia_home: Path) -> Iterator[Callable[..., Harness]]:
    """``make(extra_config=..., orchestrator=..., heartbeat=..., **env)``: write the fake
    agent's config into ``parhelia_home``, start a daemon on it, and return its harness;
    afterwards every daemon is stopped and every worker reaped."""
    started: list[RunningDaemon] = []

    def make(extra_config: str = "", orchestrator: str = "", heartbeat: float = 0.5,
             **env: str) -> Harness:
        write_config(parhelia_home, extra_config, orchestrator, heartbeat)
        env.setdefault("ANTHROPIC_API_KEY", "test-key")
        d = start_daemon(parhelia_home, **env)
        started.append(d)
        return Harness(d)

    yield make
    for d in started:
        with contextlib.suppress(Exception):
            d.stop()
    kill_workers(parhelia_home)


@pytest.fixture
def harness(harness_factory: Callable[..., Harness]) -> Harness:
    return harness_factory()

