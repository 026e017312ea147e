"""EventService: list with every EventFilter field, a live watch fed by the bus, export
in bounded memory and a container's replay."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import grpc

from parhelia.errors import ParheliaError, invalid
from parhelia.v1 import common_pb2, events_pb2, events_pb2_grpc
from parheliad.api import paging
from parheliad.api.convert import event_to_proto, filter_from_proto
from parheliad.context import DaemonContext
from parheliad.core.events import SLOW
from parheliad.store import EventFilter

DEFAULT_LIMIT = 50
MAX_LIMIT = 10_000


class EventServicer(events_pb2_grpc.EventServiceServicer):
    def __init__(self, ctx: DaemonContext) -> None:
        self._ctx = ctx

    async def _filter(self, msg: common_pb2.EventFilter) -> EventFilter:
        """Validate, and expand id prefixes of existing tasks/sessions/containers.

        An id that matches nothing is kept as given: events outlive deleted tasks.
        """
        flt = filter_from_proto(msg)
        store = self._ctx.store

        async def expand(ref: str, get: Callable[[str], Awaitable[Any]]) -> str:
            if not ref:
                return ref
            try:
                return str((await get(ref)).id)
            except ParheliaError:
                return ref

        return replace(flt, task_id=await expand(flt.task_id, store.tasks.get),
                       session_id=await expand(flt.session_id, store.sessions.get),
                       container_id=await expand(flt.container_id, store.containers.get))

    async def ListEvents(self, request: events_pb2.ListEventsRequest,
                         context: grpc.aio.ServicerContext) -> events_pb2.ListEventsResponse:
        page = paging.page("events", request.limit, request.page_token, shape=(int,),
                           default=DEFAULT_LIMIT, maximum=MAX_LIMIT)
        flt = await self._filter(request.filter)
        before = int(page.after[0]) if page.after else None
        rows = await self._ctx.store.events.list(flt, limit=page.limit + 1, before_id=before)
        # The newest page.limit, oldest first: an extra row is the oldest one read.
        more = len(rows) > page.limit
        sent = rows[1:] if more else rows
        next_token = paging.token("events", (sent[0].id,)) if more else ""
        return events_pb2.ListEventsResponse(events=[event_to_proto(r) for r in sent],
                                             next_page_token=next_token)

    async def WatchEvents(self, request: events_pb2.WatchEventsRequest,
                          context: grpc.aio.ServicerContext) -> AsyncIterator[common_pb2.Event]:
        """Optional backlog, then every new matching event as it commits.

        Subscribes *before* reading the backlog and skips ids already sent, so nothing
        falls in the gap and nothing comes twice. Ends cleanly when the daemon stops;
        a watcher too slow to keep up gets E500 naming the id to resume after.
        """
        if not 0 <= request.backlog <= MAX_LIMIT:
            raise invalid(f"backlog: must be 0 to {MAX_LIMIT}", field="backlog")
        flt = await self._filter(request.filter)
        with self._ctx.bus.subscribe(flt) as sub:
            sent = flt.after_id
            if request.backlog:
                for row in await self._ctx.store.events.list(flt, limit=request.backlog):
                    yield event_to_proto(row)
                    sent = row.id
            async for row in sub:
                if row.id > sent:
                    yield event_to_proto(row)
                    sent = row.id
            if sub.ended_because == SLOW:
                raise ParheliaError(
                    "E500", f"the watch fell behind and was dropped; watch again with "
                            f"after_id={sent} to continue without a gap", after_id=sent)

    async def ExportEvents(self, request: events_pb2.ExportEventsRequest,
                           context: grpc.aio.ServicerContext) -> AsyncIterator[common_pb2.Event]:
        """Every matching event, oldest first, read page by page: memory stays flat
        however many there are (the stream's flow control paces the reads)."""
        flt = await self._filter(request.filter)
        async for row in self._ctx.store.events.iter_export(flt):
            yield event_to_proto(row)

    async def ReplayEvents(self, request: events_pb2.ReplayEventsRequest,
                           context: grpc.aio.ServicerContext) -> AsyncIterator[common_pb2.Event]:
        """A container's events as a timeline, oldest first: its whole history with
        ``from_start``, else from the filter's ``since``, else its newest 50 events."""
        ref = request.container_id.strip()
        if not ref:
            raise ParheliaError("E102", "container_id is required", field="container_id")
        container = await self._ctx.store.containers.get(ref)
        flt = replace(filter_from_proto(request.filter), container_id=container.id)
        if request.from_start:
            flt = replace(flt, since_us=None)
        elif flt.since_us is None:
            for row in await self._ctx.store.events.list(flt, limit=DEFAULT_LIMIT):
                yield event_to_proto(row)
            return
        async for row in self._ctx.store.events.iter_export(flt):
            yield event_to_proto(row)
