"""Live events for the MCP bridge: the daemon's watch stream behind bounded buffers.

One mechanism, :class:`Feed` (a ``WatchEvents`` stream read by a thread into a bounded
buffer), serves two front doors (docs/adr/0012-mcp-bridge.md):

- **tool subscriptions** (``parhelia_events_subscribe`` / ``_stream`` / ``_unsubscribe``),
  for clients that only call tools: a named filter with its own feed; ``events_stream``
  is a bounded long-poll on it;
- **resource subscriptions** (``resources/subscribe`` on ``parhelia://tasks/{id}`` or
  ``parhelia://events?...``, or a ``subscriptions/listen`` stream naming such URIs): each
  event the feed receives makes the bridge notify the client that the URI changed
  (coalesced: one pending notification per subscription until it is sent).

The event log stays the source of truth: what a client reads (``events_stream``, a
resource read) comes from the daemon after its cursor, so a feed whose buffer overflowed
loses nothing but the wake-up; the buffer only bounds the memory a slow or absent
client can pin. A subscription nobody uses expires: a tool subscription after
:data:`IDLE_SECONDS` without an ``events_stream`` call, a resource subscription after an
update notification goes unread (no ``resources/read`` of its URI) that long; past
:data:`MAX_SUBSCRIPTIONS` the least recently used one is closed.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from parhelia_cli.convert import to_dict
from parhelia_cli.errors import CliError, invalid

if TYPE_CHECKING:
    from parhelia.v1 import common_pb2
    from parhelia_cli.api import Api

log = logging.getLogger("parhelia.mcp")

Sender = Callable[[str], Awaitable[Any]]
"""Tells a client that the resource at a URI changed."""

FEED_CAPACITY = 256
"""Events one subscription buffers before dropping the oldest."""
MAX_SUBSCRIPTIONS = 32
IDLE_SECONDS = 600.0
WAIT_MAX_SECONDS = 60
"""The longest one ``parhelia_events_stream`` call waits for new events."""
_RACE_SLICE = 0.5
"""A fresh watch may not be registered yet: the log is read again after this long."""


class Feed:
    """A ``WatchEvents`` stream read by a daemon thread into a bounded buffer."""

    def __init__(self, api: Api, flt: common_pb2.EventFilter, *,
                 capacity: int = FEED_CAPACITY, backlog: int = 0,
                 on_event: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._cond = threading.Condition()
        self._buffer: deque[dict[str, Any]] = deque(maxlen=capacity)
        self.dropped = 0
        self.ended = False
        self.error: CliError | None = None
        self._on_event = on_event
        self._stream = api.events.watch(flt, backlog=backlog)
        self._thread = threading.Thread(target=self._run, name="parhelia-mcp-feed",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in self._stream:
                item = to_dict(event)
                with self._cond:
                    if len(self._buffer) == self._buffer.maxlen:
                        self.dropped += 1
                    self._buffer.append(item)
                    self._cond.notify_all()
                if self._on_event is not None:
                    self._on_event(item)
        except CliError as exc:
            self.error = exc
        except Exception as exc:  # a reader thread must say why it stopped
            log.exception("event feed stopped")
            self.error = CliError("E900", f"the event watch stopped: {exc}")
        finally:
            with self._cond:
                self.ended = True
                self._cond.notify_all()

    def newest_id(self) -> int:
        with self._cond:
            return self._buffer[-1]["id"] if self._buffer else 0

    def pending(self, after_id: int) -> int:
        """How many buffered events are newer than ``after_id``."""
        with self._cond:
            return sum(1 for e in self._buffer if (e["id"] or 0) > after_id)

    def wait_after(self, after_id: int, timeout: float) -> bool:
        """Wait up to ``timeout`` s for an event newer than ``after_id``; False on timeout
        or when the watch ended."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (self._buffer and (self._buffer[-1]["id"] or 0) > after_id):
                left = deadline - time.monotonic()
                if self.ended or left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def discard_through(self, after_id: int) -> None:
        """Forget what the client has seen (keeps the buffer to what it has not)."""
        with self._cond:
            while self._buffer and (self._buffer[0]["id"] or 0) <= after_id:
                self._buffer.popleft()

    def close(self) -> None:
        """Cancel the watch (from any thread); the reader thread then ends."""
        self._stream.close()


