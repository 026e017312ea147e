"""The error boundary and the logs: no exception text reaches a client, no secret reaches
a log line, tracebacks carry no frame locals, every request line has its request id."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import structlog

from parhelia import paths as parhelia_paths
from parhelia.errors import METADATA_KEY
from parhelia.v1 import common_pb2, tasks_pb2, tasks_pb2_grpc
from parheliad import logging as daemon_logging
from parheliad.api.server import ApiServer
from parheliad.config import Config, LiveConfig
from parheliad.context import DaemonContext
from parheliad.core.events import EventBus
from parheliad.core.tasks import TaskService
from parheliad.store import open_store
from parheliad.store.clock import now_us
from tests.helpers.daemon import daemon_env, start_daemon

SECRETS = {
    "sk-ant-api03-" + "Q" * 24 + "xyz": "Q" * 24 + "xyz",
    "ANTHROPIC_API_KEY=supersecretvalue123": "supersecretvalue123",
    "Authorization: Bearer abc.def.ghi-jkl": "abc.def.ghi-jkl",
}


@pytest.fixture
def captured_logs(tmp_path: Path) -> Iterator[tuple[io.StringIO, Path]]:
    """Configure the daemon's logging in-process (JSON to a buffer and a file)."""
    stream = io.StringIO()
    log_file = tmp_path / "state" / "parheliad.log"
    daemon_logging.configure("debug", log_file, stream=stream)
    try:
        yield stream, log_file
    finally:
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        root.setLevel(logging.WARNING)
        structlog.reset_defaults()


def test_redaction_by_key_and_by_value() -> None:
    event = {
        "event": "calling with sk-ant-api03-abcdef and Bearer tok.en",
        "api_key": "plain", "Authorization": "Basic xyz", "input_tokens": 12,
        "nested": {"password": "p", "list": ["GITHUB_TOKEN=ghp_123", {"cookie": "c"}]},
        "note": "MODAL_TOKEN_SECRET: as-abcdefghijklmnopqrstuv",
    }
    out = daemon_logging.redact(None, "info", event)
    text = json.dumps(out)
    for leaked in ("abcdef", "tok.en", "plain", "Basic xyz", "ghp_123", '"p"', '"c"',
                   "abcdefghijklmnopqrstuv"):
        assert leaked not in text, leaked
    assert out["input_tokens"] == 12  # counts are not secrets
    assert out["api_key"] == "***" and out["nested"]["list"][0] == "GITHUB_TOKEN=***"


def test_tracebacks_have_no_locals_and_are_redacted(captured_logs) -> None:
    stream, log_file = captured_logs

    def fail() -> None:
        local_value = "LOCALVALUE-should-not-appear"  # noqa: F841
        raise RuntimeError("token sk-ant-api03-SECRETSECRET leaked in a message")

    log = structlog.get_logger("test")
    with structlog.contextvars.bound_contextvars(request_id="rid-1"):
        try:
            fail()
        except RuntimeError:
            log.exception("boom", api_key="k-123")
    for text in (stream.getvalue(), log_file.read_text()):
        record = json.loads(text.strip().splitlines()[-1])
        assert record["request_id"] == "rid-1" and record["event"] == "boom"
        assert record["exception"][0]["exc_type"] == "RuntimeError"
        assert "LOCALVALUE" not in text and "SECRETSECRET" not in text and "k-123" not in text
        assert all("locals" not in frame or not frame["locals"]
                   for exc in record["exception"] for frame in exc["frames"])
    assert oct(log_file.stat().st_mode & 0o777) == "0o600"


