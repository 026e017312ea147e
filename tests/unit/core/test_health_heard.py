"""A heartbeat the backend's live channel carried counts even before the listener applied
it: the listener holds a batch back while it copies the checkpoint the batch announces
(a big one from Modal's volume can take longer than five heartbeat intervals), and a
worker that kept beating must not be buried as silent meanwhile."""

from __future__ import annotations

import dataclasses

from parheliad.config import Config
from parheliad.core.health import HealthMonitor
from parheliad.store.clock import now_us
from tests.unit.core.test_health_pause import running_container

SECOND = 1_000_000


class HeardBackend:
    """The one part of a backend the sweep asks: when its channel last carried a
    heartbeat of the container."""

    def __init__(self, heard_at: int | None) -> None:
        self.heard_at = heard_at

    def last_heard(self, container_id: str) -> int | None:
        return self.heard_at


def _monitor(store, backend: HeardBackend) -> HealthMonitor:  # noqa: ANN001
    cfg = dataclasses.replace(Config(), heartbeat=dataclasses.replace(
        Config().heartbeat, interval_seconds=1.0))
    monitor = HealthMonitor(store, {"modal": backend},  # type: ignore[dict-item]
                            lambda: cfg, listener=None,  # type: ignore[arg-type]
                            settler=None)
    monitor._last_sweep_us = now_us() - SECOND  # sweeping on time
    return monitor


async def test_a_heartbeat_heard_but_not_yet_applied_keeps_the_worker_healthy(store) -> None:
    cid = await running_container(store, silent_for_s=4, backend="modal",
                                backend_id="sb-1")
    monitor = _monitor(store, HeardBackend(heard_at=now_us()))
    assert await monitor.sweep() == []
    c = await store.containers.get(cid)
    assert c.health == "healthy" and c.consecutive_failures == 0


async def test_silence_on_the_live_channel_too_is_still_counted(store) -> None:
    cid = await running_container(store, silent_for_s=4, backend="modal",
                                backend_id="sb-1")
    monitor = _monitor(store, HeardBackend(heard_at=now_us() - 3 * SECOND))
    changes = await monitor.sweep()
    assert [ch.after for ch in changes] == ["degraded"]
    assert (await store.containers.get(cid)).consecutive_failures == 2


async def test_nothing_heard_leaves_the_applied_heartbeats_alone(store) -> None:
    cid = await running_container(store, silent_for_s=4, backend="modal",
                                backend_id="sb-1")
    monitor = _monitor(store, HeardBackend(heard_at=None))
    changes = await monitor.sweep()
    assert [ch.after for ch in changes] == ["unhealthy"]
    assert (await store.containers.get(cid)).health == "unhealthy"
