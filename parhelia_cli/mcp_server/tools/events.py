"""Event tools: list, since (the pull form), replay, and subscriptions (subscribe,
stream: a long-poll on a daemon watch, unsubscribe)."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from pydantic import Field

from parhelia_cli import views
from parhelia_cli.convert import to_dict
from parhelia_cli.errors import invalid
from parhelia_cli.flows.events import build_filter
from parhelia_cli.mcp_server import live
from parhelia_cli.mcp_server.schema import (
    READ,
    EventTypes,
    Limit,
    MinLevel,
    OfContainer,
    OfSession,
    OfTask,
    PageSize,
    PageToken,
    acts,
    parse_event_types,
    parse_instant,
)
from parhelia_cli.mcp_server.tools import Registrar


def register(tools: Registrar) -> None:
    """The events tools, on ``tools``."""
    tool, api, subscriptions = tools.tool, tools.api, tools.subscriptions

    @tool("parhelia_events_list", READ)
    def events_list(
        types: EventTypes = None,
        level: MinLevel = None,
        since: Annotated[str | None, Field(description=(
            "From: a duration ago ('30m', '2d', '1w') or an RFC 3339 timestamp."))] = None,
        until: Annotated[str | None, Field(description=(
            "Until: a duration ago or an RFC 3339 timestamp."))] = None,
        task_id: OfTask = None,
        session_id: OfSession = None,
        container_id: OfContainer = None,
        limit: Limit = None,
        page_token: PageToken = None,
    ) -> dict[str, Any]:
        """The newest events matching the filters (default 50), returned oldest first;
        each has a global increasing id usable with parhelia_events_since;
        next_page_token (null when there are none older) asks for the events before
        these. Same as `parhelia events list --json`."""
        flt = build_filter((parse_event_types(types),), level, parse_instant("since", since),
                           parse_instant("until", until), task_id, session_id, container_id)
        resp = api.events.list(flt, limit=limit, page_token=page_token or "")
        return views.event_page(resp)

    @tool("parhelia_events_since", READ)
    def events_since(
        after_id: Annotated[int, Field(ge=0, le=2**63 - 1, description=(
            "Return events with an id greater than this: 0 for the beginning, else the "
            "next_after_id of your previous call (or an event id you saw)."))],
        types: EventTypes = None,
        level: MinLevel = None,
        task_id: OfTask = None,
        session_id: OfSession = None,
        container_id: OfContainer = None,
        limit: PageSize = 100,
    ) -> dict[str, Any]:
        """The pull form of an event subscription (a tool call cannot stream): the
        oldest `limit` events after `after_id` that match the filters, oldest first,
        with next_after_id to pass to the next call and has_more when more are already
        there. Call it again later to receive what happened since; nothing is skipped or
        repeated. (`parhelia events watch` is the streaming form.)"""
        flt = _filter(types, level, task_id, session_id, container_id, after_id)
        return _page(*live.pull(api, flt, limit), after_id)

    @tool("parhelia_events_replay", READ)
    def events_replay(
        container_id: Annotated[str, Field(min_length=1, max_length=200, description=(
            "Container id (c-...) or prefix; a task id replays its current (or last) "
            "container."))],
        from_start: Annotated[bool, Field(description=(
            "The container's whole history (default: its newest 50 events)."))] = False,
        since: Annotated[str | None, Field(description=(
            "From: a duration ago ('30m', '2d') or an RFC 3339 timestamp."))] = None,
        limit: Annotated[int, Field(ge=1, le=10_000, description=(
            "At most this many events (the first ones of the replay)."))] = 1000,
    ) -> dict[str, Any]:
        """A container's history in commit order, each event as `parhelia events replay
        --json` prints it (one per line there, a list here), with truncated when more
        were left out."""
        if from_start and since:
            raise invalid("from_start and since contradict each other")
        found: list[dict[str, Any]] = []
        truncated = False
        with contextlib.closing(api.events.replay(
                container_id, from_start=from_start,
                since=parse_instant("since", since))) as stream:
            for event in stream:
                if len(found) == limit:
                    truncated = True
                    break
                found.append(to_dict(event))
        return {"events": found, "truncated": truncated}

    @tool("parhelia_events_subscribe", acts(destructive=False, idempotent=False,
                                            title="Subscribe to events"))
    def events_subscribe(
        types: EventTypes = None,
        level: MinLevel = None,
        task_id: OfTask = None,
        session_id: OfSession = None,
        container_id: OfContainer = None,
    ) -> dict[str, Any]:
        """Start following the events that match these filters: the bridge keeps a live
        watch on the daemon (with a bounded buffer) and parhelia_events_stream waits on it
        for what comes next. Returns subscription_id and after_id (the newest event id
        now, the cursor to start from). Expires after 10 minutes without a
        parhelia_events_stream call; parhelia_events_unsubscribe ends it sooner."""
        flt = _filter(types, level, task_id, session_id, container_id)
        sub = subscriptions.open(flt)
        return {"subscription_id": sub.id, "after_id": sub.after_id,
                "filter": _criteria(flt), "expires_after_idle_seconds": live.IDLE_SECONDS}

    @tool("parhelia_events_stream", READ)
    def events_stream(
        after_id: Annotated[int, Field(ge=0, le=2**63 - 1, description=(
            "Return events with an id greater than this: the after_id of "
            "parhelia_events_subscribe, then the next_after_id of your previous call."))],
        subscription_id: Annotated[str | None, Field(max_length=100, description=(
            "A subscription from parhelia_events_subscribe (its filters apply); omit it "
            "to give filters here."))] = None,
        wait_seconds: Annotated[int, Field(ge=0, le=live.WAIT_MAX_SECONDS, description=(
            "When nothing is there yet, wait up to this long for the first new event."))
                                ] = 30,
        types: EventTypes = None,
        level: MinLevel = None,
        task_id: OfTask = None,
        session_id: OfSession = None,
        container_id: OfContainer = None,
        limit: PageSize = 100,
    ) -> dict[str, Any]:
        """The long-poll form of `parhelia events watch`: the oldest `limit` matching
        events after `after_id`, waiting up to `wait_seconds` when there are none yet;
        with next_after_id for the next call and has_more. Nothing is skipped or repeated
        (events are read from the daemon's log after the cursor)."""
        feed = None
        if subscription_id is not None:
            if types or level or task_id or session_id or container_id:
                raise invalid("a subscription has its filters; give subscription_id or "
                              "filters, not both")
            sub = subscriptions.get(subscription_id)
            flt, feed = live.with_cursor(sub.filter, after_id), sub.feed
        else:
            flt = _filter(types, level, task_id, session_id, container_id, after_id)
        found, more = live.long_poll(api, flt, limit, wait_seconds, feed)
        page = _page(found, more, after_id)
        if feed is not None:
            feed.discard_through(page["next_after_id"])
        return page

    @tool("parhelia_events_unsubscribe", acts(destructive=False, idempotent=True,
                                              title="End an event subscription"))
    def events_unsubscribe(
        subscription_id: Annotated[str, Field(min_length=1, max_length=100, description=(
            "The subscription_id parhelia_events_subscribe returned."))],
    ) -> dict[str, Any]:
        """End an event subscription (its daemon watch is closed). Unknown or expired ids
        are not an error: closed says whether this call closed it."""
        return {"subscription_id": subscription_id,
                "closed": subscriptions.close(subscription_id)}


def _filter(types: list[str] | None, level: str | None, task_id: str | None,
            session_id: str | None, container_id: str | None, after_id: int = 0) -> Any:
    """The EventFilter of the event tools' filters (checked as `events list` checks them)."""
    return build_filter((parse_event_types(types),), level, None, None, task_id, session_id,
                        container_id, after_id)


def _page(found: list[dict[str, Any]], more: bool, after_id: int) -> dict[str, Any]:
    """A page of events after a cursor: the events, the next cursor, whether more wait."""
    return {"events": found, "next_after_id": found[-1]["id"] if found else after_id,
            "has_more": more}


def _criteria(flt: Any) -> dict[str, Any]:
    """A filter as the JSON the tools take (what is set)."""
    data = to_dict(flt)
    return {k: v for k, v in data.items() if v not in (None, [], 0) and k != "after_id"}

