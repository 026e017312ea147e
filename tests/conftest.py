"""The fixtures of every kind of test, in one place.

The layout says what a test needs:

- ``tests/unit``: nothing real beyond this process, files and SQLite: no daemon, no
  subprocess of the real CLI, no worker processes (``pytest tests/unit`` runs in
  seconds; ``tests/unit/conftest.py`` refuses the fixtures that start real parts);
- ``tests/integration``: real parts really exercised: a real ``parheliad`` on a
  temporary ``PARHELIA_HOME``, the real CLI as a subprocess, workers and the scripted
  fake agent as processes, the Modal backend against ``tests/modal_standin`` (the real
  SDK against a local stand-in of Modal's service) or ``tests/fake_modal`` (a fake SDK);
- ``tests/e2e``: the real Claude Code CLI (against ``tests/fake_anthropic``), and live
  Modal behind ``-m modal``.

Shared helpers live in ``tests/helpers`` (the daemon machinery, the CLI harness, the one
``wait_for``) and the fakes in ``tests/fake_agent``, ``tests/fake_anthropic`` and
``tests/fake_modal``. Daemons are function-scoped (tests kill and restart them), but for
``shared_daemon``: one per module and worker, for tests that only ask a daemon to refuse
or to create pending tasks none of them looks at again.

The suite runs in parallel worker processes (pytest-xdist, ``-n auto``; how many:
``pytest_xdist_auto_num_workers`` below): every test has its own home, daemon and ports
(``shared_daemon``'s tests share theirs),
and each worker process its own ``HOME`` and temporary directory (docs/design.md, Tests).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, settings

from tests.fake_anthropic.pytest_plugin import (  # noqa: F401 - fixtures
    fake_anthropic,
    fake_anthropic_factory,
)
from tests.fake_modal.fixture import fake_modal  # noqa: F401 - fixture
from tests.helpers import environment
from tests.helpers.daemon import CLI_TIMEOUT_S, RunningDaemon, reap, start_daemon
from tests.helpers.fake_github import FakeGitHub
from tests.helpers.git_server import GitServer
from tests.helpers.harness import harness, harness_factory  # noqa: F401 - fixtures
from tests.modal_standin.fixture import (  # noqa: F401 - fixtures
    modal_standin,
    modal_standin_store,
)

# Before any test module is collected: the caller's credentials, NO_COLOR, COLUMNS,
# PARHELIA_*, HOME... are cleared or fixed (tests/helpers/environment.py).
TEST_HOME = environment.apply()

settings.register_profile(
    "parhelia",
    max_examples=int(os.environ.get("PARHELIA_HYPOTHESIS_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("parhelia")


@contextlib.contextmanager
def _fresh_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="ph-", dir="/tmp"))
    try:
        yield home
    finally:
        reap(home)
        shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def _serving(home: Path) -> Iterator[RunningDaemon]:
    running = start_daemon(home)
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            running.stop()


@pytest.fixture
def parhelia_home() -> Iterator[Path]:
    """A fresh, short PARHELIA_HOME under /tmp (socket paths must stay under 104 bytes);
    afterwards every process still running for it is killed and the directory removed."""
    with _fresh_home() as home:
        yield home


@pytest.fixture
def home(parhelia_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``parhelia_home``, also set in this process's environment for the in-process CLI
    (``run``); autostart off unless a test turns it on."""
    monkeypatch.setenv("PARHELIA_HOME", str(parhelia_home))
    monkeypatch.setenv("PARHELIA_NO_AUTOSTART", "1")
    return parhelia_home


@pytest.fixture
def daemon(parhelia_home: Path) -> Iterator[RunningDaemon]:
    """A real ``parheliad`` serving on ``parhelia_home``; stopped (or killed) afterwards,
    and every worker it started reaped with the home."""
    with _serving(parhelia_home) as running:
        yield running


@pytest.fixture(scope="module")
def shared_daemon() -> Iterator[RunningDaemon]:
    """One real daemon for those of a module's tests that only ask it to refuse, or to
    create what none of them looks at again (a daemon costs ~0.4 s of CPU to start and
    stop, and a refusal a few ms). Under xdist each worker that runs such a test starts
    its own; stopped after the module's tests, with every process of its home."""
    with _fresh_home() as home, _serving(home) as running:
        yield running


