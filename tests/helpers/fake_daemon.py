"""A small in-process fake of parheliad's gRPC API, for CLI tests that need answers
but not the real daemon: it speaks the same contract (statuses, the E-code in
trailing metadata, server streams)."""

from __future__ import annotations

import json
import queue
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from parhelia import errors
from parhelia.v1 import (
    checkpoints_pb2,
    checkpoints_pb2_grpc,
    common_pb2,
    config_pb2,
    config_pb2_grpc,
    events_pb2,
    events_pb2_grpc,
    sessions_pb2,
    sessions_pb2_grpc,
    system_pb2,
    system_pb2_grpc,
    tasks_pb2,
    tasks_pb2_grpc,
)


def abort(context: grpc.ServicerContext, code: str, message: str) -> None:
    spec = errors.CATALOGUE[code]
    context.set_trailing_metadata(((errors.METADATA_KEY, code),))
    context.abort(getattr(grpc.StatusCode, spec.grpc_status), message)


@dataclass
class State:
    version: str = "0.1.0"
    tasks: dict[str, common_pb2.Task] = field(default_factory=dict)
    events: list[common_pb2.Event] = field(default_factory=list)
    watchers: list[queue.Queue[common_pb2.Event]] = field(default_factory=list)
    requests: list[Any] = field(default_factory=list)
    watch_script: list[tasks_pb2.TaskProgress] = field(default_factory=list)
    doctor: list[system_pb2.DoctorCheck] = field(default_factory=list)
    needs_attention: bool = False
    sessions: dict[str, common_pb2.Session] = field(default_factory=dict)
    checkpoints: list[common_pb2.Checkpoint] = field(default_factory=list)
    manifests: dict[str, str] = field(default_factory=dict)
    verify_problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    shutdown: threading.Event = field(default_factory=threading.Event)
    shutdown_cancelled: bool = False
    """Shutdown cancels its own call, as a daemon stopping at once can (CANCELLED)."""

    def emit(self, type_: str, task_id: str = "", message: str = "") -> common_pb2.Event:
        with self.lock:
            e = common_pb2.Event(id=len(self.events) + 1, type=type_, level="info",
                                 task_id=task_id, message=message, data_json='{"k": 1}')
            e.at.GetCurrentTime()
            self.events.append(e)
            for w in self.watchers:
                w.put(e)
        return e

    def find(self, context: grpc.ServicerContext, task_id: str) -> common_pb2.Task:
        matches = [t for i, t in self.tasks.items() if i.startswith(task_id)] if task_id else []
        if len(matches) != 1:
            abort(context, "E201", f"no task matches {task_id!r}")
        return matches[0]


class System(system_pb2_grpc.SystemServiceServicer):
    def __init__(self, state: State, socket: Path) -> None:
        self.state, self.socket, self.started = state, socket, time.time()

    def GetVersion(self, request: Any, context: Any) -> Any:
        self.state.requests.append(request)
        return system_pb2.GetVersionResponse(version=self.state.version, api="parhelia.v1",
                                             capabilities=["tasks.create"], instance_id="fake")

    def GetStatus(self, request: Any, context: Any) -> Any:
        counts: dict[str, int] = {}
        for t in self.state.tasks.values():
            name = common_pb2.TaskStatus.Name(t.status).removeprefix("TASK_STATUS_").lower()
            counts[name] = counts.get(name, 0) + 1
        resp = system_pb2.GetStatusResponse(
            version=self.state.version, pid=1234, uptime_seconds=time.time() - self.started,
            socket_path=str(self.socket), database_path="/tmp/fake.db",
            tasks_by_status=counts, instance_id="fake",
            backends=[system_pb2.BackendStatus(name="local", available=True)])
        resp.started_at.FromSeconds(int(self.started))
        if self.state.needs_attention:
            resp.health.CopyFrom(system_pb2.HealthSummary(
                dead=1, needs_attention=True, attention=["container c-1 is dead"]))
        return resp

    def Shutdown(self, request: Any, context: Any) -> Any:
        self.state.shutdown.set()
        if self.state.shutdown_cancelled:
            context.abort(grpc.StatusCode.CANCELLED, "the server is stopping")
        return system_pb2.ShutdownResponse()

    def Doctor(self, request: Any, context: Any) -> Any:
        return system_pb2.DoctorResponse(checks=self.state.doctor)


