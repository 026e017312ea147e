"""Progress of long calls, for the clients that follow them (``WatchOperation``).

A servicer wraps its work in :meth:`ProgressHub.track` with the operation id the client
sent (``parhelia.progress.METADATA_KEY``); the work reports through the returned
:class:`Tracker` (``tracker.phase(...)``, then ``tracker.report`` as a
``parhelia.progress.Report`` callable from any thread). Watchers get the newest state
whenever it changes and a final ``finished`` state when the call ends. Nothing is
kept once both sides are gone; at most ``MAX_OPERATIONS`` operations are known at once
(the oldest finished ones are forgotten first).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from parhelia import progress as contract

MAX_OPERATIONS = 256
MIN_INTERVAL_S = 0.05
"""Reports closer together than this are merged (a file loop may report thousands)."""
FINISHED_KEPT_S = 30.0
"""A watcher that arrives this long after its call finished still learns it finished."""


@dataclass(frozen=True)
class State:
    phase: str = ""
    done: int = 0
    total: int = 0
    unit: str = contract.BYTES
    finished: bool = False


@dataclass
class _Operation:
    state: State = field(default_factory=State)
    version: int = 0
    watchers: set[asyncio.Event] = field(default_factory=set)
    tracked: bool = False
    finished_at: float | None = None

    def set(self, state: State) -> None:
        self.state = state
        self.version += 1
        for wake in self.watchers:
            wake.set()


class Tracker:
    """What the work uses to report; thread-safe (reports hop onto the daemon's loop)."""

    def __init__(self, op: _Operation | None, loop: asyncio.AbstractEventLoop) -> None:
        self._op = op
        self._loop = loop
        self._lock = threading.Lock()
        self._phase = ""
        self._unit = contract.BYTES
        self._last = 0.0

    def phase(self, phase: str, unit: str = contract.BYTES, total: int = 0) -> None:
        """A new step (``"restoring files"``), its unit and total when known."""
        with self._lock:
            self._phase, self._unit, self._last = phase, unit, 0.0
        self._post(State(phase, 0, total, unit))

    def report(self, done: int, total: int) -> None:
        """``parhelia.progress.Report``: merged to one per ``MIN_INTERVAL_S`` except the last."""
        now = time.monotonic()
        with self._lock:
            if done < total and now - self._last < MIN_INTERVAL_S:
                return
            self._last = now
            state = State(self._phase, done, total, self._unit)
        self._post(state)

    def _post(self, state: State) -> None:
        op = self._op
        if op is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            op.set(state)
        else:
            self._loop.call_soon_threadsafe(op.set, state)


class ProgressHub:
    def __init__(self) -> None:
        self._ops: dict[str, _Operation] = {}

    def _get(self, op_id: str) -> _Operation:
        op = self._ops.get(op_id)
        if op is None:
            if len(self._ops) >= MAX_OPERATIONS:
                self._evict()
            op = self._ops[op_id] = _Operation()
        return op

    def _evict(self) -> None:
        finished = sorted((o.finished_at, k) for k, o in self._ops.items()
                          if o.finished_at is not None)
        victims = [k for _, k in finished] or [k for k, o in self._ops.items()
                                               if not o.tracked and not o.watchers]
        for key in victims[: max(1, len(self._ops) - MAX_OPERATIONS + 1)]:
            self._ops.pop(key, None)

    @contextmanager
    def track(self, op_id: str) -> Iterator[Tracker]:
        """A tracker for the call tagged ``op_id`` ("" or an invalid id: reports go
        nowhere); watchers see ``finished`` when the block ends, however it ends."""
        loop = asyncio.get_running_loop()
        if not contract.valid_operation_id(op_id):
            yield Tracker(None, loop)
            return
        op = self._get(op_id)
        op.tracked = True
        try:
            yield Tracker(op, loop)
        finally:
            op.finished_at = time.monotonic()
            op.set(State(op.state.phase, op.state.done, op.state.total, op.state.unit,
                         finished=True))
            loop.call_later(FINISHED_KEPT_S, self._forget, op_id, op)

    def _forget(self, op_id: str, op: _Operation) -> None:
        if self._ops.get(op_id) is op and not op.watchers:
            del self._ops[op_id]

    async def watch(self, op_id: str) -> AsyncIterator[State]:
        """Each new state of ``op_id`` until it is finished (waits for a call not
        started yet; the client ends the watch if its call never comes)."""
        op = self._get(op_id)
        wake = asyncio.Event()
        op.watchers.add(wake)
        seen = 0
        try:
            while True:
                if op.version != seen:
                    seen = op.version
                    yield op.state
                    if op.state.finished:
                        return
                wake.clear()
                if op.version == seen:
                    await wake.wait()
        finally:
            op.watchers.discard(wake)
            if not op.tracked and not op.watchers:
                self._ops.pop(op_id, None)