def pull(api: Api, flt: common_pb2.EventFilter, limit: int) -> tuple[list[dict[str, Any]],
                                                                        bool]:
    """The oldest ``limit`` events matching ``flt`` (after its ``after_id``), read from
    the log, and whether more are already there."""
    found: list[dict[str, Any]] = []
    with contextlib.closing(api.events.export(flt)) as stream:
        for event in stream:
            if len(found) == limit:
                return found, True
            found.append(to_dict(event))
    return found, False


def long_poll(api: Api, flt: common_pb2.EventFilter, limit: int, wait: float,
              feed: Feed | None = None) -> tuple[list[dict[str, Any]], bool]:
    """:func:`pull`, waiting up to ``wait`` s for a first event when there is none yet.

    ``feed`` (a subscription's) wakes the wait; without one a watch is opened for this
    call only. The log is read again after each wake-up and once more at the end, so an
    event committed before the watch was registered is found too."""
    found, more = pull(api, flt, limit)
    if found or wait <= 0:
        return found, more
    own = feed is None
    watch = Feed(api, with_cursor(flt, 0), capacity=1) if own else feed
    assert watch is not None
    try:
        deadline = time.monotonic() + wait
        first = True
        while not found:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            woke = watch.wait_after(flt.after_id, min(left, _RACE_SLICE) if first else left)
            first = False
            found, more = pull(api, flt, limit)
            if watch.ended and not woke and not found:
                if watch.error is not None:
                    raise watch.error
                break
    finally:
        if own:
            watch.close()
    return found, more


def with_cursor(flt: common_pb2.EventFilter, after_id: int) -> common_pb2.EventFilter:
    """A copy of ``flt`` that starts after event ``after_id``."""
    copy = type(flt)()
    copy.CopyFrom(flt)
    copy.after_id = after_id
    return copy


@dataclass
class Subscription:
    id: str
    filter: common_pb2.EventFilter
    feed: Feed
    after_id: int
    """The newest event's id when it was opened: what it delivers comes after."""
    uri: str = ""
    created: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    unread_since: float | None = None
    """A resource subscription: when an update went out that no read has answered."""
    notify_pending: bool = False


