"""The task command router (``modal_proto.task_command_router_grpc.TaskCommandRouterBase``):
the second endpoint modal 1.6.4 talks to for ``Sandbox.exec``, authenticated by the JWT
the control plane hands out (``SandboxGetCommandRouterAccess``/``TaskGetCommandRouterAccess``).

An exec is a local process of the sandbox (its paths mapped, its environment the image's,
the exec's secrets and env, killed with the sandbox). Its stdout and stderr are kept so
that a reader can (re)connect at any byte offset, as the SDK does after a broken stream;
stdin is written at the client's offsets (a retried write is not written twice); a PTY
exec gets a terminal of the size the client asked for, its output on stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import struct
import termios
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from grpclib import GRPCError, Status
from modal_proto import task_command_router_grpc
from modal_proto import task_command_router_pb2 as sr

from tests.modal_host import sandboxes, state
from tests.modal_standin.rpc import Call, serve
from tests.modal_standin.service import Service, sandbox_of_task

CHUNK = 64 * 1024


@dataclass
class Stream:
    data: bytearray = field(default_factory=bytearray)
    done: bool = False


@dataclass
class Exec:
    sb_id: str
    proc: asyncio.subprocess.Process
    out: Stream = field(default_factory=Stream)
    err: Stream = field(default_factory=Stream)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    stdin_written: int = 0
    stdin_closed: bool = False
    pty_master: int | None = None
    pumps: list[asyncio.Task[None]] = field(default_factory=list)

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


def _check(self: Router, call: Call) -> None:
    auth = str(call.metadata.get("authorization") or "")
    if not auth.startswith("Bearer "):
        raise GRPCError(Status.UNAUTHENTICATED, "missing bearer token")
    call.claims = self.service.verify_jwt(auth.removeprefix("Bearer "))


@serve(task_command_router_grpc.TaskCommandRouterBase, lambda self: self.service.faults, _check)
class Router(task_command_router_grpc.TaskCommandRouterBase):
    def __init__(self, service: Service) -> None:
        self.service = service
        self.execs: dict[str, Exec] = {}

    def _task(self, task_id: str, call: Call) -> str:
        """The sandbox of a task this caller's token is for, while it runs."""
        if call.claims.get("task_id") != task_id:
            raise GRPCError(Status.PERMISSION_DENIED, f"token is not valid for task {task_id}")
        sb_id = sandbox_of_task(task_id)
        if state.sandbox_meta(sb_id) is None or not sandboxes.scheduled(sb_id):
            raise GRPCError(Status.NOT_FOUND, f"Task {task_id} not found")
        return sb_id

    def _exec(self, task_id: str, exec_id: str, call: Call) -> Exec:
        if call.claims.get("task_id") != task_id:
            raise GRPCError(Status.PERMISSION_DENIED, f"token is not valid for task {task_id}")
        found = self.execs.get(exec_id)
        if found is None or found.sb_id != sandbox_of_task(task_id):
            raise GRPCError(Status.NOT_FOUND, f"Exec {exec_id} not found")
        return found

    async def TaskExecStart(self, req: Any, call: Call) -> Any:
        sb_id = self._task(req.task_id, call)
        if req.exec_id in self.execs:  # a retried start: the exec runs once
            return sr.TaskExecStartResponse()
        meta = state.sandbox_meta(sb_id) or {}
        secret_env: dict[str, str] = {}
        for source in req.secret_sources:
            if source.HasField("env"):
                secret_env.update(source.env.contents)
            elif source.secret_id:
                secret_env.update(self.service.secret_values(source.secret_id))
        for secret_id in req.secret_ids:
            secret_env.update(self.service.secret_values(secret_id))
        env = sandboxes.sandbox_env(sb_id, secret_env, meta.get("image_env") or {},
                                    dict(req.env))
        argv = state.map_argv(sb_id, list(req.command_args))
        cwd = state.map_path(sb_id, req.workdir or meta.get("workdir") or "/root")
        if req.HasField("pty_info") and req.pty_info.enabled:
            if req.pty_info.env_term:
                env["TERM"] = req.pty_info.env_term
            ex = await self._start_pty(sb_id, argv, env, cwd, req.pty_info)
        else:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv, env=env, cwd=cwd, stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=(asyncio.subprocess.STDOUT if req.stderr_config ==
                            sr.TASK_EXEC_STDERR_CONFIG_STDOUT else asyncio.subprocess.PIPE),
                    start_new_session=True)
            except OSError as exc:
                raise GRPCError(Status.INVALID_ARGUMENT, f"exec failed: {exc}") from None
            ex = Exec(sb_id, proc)
            ex.pumps.append(asyncio.create_task(self._pump(ex, proc.stdout, ex.out)))
            if proc.stderr is not None:
                ex.pumps.append(asyncio.create_task(self._pump(ex, proc.stderr, ex.err)))
            else:
                ex.err.done = True
            if req.stdout_config == sr.TASK_EXEC_STDOUT_CONFIG_DEVNULL:
                ex.out.done = True
        sandboxes.record_exec(sb_id, ex.proc.pid)
        self.execs[req.exec_id] = ex
        if req.timeout_secs:
            asyncio.get_running_loop().call_later(req.timeout_secs, _kill, ex.proc)
        return sr.TaskExecStartResponse()

    async def _start_pty(self, sb_id: str, argv: list[str], env: dict[str, str], cwd: str,
                         pty: Any) -> Exec:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ,
                    struct.pack("HHHH", pty.winsz_rows, pty.winsz_cols, 0, 0))

        def controlling_tty() -> None:
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, env=env, cwd=cwd, stdin=slave, stdout=slave, stderr=slave,
                preexec_fn=controlling_tty)  # noqa: PLW1509 - the child is ours, one thread
        finally:
            os.close(slave)
        ex = Exec(sb_id, proc, pty_master=master)
        ex.err.done = True
        ex.pumps.append(asyncio.create_task(self._pump_pty(ex, master)))
        return ex

    async def _pump(self, ex: Exec, reader: Any, into: Stream) -> None:
        while data := await reader.read(CHUNK):
            into.data += data
            ex.notify()
        into.done = True
        ex.notify()

    async def _pump_pty(self, ex: Exec, master: int) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await loop.run_in_executor(None, os.read, master, CHUNK)
            except OSError:
                data = b""
            if not data:
                break
            ex.out.data += data
            ex.notify()
        with contextlib.suppress(OSError):
            os.close(master)
        ex.out.done = True
        ex.notify()

    async def TaskExecStdioRead(self, req: Any, call: Call) -> AsyncIterator[Any]:
        ex = self._exec(req.task_id, req.exec_id, call)
        stream = ex.err if req.file_descriptor == sr.TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDERR \
            else ex.out
        offset = int(req.offset)
        while True:
            if offset < len(stream.data):
                chunk = bytes(stream.data[offset:offset + CHUNK])
                offset += len(chunk)
                yield sr.TaskExecStdioReadResponse(data=chunk)
                continue
            if stream.done:
                return
            changed = ex.changed
            await changed.wait()

    async def TaskExecStdinWrite(self, req: Any, call: Call) -> Any:
        ex = self._exec(req.task_id, req.exec_id, call)
        if req.offset > ex.stdin_written:
            raise GRPCError(Status.INVALID_ARGUMENT,
                            f"stdin offset {req.offset} is past {ex.stdin_written}")
        data = bytes(req.data)[ex.stdin_written - req.offset:]
        if data and not ex.stdin_closed:
            if ex.pty_master is not None:
                await asyncio.to_thread(_write_all, ex.pty_master, data)
            elif ex.proc.stdin is not None:
                ex.proc.stdin.write(data)
                with contextlib.suppress(ConnectionError):
                    await ex.proc.stdin.drain()
            ex.stdin_written += len(data)
        if req.eof and not ex.stdin_closed:
            ex.stdin_closed = True
            if ex.proc.stdin is not None:
                ex.proc.stdin.close()
        return sr.TaskExecStdinWriteResponse()

    async def TaskExecStdinStatus(self, req: Any, call: Call) -> Any:
        ex = self._exec(req.task_id, req.exec_id, call)
        return sr.TaskExecStdinStatusResponse(num_bytes_written=ex.stdin_written,
                                              closed=ex.stdin_closed)

    async def TaskExecWait(self, req: Any, call: Call) -> Any:
        ex = self._exec(req.task_id, req.exec_id, call)
        await ex.proc.wait()
        return _exit(ex.proc.returncode)

    async def TaskExecPoll(self, req: Any, call: Call) -> Any:
        ex = self._exec(req.task_id, req.exec_id, call)
        if ex.proc.returncode is None:
            return sr.TaskExecPollResponse()
        return sr.TaskExecPollResponse(**_exit_fields(ex.proc.returncode))

    async def TaskReloadVolumes(self, req: Any, call: Call) -> Any:
        sb_id = self._task(req.task_id, call)
        await asyncio.to_thread(sandboxes.reload_volumes, sb_id)
        return sr.TaskReloadVolumesResponse()


def _exit_fields(code: int | None) -> dict[str, int]:
    assert code is not None
    return {"signal": -code} if code < 0 else {"code": code}


def _exit(code: int | None) -> Any:
    return sr.TaskExecWaitResponse(**_exit_fields(code))


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]
