"""The parhelia.v1 API of a real daemon: errors, tasks, events, watch, health, reflection."""

from __future__ import annotations

import asyncio
import signal

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from parhelia.errors import METADATA_KEY
from parhelia.v1 import (
    common_pb2,
    events_pb2,
    events_pb2_grpc,
    system_pb2,
    system_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
)
from tests.helpers.daemon import RunningDaemon

Ch = grpc.aio.Channel


def trailing(err: grpc.aio.AioRpcError) -> dict[str, str]:
    return {k: v for k, v in (err.trailing_metadata() or ())}


async def expect_error(call, code: grpc.StatusCode, ecode: str | None) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    err = info.value
    assert err.code() == code, (err.code(), err.details())
    assert trailing(err).get(METADATA_KEY) == ecode
    return err


async def create(client: Ch, prompt: str = "fix the bug", **options) -> common_pb2.Task:
    reply = await tasks_pb2_grpc.TaskServiceStub(client).CreateTask(tasks_pb2.CreateTaskRequest(
        prompt=prompt, options=common_pb2.TaskOptions(**options), no_dispatch=True))
    return reply.task


async def test_version_and_capabilities(shared_client: Ch) -> None:
    reply = await system_pb2_grpc.SystemServiceStub(shared_client).GetVersion(
        system_pb2.GetVersionRequest(client_version="0.1.0"))
    assert reply.api == "parhelia.v1" and reply.version and reply.instance_id
    caps = set(reply.capabilities)
    assert {"system.get_version", "system.get_status", "system.shutdown", "tasks.create",
            "tasks.list", "tasks.get", "tasks.cancel", "tasks.delete", "events.list",
            "events.watch"} <= caps
    assert len(caps) == len(reply.capabilities)


async def test_status(client: Ch, daemon: RunningDaemon) -> None:
    await create(client)
    reply = await system_pb2_grpc.SystemServiceStub(client).GetStatus(
        system_pb2.GetStatusRequest())
    assert reply.pid == daemon.proc.pid
    assert reply.socket_path == str(daemon.socket)
    assert reply.database_path == str(daemon.paths.database)
    assert reply.home == str(daemon.home)
    assert reply.tasks_by_status["pending"] == 1 and reply.tasks_by_status["running"] == 0
    assert set(reply.tasks_by_status) >= {"pending", "running", "completed", "cancelled"}
    assert {b.name for b in reply.backends} == {"local", "modal"}
    assert reply.uptime_seconds >= 0 and reply.started_at.seconds > 0


async def test_unknown_ids_are_not_found_with_e201(shared_client: Ch) -> None:
    tasks = tasks_pb2_grpc.TaskServiceStub(shared_client)
    for ref in ("t-000000000000", "nope", "t-"):
        err = await expect_error(tasks.GetTask(tasks_pb2.GetTaskRequest(task_id=ref)),
                                 grpc.StatusCode.NOT_FOUND, "E201")
        assert "E201" not in err.details() and ref in err.details()
    await expect_error(tasks.CancelTask(tasks_pb2.CancelTaskRequest(task_id="t-abc")),
                       grpc.StatusCode.NOT_FOUND, "E201")
    await expect_error(tasks.DeleteTask(tasks_pb2.DeleteTaskRequest(task_id="t-abc")),
                       grpc.StatusCode.NOT_FOUND, "E201")
    await expect_error(tasks.GetTask(tasks_pb2.GetTaskRequest(task_id="")),
                       grpc.StatusCode.INVALID_ARGUMENT, "E102")


@pytest.mark.parametrize("options,field", [
    ({"gpu": "X100"}, "gpu"), ({"gpu": "H100:9"}, "gpu"), ({"gpu": "T4:0"}, "gpu"),
    ({"cpu": 65}, "cpu"), ({"cpu": -1}, "cpu"),
    ({"memory_mb": 64}, "memory"), ({"memory_mb": 2_000_000}, "memory"),
    ({"timeout_seconds": -5}, "timeout"), ({"timeout_seconds": 86_401}, "timeout"),
    ({"max_turns": 1001}, "max_turns"), ({"max_turns": -1}, "max_turns"),
    ({"max_cost_micros": -1}, "max_cost"), ({"permission_mode": "yolo"}, "permission_mode"),
    ({"backend": "k8s"}, "backend"), ({"model": "bad model name!"}, "model"),
])
async def test_invalid_options_are_e101(shared_client: Ch, options: dict, field: str) -> None:
    err = await expect_error(create(shared_client, **options),
                             grpc.StatusCode.INVALID_ARGUMENT, "E101")
    assert err.details().startswith(field)


