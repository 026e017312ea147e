"""ContainerService: list, show (with recent heartbeats), health summary, a live watch
fed by the event bus, and terminate."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from parhelia.errors import ParheliaError, invalid
from parhelia.v1 import common_pb2, containers_pb2, containers_pb2_grpc
from parheliad.api import paging
from parheliad.api.convert import container_to_proto, event_to_proto, set_ts, word_from_proto
from parheliad.context import DaemonContext
from parheliad.core.reconciler import Reconciler
from parheliad.core.states import ContainerState, Health
from parheliad.store import EventFilter
from parheliad.store.rows import ContainerRow, HeartbeatRow, OrphanRow

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
RECENT_HEARTBEATS = 20
ATTENTION = frozenset({Health.DEGRADED.value, Health.UNHEALTHY.value, Health.DEAD.value})

WATCHED_TYPES = ("container_created", "container_started", "container_exited",
                 "container_failed", "container_terminated", "container_lost",
                 "container_orphaned", "container_adopted", "health_changed", "state_drift")
"""The events that change what `container list` shows (heartbeats only move a
timestamp; their health effect is a ``health_changed`` event)."""


def state_from_proto(value: int) -> str:
    return word_from_proto(ContainerState, common_pb2.ContainerState, value,
                           "states: unknown container state", "states")


def health_from_proto(value: int) -> str:
    return word_from_proto(Health, common_pb2.Health, value, "health: unknown health",
                           "health")


def heartbeat_to_proto(row: HeartbeatRow) -> common_pb2.Heartbeat:
    m = row.metrics

    def num(key: str) -> int:
        v = m.get(key)
        return int(v) if isinstance(v, int | float) and not isinstance(v, bool) else 0

    cost = m.get("cost_usd")
    msg = common_pb2.Heartbeat(
        container_id=row.container_id, cpu_percent=row.cpu_percent,
        memory_bytes=row.memory_bytes, disk_bytes=row.disk_bytes, agent_alive=row.agent_alive,
        usage=common_pb2.Usage(
            turns=num("turns"), input_tokens=num("input_tokens"),
            output_tokens=num("output_tokens"),
            api_cost_micros=round(cost * 1_000_000) if isinstance(cost, int | float)
            and not isinstance(cost, bool) else 0))
    set_ts(msg.at, row.at)
    return msg


def orphan_to_proto(orphan: OrphanRow, known: ContainerRow | None) -> common_pb2.Container:
    """An orphan as a Container: the database's row if it knows it, else what the backend said."""
    if known is not None:
        return container_to_proto(known)
    msg = common_pb2.Container(
        id=orphan.container_id, backend=orphan.backend, backend_id=orphan.backend_id,
        state=common_pb2.CONTAINER_STATE_ORPHANED, health=common_pb2.HEALTH_UNKNOWN,
        reason=orphan.detail, cost_micros=orphan.cost_micros)
    set_ts(msg.created_at, orphan.first_seen_at)
    set_ts(msg.started_at, orphan.started_at)
    return msg