class Tasks(tasks_pb2_grpc.TaskServiceServicer):
    def __init__(self, state: State) -> None:
        self.state = state

    def UploadWorkspace(self, request: Any, context: Any) -> Any:
        self.state.requests.append(request)
        yield tasks_pb2.UploadWorkspaceProgress(files_done=1, files_total=2, bytes_total=2000)
        yield tasks_pb2.UploadWorkspaceProgress(
            files_done=2, files_total=2, bytes_done=2_000_000, bytes_total=2_000_000,
            new_bytes=1_500_000, done=True, workspace_id="ws-1", base_commit="abc123",
            root=request.path)

    def CreateTask(self, request: Any, context: Any) -> Any:
        self.state.requests.append(request)
        if not request.prompt.strip():
            abort(context, "E102", "the prompt is empty")
        if request.validate_only:  # the check before an upload: nothing is created
            return tasks_pb2.CreateTaskResponse()
        task_id = f"t-{len(self.state.tasks) + 1:04d}abcdef"
        t = common_pb2.Task(id=task_id, prompt=request.prompt, options=request.options,
                            source=request.source, status=common_pb2.TASK_STATUS_PENDING,
                            workspace_path=request.workspace_path,
                            base_commit=request.base_commit)
        t.created_at.GetCurrentTime()
        self.state.tasks[task_id] = t
        self.state.emit("task_created", task_id, "A task was created.")
        return tasks_pb2.CreateTaskResponse(task=t)

    def EstimateTask(self, request: Any, context: Any) -> Any:
        return tasks_pb2.EstimateTaskResponse(low_micros=500_000, high_micros=2_000_000, parts=[
            tasks_pb2.EstimatePart(name="compute", low_micros=100_000, high_micros=400_000)])

    def ListTasks(self, request: Any, context: Any) -> Any:
        self.state.requests.append(request)
        tasks = [t for t in self.state.tasks.values()
                 if not request.statuses or t.status in request.statuses]
        tasks.reverse()
        return tasks_pb2.ListTasksResponse(tasks=tasks[: request.limit or 100])

    def GetTask(self, request: Any, context: Any) -> Any:
        return self.state.find(context, request.task_id)

    def CancelTask(self, request: Any, context: Any) -> Any:
        self.state.requests.append(request)
        t = self.state.find(context, request.task_id)
        if t.status in (common_pb2.TASK_STATUS_COMPLETED, common_pb2.TASK_STATUS_CANCELLED):
            abort(context, "E603", f"task {t.id} is already finished")
        t.status = common_pb2.TASK_STATUS_CANCELLED
        return t

    def DeleteTask(self, request: Any, context: Any) -> Any:
        t = self.state.find(context, request.task_id)
        del self.state.tasks[t.id]
        return tasks_pb2.DeleteTaskResponse(task_id=t.id)

    def WatchTask(self, request: Any, context: Any) -> Any:
        t = self.state.find(context, request.task_id)
        for progress in self.state.watch_script:
            p = tasks_pb2.TaskProgress()
            p.CopyFrom(progress)
            p.task.id = t.id
            yield p

    def PullTask(self, request: Any, context: Any) -> Any:
        self.state.requests.append(request)
        t = self.state.find(context, request.task_id)
        files = [tasks_pb2.FileChange(path="a.txt", change="added", lines_added=1)]
        if request.patch_path:
            return tasks_pb2.PullTaskResponse(patch_path=request.patch_path, files=files,
                                              base_commit="abc123",
                                              repo_path=request.repo_path or "/repo")
        return tasks_pb2.PullTaskResponse(branch=request.branch or f"parhelia/{t.id}",
                                          commit="def456", files=files, base_commit="abc123",
                                          repo_path=request.repo_path or "/repo")


class Events(events_pb2_grpc.EventServiceServicer):
    def __init__(self, state: State) -> None:
        self.state = state

    def ListEvents(self, request: Any, context: Any) -> Any:
        self.state.requests.append(request)
        found = [e for e in self.state.events
                 if not request.filter.types or e.type in request.filter.types]
        return events_pb2.ListEventsResponse(events=found[-(request.limit or 50):])

    def ExportEvents(self, request: Any, context: Any) -> Any:
        """Every matching event, oldest first (the stream `task watch` replays)."""
        self.state.requests.append(request)
        flt = request.filter
        yield from (e for e in self.state.events
                    if (not flt.types or e.type in flt.types)
                    and (not flt.task_id or e.task_id == flt.task_id))

    def WatchEvents(self, request: Any, context: Any) -> Any:
        q: queue.Queue[common_pb2.Event] = queue.Queue()
        with self.state.lock:
            self.state.watchers.append(q)
        try:
            while context.is_active():
                try:
                    yield q.get(timeout=0.1)
                except queue.Empty:
                    continue
        finally:
            with self.state.lock:
                self.state.watchers.remove(q)


