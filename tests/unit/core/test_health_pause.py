"""The health sweep does not mistake the daemon's own pause (a laptop asleep) for its
workers' silence — it would otherwise kill every live worker at wake-up."""

from __future__ import annotations

import dataclasses

from parheliad.config import Config
from parheliad.core.health import HealthMonitor
from parheliad.store.clock import now_us

SECOND = 1_000_000


async def running_container(store, silent_for_s: float, backend: str = "local",  # noqa: ANN001
                            backend_id: str = "1@1.0") -> str:
    """A running container whose last applied heartbeat is ``silent_for_s`` old."""
    def unit(tx):  # noqa: ANN001, ANN202
        task = tx.tasks.insert(dict(prompt="p", cpu=1.0, memory_mb=512, timeout_seconds=600,
                                    max_turns=5, permission_mode="acceptEdits",
                                    backend=backend))
        c = tx.containers.insert(task_id=task.id, backend=backend, backend_id=backend_id,
                                 state="running", health="healthy",
                                 started_at=now_us() - 600 * SECOND,
                                 last_heartbeat_at=now_us() - int(silent_for_s * SECOND))
        return c.id

    return await store.write(unit)


def _monitor(store) -> HealthMonitor:  # noqa: ANN001
    cfg = dataclasses.replace(Config(), heartbeat=dataclasses.replace(
        Config().heartbeat, interval_seconds=1.0))
    return HealthMonitor(store, {}, lambda: cfg, listener=None,  # type: ignore[arg-type]
                         settler=None)


async def test_silence_spanning_the_daemons_own_pause_is_not_counted(store) -> None:
    cid = await running_container(store, silent_for_s=60)
    monitor = _monitor(store)
    monitor._last_sweep_us = now_us() - 60 * SECOND  # the daemon slept for a minute
    assert await monitor.sweep() == []
    c = await store.containers.get(cid)
    assert c.health == "healthy" and c.state == "running"


async def test_real_silence_is_still_detected(store) -> None:
    cid = await running_container(store, silent_for_s=4)
    monitor = _monitor(store)
    monitor._last_sweep_us = now_us() - SECOND  # sweeping on time
    changes = await monitor.sweep()
    assert [ch.after for ch in changes] == ["unhealthy"]
    assert (await store.containers.get(cid)).health == "unhealthy"
