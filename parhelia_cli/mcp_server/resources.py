"""What a client can read and subscribe to: a task (``parhelia://tasks/ID``) and the
events of a query (``parhelia://events?...``), with ``resources/subscribe`` and
``subscriptions/listen`` backed by a daemon watch (parhelia_cli.mcp_events)."""

from __future__ import annotations

from typing import Any

import anyio
from mcp import types as mcp_types
from mcp.server.subscriptions import ListenHandler, ResourceUpdated
from mcp.shared.exceptions import MCPError as McpError

from parhelia import events as event_catalogue
from parhelia_cli.api import Api
from parhelia_cli.convert import task_dict, to_dict
from parhelia_cli.errors import invalid
from parhelia_cli.mcp_server.bridge import Bridge
from parhelia_cli.mcp_server.errors import ParheliaMCP, as_mcp_error
from parhelia_cli.mcp_server.schema import parse_event_types

TASK_RESOURCE = "parhelia://tasks/{task_id}"
EVENTS_RESOURCE = "parhelia://events{?task_id,session_id,container_id,types,level}"
_EVENT_QUERY_KEYS = ("task_id", "session_id", "container_id", "types", "level")


def query_of(values: dict[str, Any]) -> str:
    from urllib.parse import urlencode

    return urlencode({k: values[k] for k in _EVENT_QUERY_KEYS if values.get(k)})


def resource_filter(api: Api, uri: str) -> Any:
    """The event filter a resource URI stands for: a task's events, or the query of
    ``parhelia://events?...`` (E101 for anything else; E201 for an unknown task)."""
    from urllib.parse import parse_qs, urlsplit

    from parhelia_cli.api import event_filter

    parts = urlsplit(uri)
    if parts.scheme != "parhelia":
        raise invalid(f"uri: {uri!r} is not a parhelia:// resource")
    if parts.netloc == "tasks" and parts.path.strip("/") and not parts.query:
        return event_filter(task_id=api.tasks.get(parts.path.strip("/")).id)
    if parts.netloc != "events" or parts.path not in ("", "/"):
        raise invalid(f"uri: {uri!r} is neither parhelia://tasks/ID nor "
                      "parhelia://events?...")
    query = parse_qs(parts.query, keep_blank_values=False)
    unknown = sorted(set(query) - set(_EVENT_QUERY_KEYS))
    if unknown:
        raise invalid(f"uri: unknown query parameter(s) {', '.join(unknown)}; use "
                      + ", ".join(_EVENT_QUERY_KEYS))
    one = {k: v[-1] for k, v in query.items()}
    level = one.get("level")
    if level is not None and level not in event_catalogue.LEVELS:
        raise invalid(f"level: must be one of {', '.join(event_catalogue.LEVELS)}")
    types = parse_event_types([t for t in (one.get("types") or "").split(",") if t])
    return event_filter(types=types, min_level=level, task_id=one.get("task_id"),
                        session_id=one.get("session_id"),
                        container_id=one.get("container_id"))



def register(mcp: ParheliaMCP, bridge: Bridge) -> None:
    """The resources and the subscription handlers, on ``mcp``."""
    api = bridge.api
    subscriptions = bridge.subscriptions

    @mcp.resource(TASK_RESOURCE, name="task", mime_type="application/json",
                  description="A task as parhelia_task_show returns it; subscribe to be "
                              "notified (notifications/resources/updated) as it changes.")
    def task_resource(task_id: str) -> dict[str, Any]:
        return task_dict(api.tasks.get(task_id))

    @mcp.resource(EVENTS_RESOURCE, name="events", mime_type="application/json",
                  description="The newest 50 events matching the query (task_id, session_id, "
                              "container_id, types as a comma-separated list, level), oldest "
                              "first; subscribe to be notified as new ones arrive.")
    def events_resource(task_id: str | None = None, session_id: str | None = None,
                        container_id: str | None = None, types: str | None = None,
                        level: str | None = None) -> dict[str, Any]:
        flt = resource_filter(api, f"parhelia://events?{query_of(locals())}")
        return {"events": [to_dict(e) for e in api.events.list(flt).events]}

    async def subscribe(ctx: Any, params: mcp_types.SubscribeRequestParams
                        ) -> mcp_types.EmptyResult:
        uri = str(params.uri)
        if not bridge.notifier.running:
            raise McpError(mcp_types.INTERNAL_ERROR, "resource subscriptions need the "
                                                     "stdio server's notifier")
        deliver = ctx.session.send_resource_updated

        def open_it() -> None:
            subscriptions.open(resource_filter(api, uri), uri=uri,
                               notify=lambda sub: bridge.notifier.updated(deliver, sub))

        await as_mcp_error(open_it)
        return mcp_types.EmptyResult()

    async def unsubscribe(ctx: Any, params: mcp_types.UnsubscribeRequestParams
                          ) -> mcp_types.EmptyResult:
        await anyio.to_thread.run_sync(subscriptions.close_uri, str(params.uri))
        return mcp_types.EmptyResult()

    bus = mcp._subscriptions
    listen = ListenHandler(bus)

    async def publish(uri: str) -> None:
        await bus.publish(ResourceUpdated(uri=uri))

    async def on_listen(ctx: Any, params: mcp_types.SubscriptionsListenRequestParams) -> Any:
        """``subscriptions/listen`` (protocol 2026-07-28): the SDK's stream, with a daemon
        watch for each parhelia:// URI it names, closed when the stream ends."""
        uris = [u for u in params.notifications.resource_subscriptions or ()
                if u.startswith("parhelia://")]

        def open_all() -> list[str]:
            opened: list[str] = []
            try:
                for uri in uris:
                    opened.append(subscriptions.open(
                        resource_filter(api, uri), uri=uri,
                        notify=lambda s: bridge.notifier.updated(publish, s)).id)
            except BaseException:
                for sub_id in opened:
                    subscriptions.close(sub_id)
                raise
            return opened

        opened: list[str] = await as_mcp_error(open_all) if uris else []
        try:
            return await listen(ctx, params)
        finally:
            for sub_id in opened:
                subscriptions.close(sub_id)

    lowlevel = mcp._lowlevel_server
    lowlevel.add_request_handler("subscriptions/listen",
                                 mcp_types.SubscriptionsListenRequestParams, on_listen)
    lowlevel.add_request_handler("resources/subscribe", mcp_types.SubscribeRequestParams,
                                 subscribe)
    lowlevel.add_request_handler("resources/unsubscribe",
                                 mcp_types.UnsubscribeRequestParams, unsubscribe)
    mcp.on_read = subscriptions.read
