"""SessionService over :class:`parheliad.core.sessions.SessionOps`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc

from parhelia.errors import missing
from parhelia.v1 import common_pb2, sessions_pb2, sessions_pb2_grpc
from parheliad.api import paging
from parheliad.api.convert import (
    checkpoint_to_proto,
    event_to_proto,
    require_ref,
    session_to_proto,
    task_to_proto,
)
from parheliad.api.system import tracked
from parheliad.context import DaemonContext
from parheliad.core.runtime import Runtime
from parheliad.core.states import SESSION_LIVE, SessionStatus
from parheliad.store.rows import SessionRow

TERMINAL_CLOSE_TIMEOUT_S = 30.0


def _ref(value: str) -> str:
    return require_ref(value, "session_id")


class SessionServicer(sessions_pb2_grpc.SessionServiceServicer):
    def __init__(self, ctx: DaemonContext) -> None:
        self._ctx = ctx

    @property
    def _rt(self) -> Runtime:
        return self._ctx.require_runtime()

    async def _proto(self, session_id: str) -> common_pb2.Session:
        row = await self._ctx.store.sessions.get(session_id)
        return (await self._protos([row]))[0]

    async def _protos(self, rows: list[SessionRow]) -> list[common_pb2.Session]:
        """The sessions with their container and checkpoint counts (one query each)."""
        store = self._ctx.store
        ids = [r.id for r in rows]
        containers = await store.containers.count_by_session(ids)
        checkpoints = await store.checkpoints.count_by_session(ids)
        out = []
        for row in rows:
            msg = session_to_proto(row)
            msg.containers = containers.get(row.id, 0)
            msg.checkpoints = checkpoints.get(row.id, 0)
            out.append(msg)
        return out

    async def ListSessions(self, request: sessions_pb2.ListSessionsRequest,
                           context: grpc.aio.ServicerContext
                           ) -> sessions_pb2.ListSessionsResponse:
        statuses = () if request.all else (*SESSION_LIVE, SessionStatus.STOPPED)
        page = paging.page("sessions", request.limit, request.page_token, shape=(int, str))
        after = (int(page.after[0]), str(page.after[1])) if page.after else None
        rows = await self._ctx.store.sessions.list(statuses=statuses, limit=page.limit + 1,
                                                   after=after)
        sent, next_token = page.answer(rows, lambda r: (r.created_at, r.id))
        total = await self._ctx.store.sessions.count(statuses=statuses) \
            if page.is_part(next_token) else len(sent)
        return sessions_pb2.ListSessionsResponse(sessions=await self._protos(sent),
                                                 next_page_token=next_token, total=total)

    async def GetSession(self, request: sessions_pb2.GetSessionRequest,
                         context: grpc.aio.ServicerContext) -> common_pb2.Session:
        return await self._proto(_ref(request.session_id))

    async def KillSession(self, request: sessions_pb2.KillSessionRequest,
                          context: grpc.aio.ServicerContext) -> common_pb2.Session:
        row = await self._rt.sessions.kill(_ref(request.session_id))
        return await self._proto(row.id)

    async def ResumeSession(self, request: sessions_pb2.ResumeSessionRequest,
                            context: grpc.aio.ServicerContext) -> common_pb2.Task:
        task = await self._rt.sessions.resume(_ref(request.session_id),
                                              request.checkpoint_id.strip())
        return task_to_proto(task)

    async def AttachSession(self, request: sessions_pb2.AttachSessionRequest,
                            context: grpc.aio.ServicerContext
                            ) -> sessions_pb2.AttachSessionResponse:
        info = await self._rt.sessions.attach(_ref(request.session_id),
                                              take_over=request.take_over)
        return sessions_pb2.AttachSessionResponse(
            argv=info.argv, unset_env=list(info.unset_env),
            session=await self._proto(info.session.id), taken_over=info.taken_over,
            detach_hint=info.detach_hint, through_daemon=not info.argv)

    async def ReleaseSession(self, request: sessions_pb2.ReleaseSessionRequest,
                             context: grpc.aio.ServicerContext) -> common_pb2.Session:
        row = await self._rt.sessions.release(_ref(request.session_id), request.instruction)
        return await self._proto(row.id)

    async def RecoverSession(self, request: sessions_pb2.RecoverSessionRequest,
                             context: grpc.aio.ServicerContext
                             ) -> sessions_pb2.RecoverSessionResponse:
        view = await self._rt.sessions.recover(_ref(request.session_id),
                                               request.action.strip(),
                                               request.checkpoint_id.strip())
        return sessions_pb2.RecoverSessionResponse(
            session=await self._proto(view.session.id), task=task_to_proto(view.task),
            what_happened=view.what_happened,
            recent_checkpoints=[checkpoint_to_proto(c) for c in view.recent_checkpoints],
            since_latest_checkpoint=[event_to_proto(e) for e in view.since_latest],
            choices=view.choices, action_taken=view.action_taken)

    async def PullSession(self, request: sessions_pb2.PullSessionRequest,
                          context: grpc.aio.ServicerContext) -> sessions_pb2.PullSessionResponse:
        with tracked(self._ctx, context) as tracker:
            session, checkpoint_id, copy = await self._rt.sessions.pull_home(
                _ref(request.session_id), request.directory, request.claude_config_dir,
                request.checkpoint_id.strip(), tracker)
        return sessions_pb2.PullSessionResponse(
            session_id=session.id, checkpoint_id=checkpoint_id,
            directory=str(copy.directory), agent_session_id=copy.agent_session_id,
            transcript_path=str(copy.transcript), files=copy.files, bytes=copy.bytes,
            conversation_files=copy.conversation_files, git=copy.git,
            left_out=copy.left_out)

    async def AttachTerminal(self, request_iterator: AsyncIterator[sessions_pb2.TerminalInput],
                             context: grpc.aio.ServicerContext
                             ) -> AsyncIterator[sessions_pb2.TerminalOutput]:
        first = await anext(aiter(request_iterator), None)
        if first is None or not first.session_id:
            raise missing("session_id: the first message names the session",
                          field="session_id")
        container_id, terminal = await self._rt.sessions.open_terminal(
            _ref(first.session_id), first.rows, first.cols, first.term)
        yield sessions_pb2.TerminalOutput(container_id=container_id)

        async def keys() -> None:
            async for msg in request_iterator:
                if msg.data:
                    await terminal.write(msg.data)
                if msg.rows > 0 and msg.cols > 0:
                    await terminal.resize(msg.rows, msg.cols)

        typing = asyncio.create_task(keys())
        ended = False
        try:
            async for chunk in terminal.output():
                yield sessions_pb2.TerminalOutput(data=chunk)
            code = await terminal.wait()
            ended = True
            yield sessions_pb2.TerminalOutput(ended=True, exit_code=code)
        finally:
            typing.cancel()
            with contextlib.suppress(BaseException):
                await typing
            if not ended:  # the client went away: hang its tmux client up
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(terminal.close(), TERMINAL_CLOSE_TIMEOUT_S)

    async def SshSession(self, request: sessions_pb2.SshSessionRequest,
                         context: grpc.aio.ServicerContext) -> sessions_pb2.SshSessionResponse:
        access = await self._rt.sessions.ssh(_ref(request.session_id))
        return sessions_pb2.SshSessionResponse(
            argv=access.argv, host=access.host, port=access.port,
            host_key_fingerprint=access.fingerprint, known_hosts_path=access.known_hosts,
            key_path=access.key, remote_command=" ".join(access.argv[access.argv.index("--")
                                                                      + 1:]))