class Config(config_pb2_grpc.ConfigServiceServicer):
    def __init__(self, state: State) -> None:
        self.state = state

    def GetConfig(self, request: Any, context: Any) -> Any:
        self.state.requests.append(request)
        return config_pb2.GetConfigResponse(values=[
            config_pb2.ConfigValue(key="budget.default_ceiling_usd", value_json='"50"',
                                   source="default"),
            config_pb2.ConfigValue(key="orchestrator.max_concurrent_workers", value_json="4",
                                   source=f"project:{request.project_dir}/.parhelia/config.toml"),
        ], files=[])


class Sessions(sessions_pb2_grpc.SessionServiceServicer):
    """Sessions over the fake's state: ``session_id`` of a task is its session."""

    def __init__(self, state: State) -> None:
        self.state = state

    def _find(self, context: grpc.ServicerContext, ref: str) -> common_pb2.Session:
        matches = [s for i, s in self.state.sessions.items() if i.startswith(ref)] if ref \
            else []
        if len(matches) != 1:
            abort(context, "E200", f"no session matches {ref!r}")
        return matches[0]

    def ListSessions(self, request: Any, context: Any) -> Any:
        self.state.requests.append(request)
        found = [s for s in self.state.sessions.values()
                 if request.all or s.status != "completed"]
        found.reverse()
        return sessions_pb2.ListSessionsResponse(sessions=found[: request.limit or 100])

    def GetSession(self, request: Any, context: Any) -> Any:
        return self._find(context, request.session_id)

    def KillSession(self, request: Any, context: Any) -> Any:
        self.state.requests.append(request)
        s = self._find(context, request.session_id)
        if s.status != "headless":
            abort(context, "E603", f"session {s.id} is not running")
        s.status, s.current_container_id = "stopped", ""
        return s

    def _resume(self, context: Any, s: common_pb2.Session, checkpoint_id: str) -> Any:
        if s.status == "headless":
            abort(context, "E603", f"session {s.id} is running; nothing to resume")
        if checkpoint_id and not any(c.id.startswith(checkpoint_id) and c.session_id == s.id
                                     for c in self.state.checkpoints):
            abort(context, "E202", f"no checkpoint of session {s.id} matches "
                                   f"{checkpoint_id!r}")
        t = self.state.tasks[s.task_id]
        t.status, t.restarts = common_pb2.TASK_STATUS_PENDING, t.restarts + 1
        s.status = "headless"
        return t

    def ResumeSession(self, request: Any, context: Any) -> Any:
        self.state.requests.append(request)
        return self._resume(context, self._find(context, request.session_id),
                            request.checkpoint_id)

    def RecoverSession(self, request: Any, context: Any) -> Any:
        self.state.requests.append(request)
        s = self._find(context, request.session_id)
        if request.action not in ("", "resume", "restart", "wait"):
            abort(context, "E101", f"unknown action {request.action!r}")
        resp = sessions_pb2.RecoverSessionResponse(
            session=s, task=self.state.tasks[s.task_id],
            what_happened="The worker c-1 was lost (killed) after 3 turns.\n"
                          "Automatic recovery gave up after 3 restarts.",
            recent_checkpoints=[c for c in reversed(self.state.checkpoints)
                                if c.session_id == s.id][:5],
            since_latest_checkpoint=[e for e in self.state.events if e.session_id == s.id],
            choices=["resume", "restart", "wait"])
        if request.action == "resume":
            resp.task.CopyFrom(self._resume(context, s, request.checkpoint_id))
            resp.session.CopyFrom(s)
            resp.action_taken = (f"resumed task {resp.task.id} from "
                                 f"{request.checkpoint_id or s.latest_checkpoint_id}")
        elif request.action == "restart":
            t = common_pb2.Task(id="t-restarted01", session_id="s-restarted01",
                                status=common_pb2.TASK_STATUS_PENDING)
            resp.task.CopyFrom(t)
            resp.action_taken = ("restarted task t-restarted01 in a fresh session from "
                                 "checkpoint zero")
        elif request.action == "wait":
            resp.action_taken = "nothing changed"
        return resp