async def test_empty_prompt_is_e102(shared_client: Ch) -> None:
    await expect_error(create(shared_client, "   "), grpc.StatusCode.INVALID_ARGUMENT, "E102")


async def test_a_prompt_with_nul_is_e101_and_creates_nothing(shared_client: Ch) -> None:
    err = await expect_error(create(shared_client, "fix\0 the bug"),
                             grpc.StatusCode.INVALID_ARGUMENT, "E101")
    assert err.details().startswith("prompt: contains a NUL")
    listed = await tasks_pb2_grpc.TaskServiceStub(shared_client).ListTasks(
        tasks_pb2.ListTasksRequest())
    assert not any("\0" in t.prompt for t in listed.tasks)


async def test_create_applies_defaults_and_normalises(shared_client: Ch) -> None:
    task = await create(shared_client, gpu="a100:2", cpu=2.5, max_cost_micros=1_500_000)
    assert task.id.startswith("t-") and task.status == common_pb2.TASK_STATUS_PENDING
    assert task.options.gpu == "A100-40GB:2" and task.options.cpu == 2.5
    # Only Modal has GPUs: --gpu chose it (the default backend is local).
    assert task.options.backend == "modal" and task.options.permission_mode == "acceptEdits"
    assert task.options.memory_mb > 0 and task.options.timeout_seconds > 0
    assert task.options.max_turns > 0 and task.options.max_cost_micros == 1_500_000
    assert task.created_at.seconds > 0 and not task.HasField("started_at")
    assert (await create(shared_client, gpu="h100")).options.gpu == "H100"


async def test_a_gpu_on_the_local_backend_is_refused(shared_client: Ch) -> None:
    """It used to be accepted and run without any GPU."""
    err = await expect_error(create(shared_client, gpu="A10G", backend="local"),
                             grpc.StatusCode.INVALID_ARGUMENT, "E101")
    assert "local backend has no GPUs" in err.details()
    assert (await create(shared_client)).options.backend == "local"
    assert (await create(shared_client, gpu="T4", backend="modal")).options.backend == "modal"


async def test_a_modal_task_timeout_leaves_the_worker_time_to_checkpoint(shared_client: Ch) -> None:
    """Modal ends a sandbox at 24 h; the sandbox gets the task's timeout plus a margin for
    the worker's final checkpoint, so a Modal task may ask for at most 24 h less it (a
    24 h task was killed by Modal at the instant its worker meant to checkpoint)."""
    err = await expect_error(create(shared_client, gpu="T4", timeout_seconds=86_400),
                             grpc.StatusCode.INVALID_ARGUMENT, "E101")
    assert err.details().startswith("timeout") and "85800" in err.details()
    assert (await create(shared_client, gpu="T4", timeout_seconds=85_800)).options.timeout_seconds \
        == 85_800
    assert (await create(shared_client, timeout_seconds=86_400)).options.backend == "local"


@pytest.mark.parametrize("gpu", ["H100:\u00b2", "H100:\u0663", "H100:" + "9" * 5000])
async def test_a_gpu_count_is_ascii_digits_and_says_the_accepted_forms(
        shared_client: Ch, gpu: str) -> None:
    err = await expect_error(create(shared_client, gpu=gpu), grpc.StatusCode.INVALID_ARGUMENT,
                             "E101")
    assert "the GPU count must be 1 to 8" in err.details() and len(err.details()) < 300