@pytest.fixture
async def shared_client(shared_daemon: RunningDaemon) -> AsyncIterator[grpc.aio.Channel]:
    """An async gRPC channel to ``shared_daemon`` (closed afterwards)."""
    async with grpc.aio.insecure_channel(f"unix://{shared_daemon.socket}") as channel:
        yield channel


@pytest.fixture
def cli(daemon: RunningDaemon) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real CLI against ``daemon``: ``cli("task", "list", "--json")``."""
    def run(*args: str, timeout: float = CLI_TIMEOUT_S,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        return daemon.cli(*args, timeout=timeout, input=input)
    return run


@pytest.fixture
async def client(daemon: RunningDaemon) -> AsyncIterator[grpc.aio.Channel]:
    """An async gRPC channel to ``daemon`` (closed afterwards)."""
    async with grpc.aio.insecure_channel(f"unix://{daemon.socket}") as channel:
        yield channel


@pytest.fixture
def run(home: Path) -> Callable[..., Result]:
    """Invoke the CLI in-process (Click's runner): ``run("task", "list", "--json")``."""
    from parhelia_cli.main import cli as parhelia

    def _run(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(parhelia, list(args), input=input, catch_exceptions=False)

    return _run


@pytest.fixture
def fake(home: Path) -> Iterator[object]:
    """An in-process fake daemon (``tests/helpers/fake_daemon.py``) on ``home``'s socket."""
    from parhelia import paths
    from tests.helpers.fake_daemon import FakeDaemon

    daemon = FakeDaemon(paths.resolve().socket).start()
    yield daemon
    daemon.stop()


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[GitServer]:
    """A loopback git server (``git http-backend`` on 127.0.0.1) whose repositories answer
    only with its token (``git_server.token``, shaped like a GitHub token)."""
    import secrets

    server = GitServer(tmp_path / "git-server", "ghp_" + secrets.token_hex(18)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_github(git_server: GitServer) -> Iterator[FakeGitHub]:
    """A loopback fake of GitHub's pull request endpoints over ``git_server``'s
    repositories, taking the same token."""
    fake = FakeGitHub(git_server, git_server.token).start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(autouse=True)
def _fresh_warnings() -> None:
    """The CLI warns once per process (version mismatch...): each test starts afresh."""
    from parhelia_cli import render

    render._warned.clear()


WORKERS_PER_CORE = 3
"""Worker processes per core for ``-n auto`` (pyproject's addopts): the integration and
end-to-end tests mostly wait (on daemons, workers, the agent's scripted sleeps). On the
2-core machine the whole suite took 9 min 42 s on 4 workers and 8 min 02 s on 6, with the
cores 80-85% busy (ADR 0044)."""


UNIT = Path(__file__).parent / "unit"


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """How many workers ``-n auto`` starts: ``PYTEST_XDIST_AUTO_NUM_WORKERS`` when set
    (xdist's own override); one per core this process may use for a run of unit tests
    only (they compute rather than wait: on the 2-core machine 51 s on 2 workers, 66 s on
    6); else :data:`WORKERS_PER_CORE` per core."""
    if configured := os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(configured)
    cores = len(os.sched_getaffinity(0))
    paths = [Path(config.invocation_params.dir, arg.split("::")[0]).resolve()
             for arg in config.args]
    if paths and all(path.is_relative_to(UNIT) for path in paths):
        return cores
    return WORKERS_PER_CORE * cores


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``long`` first (in their order), the others after in theirs: the
    workers start them together instead of one ending the run alone."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.requires("tmux", "root", reason=...)``: each requirement checked
    before the test runs (``tests/helpers/real_tools.py``: skip, or fail in CI)."""
    from tests.helpers.real_tools import require

    for marker in item.iter_markers("requires"):
        for name in marker.args:
            require(name, marker.kwargs.get("reason", ""))


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(TEST_HOME, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say loudly when tests needing a real tool (Claude Code CLI, MCP Inspector, tmux,
    systemd-analyze, root) were skipped: on a developer's machine that is allowed, in CI
    (.ci/run) it fails instead."""
    from tests.helpers.real_tools import REQUIRE_ENV, SKIP_MARK

    skipped = [r for r in terminalreporter.stats.get("skipped", [])
               if SKIP_MARK in str(getattr(r, "longrepr", ""))]
    if skipped:
        terminalreporter.write_sep(
            "!", f"{len(skipped)} tests needing a real tool did NOT run (see the skip reasons); "
                 f"CI sets {REQUIRE_ENV}=1 and fails on them", red=True, bold=True)

