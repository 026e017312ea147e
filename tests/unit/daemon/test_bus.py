"""The event bus: fed by commits only, filtered, slow subscribers dropped, clean close."""

from __future__ import annotations

import asyncio
from pathlib import Path

from parheliad.core.events import SHUTDOWN, SLOW, EventBus
from parheliad.store import EventFilter, Tx, open_store


async def test_commits_feed_subscribers_and_rollbacks_do_not(tmp_path: Path) -> None:
    bus = EventBus()
    store = await open_store(tmp_path / "db", on_commit=bus.publish)
    try:
        with bus.subscribe(EventFilter(types=("task_created",))) as sub:
            def rolled_back(tx: Tx) -> None:
                tx.events.append("task_created", "never")
                raise ValueError("no")

            await asyncio.gather(store.write(rolled_back), return_exceptions=True)
            await store.events.append("task_failed", "filtered out")
            made = await store.events.append("task_created", "kept")
            got = await asyncio.wait_for(sub.__anext__(), 5)
            assert got == made
            assert sub._queue.empty()
    finally:
        await store.close()


async def test_slow_subscriber_is_dropped_not_blocking(tmp_path: Path) -> None:
    bus = EventBus(queue_size=5)
    store = await open_store(tmp_path / "db", on_commit=bus.publish)
    try:
        slow = bus.subscribe()
        fast = bus.subscribe()
        received: list[int] = []

        async def drain() -> None:
            async for ev in fast:
                received.append(ev.id)

        consumer = asyncio.create_task(drain())
        for i in range(20):  # the writer never waits for the slow one
            await store.events.append("task_created", str(i))
        got = [ev.id async for ev in slow]
        assert len(got) == 5 and slow.ended_because == SLOW and slow.last_id == got[-1]
        assert bus.subscriber_count == 1
        bus.close()
        await asyncio.wait_for(consumer, 5)
        assert len(received) == 20 and fast.ended_because == SHUTDOWN
    finally:
        await store.close()


async def test_subscribe_after_close_ends_at_once() -> None:
    bus = EventBus()
    bus.close()
    sub = bus.subscribe()
    assert [e async for e in sub] == [] and sub.ended_because == SHUTDOWN
