"""The progress hub behind WatchOperation: reports from worker threads reach watchers in
order, merged; the end is always seen (also by a watcher that arrives late, or before
the call starts); an untagged or malformed id reports nowhere; nothing is kept after."""

from __future__ import annotations

import asyncio

from parhelia.progress import FILES
from parheliad.core.progress import ProgressHub, State

OP = "a" * 24


async def _collect(hub: ProgressHub, op_id: str) -> list[State]:
    return [state async for state in hub.watch(op_id)]


async def test_thread_reports_reach_a_watcher_merged_and_the_end_is_seen() -> None:
    hub = ProgressHub()
    watcher = asyncio.create_task(_collect(hub, OP))  # before the call starts
    await asyncio.sleep(0)
    with hub.track(OP) as tracker:
        tracker.phase("committing", FILES, 5000)

        def work() -> None:
            for done in range(1, 5001):
                tracker.report(done, 5000)

        await asyncio.to_thread(work)
    states = await asyncio.wait_for(watcher, 10)
    assert states[0].phase == "committing" and states[0].unit == FILES
    assert states[-1].finished and states[-1].done == 5000
    dones = [s.done for s in states]
    assert dones == sorted(dones)  # in order
    assert len(states) < 1000  # 5000 reports merged (one per 50 ms, the last always)
    assert (5000, 5000) in [(s.done, s.total) for s in states if not s.finished]


async def test_a_late_watcher_learns_the_call_finished() -> None:
    hub = ProgressHub()
    with hub.track(OP) as tracker:
        tracker.phase("restoring")
        tracker.report(10, 10)
    states = await asyncio.wait_for(_collect(hub, OP), 5)
    assert [s.finished for s in states] == [True]
    assert states[0].done == 10


async def test_the_end_is_seen_when_the_work_fails() -> None:
    hub = ProgressHub()
    watcher = asyncio.create_task(_collect(hub, OP))
    await asyncio.sleep(0)
    try:
        with hub.track(OP) as tracker:
            tracker.phase("verifying")
            raise ValueError("corrupt")
    except ValueError:
        pass
    states = await asyncio.wait_for(watcher, 5)
    assert states[-1].finished


async def test_untagged_and_malformed_ids_report_nowhere() -> None:
    hub = ProgressHub()
    for bad in ("", "short", "x" * 65, "a" * 20 + "\x1b[31m", "a" * 20 + "/../b"):
        with hub.track(bad) as tracker:
            tracker.phase("anything")
            tracker.report(1, 2)
    assert hub._ops == {}


async def test_a_watcher_that_leaves_before_any_call_leaves_nothing_behind() -> None:
    hub = ProgressHub()
    watcher = asyncio.create_task(_collect(hub, "b" * 30))
    await asyncio.sleep(0.01)
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    assert hub._ops == {}
