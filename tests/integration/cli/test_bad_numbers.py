"""Bad numbers and hostile strings get E101 (or the not-found code), never a traceback or
E900: through the real CLI, and straight at the daemon's API (which MCP reaches too)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from parhelia.errors import METADATA_KEY
from parhelia.v1 import (
    checkpoints_pb2,
    checkpoints_pb2_grpc,
    common_pb2,
    events_pb2,
    events_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
)
from tests.helpers.daemon import RunningDaemon

pytestmark = pytest.mark.timeout(120)

BAD_OPTIONS = [
    ("task", "create", "x", "--no-workspace", "--estimate-only", "--max-cost", "1e308"),
    ("task", "create", "x", "--no-workspace", "--estimate-only", "--max-cost", "-3"),
    ("task", "create", "x", "--no-workspace", "--estimate-only", "--max-cost", "nan"),
    ("task", "create", "x", "--no-workspace", "--estimate-only", "--max-cost", "inf"),
    ("task", "create", "x", "--no-workspace", "--estimate-only", "--max-turns",
     "99999999999999999999"),
    ("task", "create", "x", "--no-workspace", "--estimate-only", "--cpu", "nan"),
    ("task", "create", "x", "--no-workspace", "--estimate-only", "--cpu", "inf"),
    ("task", "create", "x", "--no-workspace", "--estimate-only", "--timeout", "9" * 400),
    ("task", "list", "--limit", "99999999999999999999"),
    ("task", "list", "--limit", "-1"),
    ("session", "list", "--limit", "99999999999999999999"),
    ("checkpoint", "list", "--limit", "99999999999999999999"),
    ("events", "list", "--limit", "99999999999999999999"),
    ("events", "list", "--since", "99999999999w"),
    ("events", "list", "--since", "9" * 400 + "s"),
    ("events", "list", "--until", "-5m"),
    ("events", "watch", "--backlog", "99999999999999999999"),
    ("budget", "ledger", "--limit", "99999999999999999999"),
    ("budget", "set", "1e308"),
    ("daemon", "logs", "-n", "99999999999999999999"),
]


@pytest.mark.parametrize("args", BAD_OPTIONS, ids=lambda a: " ".join(a)[:60])
def test_bad_numbers_are_e101(shared_daemon: RunningDaemon, args: tuple[str, ...]) -> None:
    out = shared_daemon.cli(*args, timeout=30)
    assert out.returncode == 2, (out.returncode, out.stderr[-500:])
    assert "E101" in out.stderr and "Traceback" not in out.stderr, out.stderr[-500:]


def _code(call: Callable[[], Any]) -> str:
    try:
        call()
    except grpc.RpcError as exc:
        return dict(exc.trailing_metadata() or ()).get(METADATA_KEY, "?")
    return "OK"


def test_the_api_refuses_what_the_cli_would(shared_daemon: RunningDaemon) -> None:
    channel = grpc.insecure_channel(f"unix://{shared_daemon.socket}")
    tasks = tasks_pb2_grpc.TaskServiceStub(channel)
    events = events_pb2_grpc.EventServiceStub(channel)
    cps = checkpoints_pb2_grpc.CheckpointServiceStub(channel)
    big = "a" * 100_000
    far = Timestamp(seconds=2**62)

    def create(**kw: Any) -> Any:
        return tasks.CreateTask(tasks_pb2.CreateTaskRequest(prompt="x", no_dispatch=True, **kw))

    cases: dict[str, tuple[Callable[[], Any], set[str]]] = {
        "since beyond year 9999": (lambda: events.ListEvents(events_pb2.ListEventsRequest(
            filter=common_pb2.EventFilter(since=far))), {"E101"}),
        "until before year 1": (lambda: events.ListEvents(events_pb2.ListEventsRequest(
            filter=common_pb2.EventFilter(until=Timestamp(seconds=-2**62)))), {"E101"}),
        "workspace id with ../": (lambda: create(source=common_pb2.TaskSource(
            workspace_id="../../etc")), {"E101"}),
        "100 KB workspace id": (lambda: create(source=common_pb2.TaskSource(
            workspace_id=big)), {"E101"}),
        "100 KB workspace path": (lambda: create(workspace_path="/" + big), {"E101"}),
        "base commit with ../": (lambda: create(base_commit="../x"), {"E101"}),
        "cpu NaN": (lambda: create(options=common_pb2.TaskOptions(cpu=float("nan"))),
                    {"E101"}),
        "100 KB task id": (lambda: tasks.GetTask(tasks_pb2.GetTaskRequest(task_id=big)),
                           {"E101"}),
        "task id with escape codes": (lambda: tasks.GetTask(tasks_pb2.GetTaskRequest(
            task_id="t-\x1b[2J")), {"E101"}),
        "checkpoint id with ../": (lambda: cps.GetCheckpoint(checkpoints_pb2.GetCheckpointRequest(
            checkpoint_id="cp-../../x")), {"E101", "E202"}),
        "replay 100 KB container": (lambda: list(events.ReplayEvents(
            events_pb2.ReplayEventsRequest(container_id=big))), {"E101", "E203"}),
    }
    for name, (call, expected) in cases.items():
        assert _code(call) in expected, name
    channel.close()