class ContainerServicer(containers_pb2_grpc.ContainerServiceServicer):
    def __init__(self, ctx: DaemonContext) -> None:
        self._ctx = ctx

    def _reconciler(self) -> Reconciler:
        return self._ctx.require_runtime().reconciler

    async def ListContainers(self, request: containers_pb2.ListContainersRequest,
                             context: grpc.aio.ServicerContext
                             ) -> containers_pb2.ListContainersResponse:
        """Containers newest first, then the orphans the database does not know (when
        the filters let them in), most recently seen first; a page token says which of
        the two the next page continues."""
        page = paging.page("containers", request.limit, request.page_token,
                           shape=(str, int, str), default=DEFAULT_LIMIT, maximum=MAX_LIMIT)
        states = [state_from_proto(s) for s in request.states]
        health = sorted({health_from_proto(h) for h in request.health})
        store = self._ctx.store
        task_id = ""
        if request.task_id.strip():
            task_id = (await store.tasks.get(request.task_id.strip())).id
        phase, at, ref = page.after if page.after else ("c", 0, "")
        if phase not in ("c", "o") or (phase == "o" and not str(ref).isdigit()):
            raise invalid("page_token: not a token this list gave", field="page_token")
        found: list[tuple[common_pb2.Container, paging.Key]] = []
        if phase == "c":
            rows = await store.containers.list(
                states=states, task_id=task_id or None, health=health, limit=page.limit + 1,
                after=(int(at), str(ref)) if page.after else None)
            found = [(container_to_proto(r), ("c", r.created_at, r.id)) for r in rows]
            phase, at, ref = "o", 0, ""  # the orphans come after the last container
        with_orphans = (not states or ContainerState.ORPHANED.value in states) and \
            not task_id and (not health or Health.UNKNOWN.value in health)
        if with_orphans and len(found) <= page.limit:
            after = (int(at), int(ref)) if ref else None
            for orphan in await store.orphans.list(limit=page.limit + 1 - len(found),
                                                   unknown_only=True, after=after):
                found.append((orphan_to_proto(orphan, None),
                               ("o", orphan.last_seen_at, str(orphan.id))))
        sent, next_token = page.answer(found, lambda item: item[1])
        return containers_pb2.ListContainersResponse(containers=[m for m, _ in sent],
                                                     next_page_token=next_token)

    async def GetContainer(self, request: containers_pb2.GetContainerRequest,
                           context: grpc.aio.ServicerContext
                           ) -> containers_pb2.GetContainerResponse:
        ref = request.container_id.strip()
        if not ref:
            raise ParheliaError("E102", "container_id is required", field="container_id")
        store = self._ctx.store
        row = await store.containers.get(ref)
        beats = await store.heartbeats.list(row.id, limit=RECENT_HEARTBEATS)
        return containers_pb2.GetContainerResponse(
            container=container_to_proto(row),
            recent_heartbeats=[heartbeat_to_proto(b) for b in beats])

    async def GetHealthSummary(self, request: containers_pb2.GetHealthSummaryRequest,
                               context: grpc.aio.ServicerContext
                               ) -> containers_pb2.HealthSummaryResponse:
        store = self._ctx.store
        live = await store.containers.live()
        by_health = {h.value: 0 for h in Health}
        by_state: dict[str, int] = {}
        for c in live:
            by_health[c.health] = by_health.get(c.health, 0) + 1
            by_state[c.state] = by_state.get(c.state, 0) + 1
        orphans = await store.orphans.list(limit=MAX_LIMIT)
        if orphans:
            by_state[ContainerState.ORPHANED.value] = len(orphans)
        attention = [container_to_proto(c) for c in live if c.health in ATTENTION]
        for orphan in orphans:
            known = await store.containers.find(orphan.container_id) \
                if orphan.container_id else None
            attention.append(orphan_to_proto(orphan, known))
        return containers_pb2.HealthSummaryResponse(by_health=by_health, by_state=by_state,
                                                    orphans=len(orphans), attention=attention)

    async def WatchContainers(self, request: containers_pb2.WatchContainersRequest,
                              context: grpc.aio.ServicerContext
                              ) -> AsyncIterator[containers_pb2.ContainerUpdate]:
        """Every committed container or health event, with the container as it is now."""
        states = {state_from_proto(s) for s in request.states}
        store = self._ctx.store
        with self._ctx.bus.subscribe(EventFilter(types=WATCHED_TYPES)) as sub:
            async for event in sub:
                if not event.container_id:
                    continue
                row = await store.containers.find(event.container_id)
                update = containers_pb2.ContainerUpdate(event=event_to_proto(event))
                if row is not None:
                    if states and row.state not in states:
                        continue
                    update.container.CopyFrom(container_to_proto(row))
                elif states and ContainerState.ORPHANED.value not in states:
                    continue
                yield update
            if sub.ended_because == "slow":
                raise ParheliaError("E500", "the watch fell behind and was dropped; "
                                            "watch again")

    async def TerminateContainer(self, request: containers_pb2.TerminateContainerRequest,
                                 context: grpc.aio.ServicerContext) -> common_pb2.Container:
        ref = request.container_id.strip()
        if not ref:
            raise ParheliaError("E102", "container_id is required", field="container_id")
        row = await self._reconciler().terminate_container(ref)
        return container_to_proto(row)
