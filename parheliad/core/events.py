"""The in-process event bus: committed events fan out to live subscribers.

The store's writer calls :meth:`EventBus.publish` after each commit (never before),
so a watcher sees exactly the events that are durable, in id order, with no polling.
Each subscriber has a bounded queue; one that falls behind is dropped — its stream
ends with reason ``"slow"`` and the last id it received, so it can resume with
``after_id`` — rather than ever blocking the writer. :meth:`EventBus.close` ends every
stream with reason ``"shutdown"``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import structlog

from parheliad.store import EventFilter, EventRow

log = structlog.get_logger(__name__)

DEFAULT_QUEUE_SIZE = 1000

SHUTDOWN = "shutdown"
SLOW = "slow"
CLOSED = "closed"


@dataclass(frozen=True)
class _End:
    reason: str


class Subscription:
    """An async iterator of matching events; ``ended_because`` says why it stopped."""

    def __init__(self, bus: EventBus, flt: EventFilter, maxsize: int) -> None:
        self._bus = bus
        self.filter = flt
        self._queue: asyncio.Queue[EventRow | _End] = asyncio.Queue(maxsize + 1)
        self._maxsize = maxsize
        self.ended_because: str | None = None
        self.last_id = 0
        """Id of the last event handed out (for resuming with ``after_id``)."""

    def _offer(self, event: EventRow) -> bool:
        """Queue ``event`` if it matches; False when the subscriber is too slow."""
        if not self.filter.matches(event):
            return True
        if self._queue.qsize() >= self._maxsize:
            return False
        self._queue.put_nowait(event)
        return True

    def _end(self, reason: str) -> None:
        # One slot is reserved so the end marker always fits.
        self._queue.put_nowait(_End(reason))

    def __aiter__(self) -> AsyncIterator[EventRow]:
        return self

    async def __anext__(self) -> EventRow:
        if self.ended_because is not None:
            raise StopAsyncIteration
        item = await self._queue.get()
        if isinstance(item, _End):
            self.ended_because = item.reason
            raise StopAsyncIteration
        self.last_id = item.id
        return item

    def close(self) -> None:
        """Unsubscribe (idempotent); safe to call from a ``finally``."""
        self._bus._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self._subscribers: set[Subscription] = set()
        self._queue_size = queue_size
        self._closed = False
        self.published = 0

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def subscribe(self, flt: EventFilter | None = None,
                  maxsize: int | None = None) -> Subscription:
        """A new subscription; events committed from now on that match ``flt`` arrive.

        Use it as a context manager (or call ``close()``) so it is removed when done.
        """
        sub = Subscription(self, flt or EventFilter(), maxsize or self._queue_size)
        if self._closed:
            sub._end(SHUTDOWN)
        else:
            self._subscribers.add(sub)
        return sub

    def publish(self, events: Iterable[EventRow]) -> None:
        """Hand committed events to every subscriber; never blocks."""
        if self._closed:
            return
        for event in events:
            self.published += 1
            for sub in list(self._subscribers):
                if not sub._offer(event):
                    log.warning("events.subscriber_dropped", last_id=sub.last_id,
                                queued=sub._maxsize)
                    self._subscribers.discard(sub)
                    sub._end(SLOW)

    def close(self, reason: str = SHUTDOWN) -> None:
        """End every subscription (they finish after draining what is queued)."""
        self._closed = True
        for sub in list(self._subscribers):
            sub._end(reason)
        self._subscribers.clear()

    def _remove(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)