async def test_list_get_cancel_delete(client: Ch) -> None:
    tasks = tasks_pb2_grpc.TaskServiceStub(client)
    a, b, c = [await create(client, f"task {i}") for i in range(3)]
    listed = await tasks.ListTasks(tasks_pb2.ListTasksRequest())
    assert [t.id for t in listed.tasks] == [c.id, b.id, a.id]  # newest first
    assert len((await tasks.ListTasks(tasks_pb2.ListTasksRequest(limit=2))).tasks) == 2
    got = await tasks.GetTask(tasks_pb2.GetTaskRequest(task_id=b.id[:7]))
    assert got.id == b.id and got.prompt == "task 1"

    cancelled = await tasks.CancelTask(tasks_pb2.CancelTaskRequest(task_id=a.id))
    assert cancelled.status == common_pb2.TASK_STATUS_CANCELLED and cancelled.finished_at.seconds
    err = await expect_error(tasks.CancelTask(tasks_pb2.CancelTaskRequest(task_id=a.id)),
                             grpc.StatusCode.FAILED_PRECONDITION, "E603")
    assert "already cancelled" in err.details()
    only = await tasks.ListTasks(tasks_pb2.ListTasksRequest(
        statuses=[common_pb2.TASK_STATUS_CANCELLED]))
    assert [t.id for t in only.tasks] == [a.id]

    # A pending task has no worker: it is cancelled and deleted without --force.
    await tasks.DeleteTask(tasks_pb2.DeleteTaskRequest(task_id=b.id))
    await tasks.DeleteTask(tasks_pb2.DeleteTaskRequest(task_id=a.id))
    remaining = await tasks.ListTasks(tasks_pb2.ListTasksRequest())
    assert [t.id for t in remaining.tasks] == [c.id]
    await expect_error(tasks.GetTask(tasks_pb2.GetTaskRequest(task_id=a.id)),
                       grpc.StatusCode.NOT_FOUND, "E201")
    events = await events_pb2_grpc.EventServiceStub(client).ListEvents(
        events_pb2.ListEventsRequest(filter=common_pb2.EventFilter(task_id=b.id)))
    assert [e.type for e in events.events] == ["task_created", "task_cancelled", "task_deleted"]


def _every_rpc() -> list:
    from parheliad.api.registry import SERVICES

    return [(spec, m) for spec in SERVICES for m in spec.descriptor.methods]


async def _not_unimplemented(servicers: dict) -> list[str]:
    """Serve ``servicers`` the daemon's way (``parheliad.api.registry.register`` behind
    its ``ErrorInterceptor``), call every RPC of parhelia.v1 with an empty request, and
    say each one that does not answer UNIMPLEMENTED with its message."""
    import tempfile
    from pathlib import Path

    from google.protobuf import symbol_database

    from parheliad.api.interceptor import ErrorInterceptor
    from parheliad.api.registry import register

    interceptor = ErrorInterceptor(frozenset())
    server = grpc.aio.server(interceptors=[interceptor])
    interceptor.implemented = register(server, servicers).implemented
    socket = Path(tempfile.mkdtemp(dir="/tmp")) / "s"
    server.add_insecure_port(f"unix://{socket}")
    await server.start()
    db = symbol_database.Default()
    wrong = []
    try:
        async with grpc.aio.insecure_channel(f"unix://{socket}") as bare:
            for spec, method in _every_rpc():
                request_cls = db.GetSymbol(method.input_type.full_name)
                path = f"/{spec.descriptor.full_name}/{method.name}"
                kind = ("stream_" if method.client_streaming else "unary_") + (
                    "stream" if method.server_streaming else "unary")
                make = getattr(bare, kind)(path, request_serializer=request_cls.SerializeToString,
                                           response_deserializer=lambda b: b)
                call = make(iter([request_cls()]) if method.client_streaming else request_cls())
                try:
                    if method.server_streaming:
                        async for _ in call:
                            pass
                    else:
                        await call
                    wrong.append(f"{method.name}: answered")
                    continue
                except grpc.aio.AioRpcError as err:
                    expected = f"{path.lstrip('/')} is not implemented by this daemon yet"
                    if err.code() != grpc.StatusCode.UNIMPLEMENTED or \
                            err.details() != expected or trailing(err).get(METADATA_KEY):
                        wrong.append(f"{method.name}: {err.code().name} {err.details()}")
    finally:
        await server.stop(0)
    return wrong