class Checkpoints(checkpoints_pb2_grpc.CheckpointServiceServicer):
    def __init__(self, state: State) -> None:
        self.state = state

    def _find(self, context: grpc.ServicerContext, ref: str) -> common_pb2.Checkpoint:
        matches = [c for c in self.state.checkpoints if c.id.startswith(ref)] if ref else []
        if len(matches) != 1:
            abort(context, "E202", f"no checkpoint matches {ref!r}")
        return matches[0]

    def CreateCheckpoint(self, request: Any, context: Any) -> Any:
        self.state.requests.append(request)
        matches = [s for i, s in self.state.sessions.items() if i.startswith(request.session_id)]
        if len(matches) != 1:
            abort(context, "E200", f"no session matches {request.session_id!r}")
        s = matches[0]
        cp = common_pb2.Checkpoint(
            id=f"cp-{len(self.state.checkpoints) + 1:016x}", session_id=s.id,
            parent_id=s.latest_checkpoint_id, trigger="manual", message=request.message,
            manual=True, stats=common_pb2.CheckpointStats(files=3, bytes=12_000,
                                                          new_bytes=2_000, duration_ms=12))
        cp.created_at.GetCurrentTime()
        self.state.checkpoints.append(cp)
        s.latest_checkpoint_id, s.checkpoints = cp.id, s.checkpoints + 1
        return cp

    def ListCheckpoints(self, request: Any, context: Any) -> Any:
        self.state.requests.append(request)
        found = [c for c in reversed(self.state.checkpoints)
                 if not request.session_id or c.session_id.startswith(request.session_id)]
        return checkpoints_pb2.ListCheckpointsResponse(checkpoints=found[: request.limit or 100])

    def GetCheckpoint(self, request: Any, context: Any) -> Any:
        cp = self._find(context, request.checkpoint_id)
        return checkpoints_pb2.GetCheckpointResponse(
            checkpoint=cp, manifest_json=self.state.manifests.get(cp.id, json.dumps({"id": cp.id})))

    def DiffCheckpoints(self, request: Any, context: Any) -> Any:
        self.state.requests.append(request)
        self._find(context, request.from_checkpoint_id)
        self._find(context, request.to_checkpoint_id)
        resp = checkpoints_pb2.DiffCheckpointsResponse(files=[
            tasks_pb2.FileChange(path="new.txt", change="added", new_size=1500, lines_added=2),
            tasks_pb2.FileChange(path="old.bin", change="removed", old_size=2_000_000,
                                 binary=True),
            tasks_pb2.FileChange(path="app.py", change="modified", old_size=100, new_size=120,
                                 lines_added=1, lines_removed=1)])
        if request.files:
            resp.patch = ("diff --git a/app.py b/app.py\n--- a/app.py\n+++ b/app.py\n"
                          "@@ -1 +1 @@\n-print('a')\n+print('b')\n")
        if request.conversation:
            resp.turns_added.extend([
                checkpoints_pb2.ConversationTurn(role="user", text="Fix app.py"),
                checkpoints_pb2.ConversationTurn(role="assistant", text="Done: prints b.")])
        return resp

    def RollbackCheckpoint(self, request: Any, context: Any) -> Any:
        self.state.requests.append(request)
        cp = self._find(context, request.checkpoint_id)
        safety = common_pb2.Checkpoint(id="cp-safety00000001", session_id=cp.session_id,
                                       trigger="safety", manual=True,
                                       stats=common_pb2.CheckpointStats(files=4, bytes=9000))
        self.state.checkpoints.append(safety)
        s = self.state.sessions.get(cp.session_id)
        return checkpoints_pb2.RollbackCheckpointResponse(
            safety_checkpoint=safety, restored=cp, resumed=bool(s and s.status == "headless"))

    def VerifyCheckpoint(self, request: Any, context: Any) -> Any:
        self._find(context, request.checkpoint_id)
        problems = self.state.verify_problems
        return checkpoints_pb2.VerifyCheckpointResponse(
            ok=not problems, blobs_checked=7, bytes_checked=1_234_567, problems=problems)

    def GcCheckpoints(self, request: Any, context: Any) -> Any:
        self.state.requests.append(request)
        doomed = [c for c in self.state.checkpoints if not c.manual]
        if not request.dry_run:
            self.state.checkpoints = [c for c in self.state.checkpoints if c.manual]
        return checkpoints_pb2.GcCheckpointsResponse(
            removed_checkpoint_ids=[c.id for c in doomed], blobs_removed=2 * len(doomed),
            bytes_freed=3_500_000 * len(doomed))


class FakeDaemon:
    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self.state = State()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        system_pb2_grpc.add_SystemServiceServicer_to_server(System(self.state, socket),
                                                            self.server)
        tasks_pb2_grpc.add_TaskServiceServicer_to_server(Tasks(self.state), self.server)
        events_pb2_grpc.add_EventServiceServicer_to_server(Events(self.state), self.server)
        config_pb2_grpc.add_ConfigServiceServicer_to_server(Config(self.state), self.server)
        sessions_pb2_grpc.add_SessionServiceServicer_to_server(Sessions(self.state),
                                                               self.server)
        checkpoints_pb2_grpc.add_CheckpointServiceServicer_to_server(Checkpoints(self.state),
                                                                     self.server)
        socket.parent.mkdir(parents=True, exist_ok=True)
        self.server.add_insecure_port(f"unix://{socket}")

    def start(self) -> FakeDaemon:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(0).wait()
        self.socket.unlink(missing_ok=True)
