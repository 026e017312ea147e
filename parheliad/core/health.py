"""The health sweep: missed heartbeats walk a container through its health states.

Every ``heartbeat.interval_seconds`` (an APScheduler job of the runtime) each live
container's silence is measured from its last heartbeat (or from its start plus
``FIRST_HEARTBEAT_GRACE_SECONDS`` before the first one):
``missed = floor(silence / interval - 0.5)`` — a heartbeat counts as missed once it is
half an interval late, so ordinary jitter never degrades a healthy worker. The count
goes to ``consecutive_failures`` and :func:`~parheliad.core.states.health_after` gives
the new health: degraded (>=1), unhealthy (>=3), dead (>=5); each change is a
``health_changed`` event. The listener heals a container to healthy (count reset to 0)
when a heartbeat arrives.

A dead container is recorded as lost first (so nothing else acts on it), then its
worker is killed through the backend (the whole process group, SIGKILL after a
SIGTERM it cannot act on when stopped) and recovery resumes its task from the latest
checkpoint, but only once the backend says the dead one has ended: a terminate that
failed (Modal refusing it, or unreachable) leaves the task recovering, never with two
containers (``parheliad.core.recovery``). Heartbeats beyond
``heartbeat.retention_per_container`` are pruned.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import structlog

from parheliad.backends.base import Backend
from parheliad.config import Config
from parheliad.core.listener import Listener
from parheliad.core.settle import Settler, lost_outcome
from parheliad.core.states import CONTAINER_LIVE, Health, health_after
from parheliad.store.clock import US_PER_SECOND, now_us
from parheliad.store.store import Store
from parheliad.store.tx import Tx

log = structlog.get_logger(__name__)

_LATE_TOLERANCE = 0.5
"""A heartbeat is missed once it is this many intervals late."""

FIRST_HEARTBEAT_GRACE_SECONDS = 30.0
"""Time a new worker gets to send its first heartbeat (interpreter start, workspace
restore, a sandbox being scheduled) before its silence counts."""


@dataclass(frozen=True)
class HealthChange:
    container_id: str
    before: str
    after: str
    missed: int


def missed_heartbeats(silence_us: int, interval_seconds: float) -> int:
    """Heartbeats missed after ``silence_us`` without one (see the module docstring)."""
    if silence_us <= 0:
        return 0
    return max(0, math.floor(silence_us / (interval_seconds * US_PER_SECOND) - _LATE_TOLERANCE))


class HealthMonitor:
    def __init__(self, store: Store, backends: Mapping[str, Backend],
                 config: Callable[[], Config], listener: Listener,
                 settler: Settler) -> None:
        self._store = store
        self._backends = backends
        self._config = config
        self._listener = listener
        self._settler = settler
        self.sweeps = 0
        self._last_sweep_us: int | None = None
        self._resumed_at_us = 0
        """Silence is counted from here at the earliest: the daemon's own pauses (a laptop
        asleep, a stopped process) are not the workers' silence."""

    async def sweep(self) -> list[HealthChange]:
        """One pass over the live containers; the health changes it made."""
        interval = self._config().heartbeat.interval_seconds
        now = now_us()
        if self._last_sweep_us is not None and \
                now - self._last_sweep_us > int(max(3 * interval, interval + 5) * US_PER_SECOND):
            # The daemon itself did not run for a while (suspend, SIGSTOP, a blocked loop):
            # its workers were most likely paused too. Count silence from now on.
            log.warning("health.daemon_paused",
                        seconds=round((now - self._last_sweep_us) / US_PER_SECOND, 1))
            self._resumed_at_us = now
        self._last_sweep_us = now
        live = await self._store.containers.live_cursors()
        ids = [cid for cid, _, _ in live]
        if not ids:
            return []
        listener = self._listener
        unreachable = dict(listener.unreachable) if listener is not None else {}
        since = dict(listener.reachable_since) if listener is not None else {}
        heard = self._heard(live)
        # A container whose launch is in flight (a GPU waiting for capacity, an
        # environment's setup sandbox) has no worker to hear yet: the launch decides.
        launching = set(listener.launching) if listener is not None else set()
        ids = [cid for cid in ids if cid not in launching]
        changes = await self._store.write(
            lambda tx: self._walk(tx, ids, interval, now, unreachable, since, heard))
        self.sweeps += 1
        for change in changes:
            if change.after == Health.DEAD:
                await self._bury(change)
        return changes

    def _heard(self, live: list[tuple[str, str, int]]) -> dict[str, int]:
        """Heartbeats the backends' live channels carried that the listener has not
        applied yet (it is copying a checkpoint they announced): the worker is alive."""
        heard: dict[str, int] = {}
        for cid, backend_name, _ in live:
            backend = self._backends.get(backend_name)
            at = backend.last_heard(cid) if backend is not None else None
            if at is not None:
                heard[cid] = at
        return heard

    def _walk(self, tx: Tx, ids: list[str], interval: float, now: int,
              unreachable: Mapping[str, int] | None = None,
              reachable_since: Mapping[str, int] | None = None,
              heard: Mapping[str, int] | None = None) -> list[HealthChange]:
        changes: list[HealthChange] = []
        unreachable = unreachable or {}
        heard = heard or {}
        for cid in ids:
            c = tx.containers.get(cid)
            if c is None or c.state not in CONTAINER_LIVE or c.health == Health.DEAD:
                continue
            if c.backend in unreachable:
                # Modal unreachable is not the worker's silence: nothing is counted,
                # killed or relaunched; the container shows unreachable until its
                # backend answers again (its next heartbeat makes it healthy).
                if c.health != Health.UNREACHABLE:
                    tx.containers.update(c.id, health=Health.UNREACHABLE.value,
                                         consecutive_failures=0)
                    tx.events.append(
                        "health_changed", f"{c.health} -> unreachable (backend {c.backend} "
                        "cannot be reached; the worker is not counted as silent)",
                        task_id=c.task_id, session_id=c.session_id, container_id=c.id,
                        data={"from": c.health, "to": Health.UNREACHABLE.value})
                    changes.append(HealthChange(c.id, c.health, Health.UNREACHABLE.value, 0))
                continue
            resumed = max(self._resumed_at_us, (reachable_since or {}).get(c.backend, 0))
            last = max(c.last_heartbeat_at or 0, heard.get(cid, 0)) or None
            if last is not None:
                silence = now - max(last, resumed)
            else:
                silence = now - max(c.started_at or c.created_at, resumed) - int(
                    FIRST_HEARTBEAT_GRACE_SECONDS * US_PER_SECOND)
            missed = missed_heartbeats(silence, interval)
            if missed <= c.consecutive_failures:
                continue
            health = health_after(c.health, heartbeat=False, missed=missed)
            fields: dict[str, object] = {"consecutive_failures": missed}
            silent_s = round((now - (last or c.started_at or c.created_at))
                             / US_PER_SECOND, 1)
            tx.events.append("heartbeat_missed", f"{missed} heartbeat(s) missed ({silent_s}s "
                             "silent)", task_id=c.task_id, session_id=c.session_id,
                             container_id=c.id, data={"missed": missed, "silent_s": silent_s})
            if health != c.health:
                fields["health"] = health.value
                tx.events.append(
                    "health_changed", f"{c.health} -> {health.value} ({missed} heartbeats "
                    f"missed, {silent_s}s silent)",
                    level="error" if health == Health.DEAD else "warning",
                    task_id=c.task_id, session_id=c.session_id, container_id=c.id,
                    data={"from": c.health, "to": health.value, "missed": missed,
                          "silent_s": silent_s})
                changes.append(HealthChange(c.id, c.health, health.value, missed))
            tx.containers.update(c.id, **fields)
        return changes

    async def _bury(self, change: HealthChange) -> None:
        """A dead container: drain what it said, record it lost, kill it, recover its task."""
        c = await self._store.containers.find(change.container_id)
        if c is None or c.state not in CONTAINER_LIVE:
            return
        await self._listener.drain(c)
        interval = self._config().heartbeat.interval_seconds
        reason = (f"no heartbeat for {change.missed} intervals of {interval:g}s (health dead); "
                  "the worker was killed")
        settled = await self._settler.record(c.id, lost_outcome(reason))
        backend = self._backends.get(c.backend)
        if backend is not None and c.backend_id:
            try:
                await backend.terminate(c.backend_id, grace_seconds=0.0)
            except Exception:
                log.exception("could not kill a dead worker", container_id=c.id)
        log.warning("dead worker killed", container_id=c.id, backend_id=c.backend_id)
        await self._settler.follow_up(settled.lost)

    async def prune(self) -> int:
        """Keep the newest ``retention_per_container`` heartbeats of every container."""
        keep = self._config().heartbeat.retention_per_container

        deleted = await self._store.write(lambda tx: tx.heartbeats.keep_newest(keep))
        if deleted:
            log.debug("heartbeats pruned", deleted=deleted)
        return deleted


async def run_job(coro: Callable[[], Awaitable[object]], name: str) -> None:
    """A scheduler job body: never lets an exception kill the job."""
    try:
        await coro()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("job failed", job=name)