async def test_unimplemented_rpcs_answer_unimplemented(client: Ch) -> None:
    """This daemon implements every parhelia.v1 RPC: its capabilities name them all. An
    RPC a daemon does not implement answers UNIMPLEMENTED (never an internal error):
    every RPC, unary, server-streaming and bidirectional alike, on servicers that
    implement none."""
    from parheliad.api.registry import capability

    reply = await system_pb2_grpc.SystemServiceStub(client).GetVersion(
        system_pb2.GetVersionRequest())
    every = _every_rpc()
    assert len(every) > 40
    assert {("stream_" if m.client_streaming else "unary_")
            + ("stream" if m.server_streaming else "unary") for _, m in every} == {
        "unary_unary", "unary_stream", "stream_stream"}
    assert [m.name for spec, m in every
            if capability(spec, m.name) not in set(reply.capabilities)] == []
    assert await _not_unimplemented({}) == []


async def test_the_unimplemented_guard_sees_an_rpc_answering_otherwise() -> None:
    """Planted: a servicer whose ListTasks fails with an internal error."""
    from parhelia.v1 import tasks_pb2_grpc as grpc_tasks

    class Broken(grpc_tasks.TaskServiceServicer):
        async def ListTasks(self, request, context):  # noqa: N802
            raise RuntimeError("planted")

    wrong = await _not_unimplemented({"TaskService": Broken()})
    assert len(wrong) == 1 and wrong[0].startswith("ListTasks: INTERNAL E900"), wrong


async def test_request_id_echoed_in_trailing_metadata(client: Ch) -> None:
    stub = system_pb2_grpc.SystemServiceStub(client)
    call = stub.GetVersion(system_pb2.GetVersionRequest(),
                           metadata=(("x-request-id", "req-abc.123"),))
    await call
    assert dict(await call.trailing_metadata())["x-request-id"] == "req-abc.123"
    err = await expect_error(
        tasks_pb2_grpc.TaskServiceStub(client).GetTask(
            tasks_pb2.GetTaskRequest(task_id="t-0"), metadata=(("x-request-id", "bad id!"),)),
        grpc.StatusCode.NOT_FOUND, "E201")
    rid = trailing(err)["x-request-id"]
    assert rid and rid != "bad id!"