async def test_internal_error_leaks_nothing(tmp_path: Path, captured_logs,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    stream, log_file = captured_logs
    home = Path("/tmp") / f"ph-ie-{tmp_path.name[-8:]}"
    p = parhelia_paths.resolve(env=daemon_env(home))
    bus = EventBus()
    store = await open_store(tmp_path / "db.sqlite", on_commit=bus.publish)
    config = Config()
    ctx = DaemonContext(paths=p, live=LiveConfig(config), store=store, bus=bus,
                        tasks=TaskService(store, config=lambda _: config),
                        instance_id="phd-test", started_at_us=now_us(), socket=p.socket,
                        request_shutdown=lambda: None)

    async def explode(self, ref: str):
        raise RuntimeError(f"database exploded at /secret/path for {ref} sk-ant-api03-LEAKED")

    monkeypatch.setattr(TaskService, "get", explode)
    p.socket.parent.mkdir(parents=True, mode=0o700)
    server = ApiServer(ctx, p.socket)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"unix://{p.socket}") as channel:
            stub = tasks_pb2_grpc.TaskServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.GetTask(tasks_pb2.GetTaskRequest(task_id="t-1"),
                                   metadata=(("x-request-id", "forced-1"),))
            err = info.value
            assert err.code() == grpc.StatusCode.INTERNAL
            assert err.details() == "E900 internal error (request id forced-1)"
            trailers = dict(err.trailing_metadata() or ())
            assert trailers[METADATA_KEY] == "E900" and trailers["x-request-id"] == "forced-1"
            # a ParheliaError keeps its message; the daemon still answers afterwards
            reply = await stub.CreateTask(tasks_pb2.CreateTaskRequest(
                prompt="x", options=common_pb2.TaskOptions(cpu=1), no_dispatch=True))
            assert reply.task.id
    finally:
        await server.stop()
        await store.close()
        import shutil
        shutil.rmtree(home, ignore_errors=True)
    logged = log_file.read_text()
    assert "forced-1" in logged and "rpc.internal_error" in logged
    assert "database exploded" in logged  # the details are in the log, for the operator...
    assert "LEAKED" not in logged  # ...with secrets masked


def test_secrets_in_requests_never_reach_the_log(parhelia_home: Path) -> None:
    d = start_daemon(parhelia_home, "--log-level", "debug")
    try:
        channel = grpc.insecure_channel(f"unix://{d.socket}")
        tasks = tasks_pb2_grpc.TaskServiceStub(channel)
        secret_text = " ".join(SECRETS)
        created = tasks.CreateTask(tasks_pb2.CreateTaskRequest(
            prompt=f"use {secret_text} to deploy", no_dispatch=True), timeout=10)
        assert secret_text in created.task.prompt  # user data is kept, not logged
        for bad in (
            tasks_pb2.CreateTaskRequest(prompt=secret_text, options=common_pb2.TaskOptions(
                model=secret_text), no_dispatch=True),
            tasks_pb2.CreateTaskRequest(prompt=secret_text, workspace_path=secret_text,
                                        no_dispatch=True),
        ):
            with pytest.raises(grpc.RpcError) as info:
                tasks.CreateTask(bad, timeout=10)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        for ref in SECRETS:
            with pytest.raises(grpc.RpcError):
                tasks.GetTask(tasks_pb2.GetTaskRequest(task_id=ref), timeout=10)
        channel.close()
    finally:
        assert d.stop() == 0
    logged = d.log_file.read_text() + d.output()
    assert "rpc.start" in logged and "request_id" in logged  # debug request lines exist
    assert "prompt_chars" in logged
    for fragment in SECRETS.values():
        assert fragment not in logged, fragment


def test_scheduler_ticks_do_not_flood_the_log(parhelia_home: Path) -> None:
    """APScheduler logs two INFO lines per job run; with the dispatcher every 0.1 s they
    were nearly all of the daemon log."""
    import time

    (parhelia_home / "config.toml").write_text(
        "[orchestrator]\ndispatch_interval_seconds = 0.1\n")
    d = start_daemon(parhelia_home)
    try:
        time.sleep(2)
    finally:
        d.stop()
    text = d.log_file.read_text()
    assert "daemon.ready" in text
    assert "Running job" not in text and "executed successfully" not in text


def test_the_daemons_logging_loads_no_rich_and_still_renders_tracebacks(tmp_path: Path) -> None:
    """structlog imports rich (installed with Modal's SDK) for console pretty-printing the
    daemon never uses, ~60 ms of CPU at each start: ``parheliad.logging`` hides it while
    structlog is imported. A traceback is still logged, as a console line and as JSON."""
    script = (
        "import io, sys\nfrom pathlib import Path\n"
        "from parheliad import logging as daemon_logging\n"
        "import structlog\n"
        "stream = io.StringIO()\n"
        f"daemon_logging.configure('info', Path({str(tmp_path / 'd.log')!r}), stream=stream)\n"
        "try:\n"
        "    raise ValueError('boom')\n"
        "except ValueError:\n"
        "    structlog.get_logger('t').exception('it.failed')\n"
        "print('rich' in sys.modules)\n"
        "print(stream.getvalue())\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.splitlines()[0] == "False", out
    assert "ValueError" in out and "boom" in out and "it.failed" in out
    logged = json.loads((tmp_path / "d.log").read_text().splitlines()[-1])
    assert logged["event"] == "it.failed" and "boom" in json.dumps(logged["exception"])