class Subscriptions:
    """The open subscriptions of one bridge (thread-safe)."""

    def __init__(self, api: Api, *, max_count: int = MAX_SUBSCRIPTIONS,
                 idle_seconds: float = IDLE_SECONDS, capacity: int = FEED_CAPACITY) -> None:
        self._api = api
        self._max = max_count
        self._idle = idle_seconds
        self._capacity = capacity
        self._lock = threading.Lock()
        self._subs: dict[str, Subscription] = {}

    def open(self, flt: common_pb2.EventFilter, *, uri: str = "",
             notify: Callable[[Subscription], None] | None = None) -> Subscription:
        """A new subscription to the events matching ``flt`` (a resource one when ``uri``
        is given: ``notify`` is called, from the feed's thread, as events arrive)."""
        self.expire()
        sub_id = "sub-" + secrets.token_hex(6)
        holder: list[Subscription] = []

        def on_event(_event: dict[str, Any]) -> None:
            if notify is not None and holder:
                notify(holder[0])

        # From the newest matching event on, with the daemon's backlog after it: an event
        # that commits before the daemon has registered the watch is still delivered (the
        # client may act as soon as its subscribe is answered, and expect the update).
        newest = self._api.events.list(limit=1).events
        after_id = newest[-1].id if newest else 0
        feed = Feed(self._api, with_cursor(flt, after_id), capacity=self._capacity,
                    backlog=self._capacity, on_event=on_event if notify is not None else None)
        sub = Subscription(sub_id, flt, feed, after_id, uri=uri)
        holder.append(sub)
        evicted: list[Subscription] = []
        with self._lock:
            self._subs[sub_id] = sub
            while len(self._subs) > self._max:
                oldest = min(self._subs.values(), key=lambda s: s.last_used)
                evicted.append(self._subs.pop(oldest.id))
        for old in evicted:
            log.info("subscription %s closed: more than %d open", old.id, self._max)
            old.feed.close()
        return sub

    def get(self, sub_id: str) -> Subscription:
        """The open subscription ``sub_id`` (E101 when unknown or expired)."""
        self.expire()
        with self._lock:
            sub = self._subs.get(sub_id)
            if sub is None or sub.uri:
                raise invalid(f"subscription_id: no open subscription {sub_id!r}; they "
                              f"expire after {IDLE_SECONDS / 60:g} minutes without a "
                              "parhelia_events_stream call; subscribe again")
            sub.last_used = time.monotonic()
            return sub

    def by_uri(self, uri: str) -> list[Subscription]:
        with self._lock:
            return [s for s in self._subs.values() if s.uri == uri]

    def read(self, uri: str) -> None:
        """A client read ``uri``: its subscriptions are in use."""
        now = time.monotonic()
        with self._lock:
            for s in self._subs.values():
                if s.uri == uri:
                    s.last_used, s.unread_since = now, None

    def close(self, sub_id: str) -> bool:
        with self._lock:
            sub = self._subs.pop(sub_id, None)
        if sub is not None:
            sub.feed.close()
        return sub is not None

    def close_uri(self, uri: str) -> int:
        with self._lock:
            gone = [self._subs.pop(s.id) for s in list(self._subs.values()) if s.uri == uri]
        for sub in gone:
            sub.feed.close()
        return len(gone)

    def expire(self) -> None:
        """Close the subscriptions nobody uses (see the module docstring)."""
        now = time.monotonic()
        with self._lock:
            stale = [s for s in self._subs.values()
                     if (not s.uri and now - s.last_used > self._idle)
                     or (s.uri and s.unread_since is not None
                         and now - s.unread_since > self._idle)]
            for s in stale:
                del self._subs[s.id]
        for s in stale:
            log.info("subscription %s expired", s.id)
            s.feed.close()

    def close_all(self) -> None:
        with self._lock:
            subs, self._subs = list(self._subs.values()), {}
        for s in subs:
            s.feed.close()


class Notifier:
    """Sends the resource-updated notifications of feed threads from the event loop:
    :meth:`run` drains a bounded queue in the server's task group; :meth:`updated` is
    called from any thread and never blocks (a full queue drops the wake-up: the
    subscription's next event sends one again). ``send`` is how the client hears it:
    ``session.send_resource_updated`` (``resources/subscribe``, protocol 2025-11-25 and
    earlier) or a publish on the SDK's subscription bus (``subscriptions/listen``,
    2026-07-28)."""

    def __init__(self) -> None:
        self._send: Any = None
        self._token: Any = None

    @property
    def running(self) -> bool:
        return self._send is not None

    async def run(self) -> None:
        import anyio
        import anyio.lowlevel

        send, recv = anyio.create_memory_object_stream[tuple[Sender, Subscription]](
            MAX_SUBSCRIPTIONS * 2)
        self._token, self._send = anyio.lowlevel.current_token(), send
        try:
            async with recv:
                async for deliver, sub in recv:
                    sub.notify_pending = False
                    try:
                        await deliver(sub.uri)
                    except Exception as exc:  # the client went away: nothing to notify
                        log.info("resource update for %s not sent: %s", sub.uri, exc)
        finally:
            self._send = None

    def updated(self, deliver: Sender, sub: Subscription) -> None:
        import anyio
        import anyio.from_thread

        send = self._send
        if send is None or sub.notify_pending:
            return
        sub.notify_pending = True
        if sub.unread_since is None:
            sub.unread_since = time.monotonic()
        try:
            anyio.from_thread.run_sync(send.send_nowait, (deliver, sub), token=self._token)
        except Exception:  # full queue, or the loop has finished
            sub.notify_pending = False