async def test_health_and_reflection(client: Ch) -> None:
    health = health_pb2_grpc.HealthStub(client)
    for service in ("", "parhelia.v1.TaskService", "parhelia.v1.BudgetService"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(client)

    async def ask():
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async for reply in refl.ServerReflectionInfo(ask()):
        names = {s.name for s in reply.list_services_response.service}
        assert {"parhelia.v1.TaskService", "parhelia.v1.EventService",
                "grpc.health.v1.Health"} <= names
        break


async def test_list_events_filters(client: Ch) -> None:
    events = events_pb2_grpc.EventServiceStub(client)
    tasks = tasks_pb2_grpc.TaskServiceStub(client)
    a = await create(client, "a")
    b = await create(client, "b")
    await tasks.CancelTask(tasks_pb2.CancelTaskRequest(task_id=b.id))

    async def types(limit: int = 0, **flt) -> list[str]:
        reply = await events.ListEvents(events_pb2.ListEventsRequest(
            filter=common_pb2.EventFilter(**flt), limit=limit))
        return [f"{e.type}:{e.task_id}" if e.task_id else e.type for e in reply.events]

    everything = await types()
    assert everything == ["daemon_started", f"task_created:{a.id}", f"task_created:{b.id}",
                          f"task_cancelled:{b.id}"]
    assert await types(types=["task_cancelled"]) == [f"task_cancelled:{b.id}"]
    assert await types(min_level="warning") == [f"task_cancelled:{b.id}"]
    assert await types(task_id=b.id[:6]) == [f"task_created:{b.id}", f"task_cancelled:{b.id}"]
    assert await types(limit=2) == everything[-2:]
    listed = await events.ListEvents(events_pb2.ListEventsRequest())
    first, second = listed.events[0], listed.events[1]
    assert await types(after_id=first.id) == everything[1:]
    until = Timestamp()
    until.FromMicroseconds(second.at.ToMicroseconds())
    assert await types(until=until) == everything[:1]
    since = Timestamp()
    since.FromMicroseconds(listed.events[-1].at.ToMicroseconds())
    assert await types(since=since) == everything[-1:]
    await expect_error(types(types=["no_such_type"]), grpc.StatusCode.INVALID_ARGUMENT, "E101")
    await expect_error(types(min_level="loud"), grpc.StatusCode.INVALID_ARGUMENT, "E101")


async def test_watch_receives_events_committed_after_it_started(client: Ch) -> None:
    watch = events_pb2_grpc.EventServiceStub(client).WatchEvents(
        events_pb2.WatchEventsRequest(backlog=1))
    stream = watch.__aiter__()
    first = await asyncio.wait_for(stream.__anext__(), 10)
    assert first.type == "daemon_started"  # backlog: proves the subscription is live
    task = await create(client, "watched")
    nxt = await asyncio.wait_for(stream.__anext__(), 10)
    assert (nxt.type, nxt.task_id) == ("task_created", task.id)
    assert nxt.id > first.id
    watch.cancel()


async def test_a_watch_after_an_id_with_a_backlog_misses_nothing_committed_before_it(
        client: Ch) -> None:
    """What a gap-free subscription relies on (the MCP bridge's): read the newest id, and an
    event that commits before the watch reaches the daemon still comes, once."""
    stub = events_pb2_grpc.EventServiceStub(client)
    newest = (await stub.ListEvents(events_pb2.ListEventsRequest(limit=1))).events[-1].id
    task = await create(client, "committed before the watch")
    watch = stub.WatchEvents(events_pb2.WatchEventsRequest(
        filter=common_pb2.EventFilter(types=["task_created"], after_id=newest), backlog=100))
    stream = watch.__aiter__()
    first = await asyncio.wait_for(stream.__anext__(), 10)
    assert (first.type, first.task_id) == ("task_created", task.id)
    later = await create(client, "committed after")
    nxt = await asyncio.wait_for(stream.__anext__(), 10)
    assert (nxt.type, nxt.task_id) == ("task_created", later.id)
    watch.cancel()


async def test_watch_filter_and_clean_end_on_shutdown(client: Ch, daemon: RunningDaemon) -> None:
    watch = events_pb2_grpc.EventServiceStub(client).WatchEvents(
        events_pb2.WatchEventsRequest(filter=common_pb2.EventFilter(types=["task_cancelled"]),
                                      backlog=5))
    received: list[common_pb2.Event] = []

    async def consume() -> None:
        async for event in watch:
            received.append(event)

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.3)
    task = await create(client, "to cancel")
    await tasks_pb2_grpc.TaskServiceStub(client).CancelTask(
        tasks_pb2.CancelTaskRequest(task_id=task.id))
    for _ in range(100):
        if received:
            break
        await asyncio.sleep(0.05)
    assert [(e.type, e.task_id) for e in received] == [("task_cancelled", task.id)]
    loop = asyncio.get_running_loop()
    code = await loop.run_in_executor(None, daemon.stop, signal.SIGTERM)
    await asyncio.wait_for(consumer, 10)  # ends without an error: not cut by server.stop
    assert await watch.code() == grpc.StatusCode.OK
    assert code == 0


@pytest.mark.parametrize("url,ok", [
    ("https://github.com/o/r.git", True),
    ("git@github.com:o/r.git", True),
    ("https://user:ghp_secret123@github.com/o/r.git", False),
    ("https://x-access-token:tok@github.com/o/r.git", False),
    # A token as the user name (GitHub takes it), or in the query: stored and shown too.
    ("https://ghp_abcdefghijklmnopqrstuvwxyz0123@github.com/o/r.git", False),
    ("https://gitlab.example/o/r.git?private_token=abcdef123456", False),
    ("ssh://git@example.com/o/r.git", True),
])
async def test_repo_url_with_credentials_is_refused(shared_client: Ch, url: str, ok: bool) -> None:
    request = tasks_pb2.CreateTaskRequest(prompt="p", no_dispatch=True,
                                          source=common_pb2.TaskSource(repo_url=url))
    stub = tasks_pb2_grpc.TaskServiceStub(shared_client)
    if ok:
        assert (await stub.CreateTask(request)).task.source.repo_url == url
        return
    err = await expect_error(stub.CreateTask(request), grpc.StatusCode.INVALID_ARGUMENT, "E101")
    assert err.details().startswith("repo_url") and "secret" not in err.details()
