"""A subscription of the MCP bridge starts where the log is when it is opened, and asks
the daemon for what committed after that point (the daemon's side of the promise:
tests/integration/daemon/test_api.py, a watch after an id with a backlog)."""
from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

from parhelia.v1 import common_pb2
from parhelia_cli.mcp_server import live


class _Stream:
    def __init__(self) -> None:
        self.closed = threading.Event()

    def __iter__(self) -> Any:
        self.closed.wait(5)
        return iter(())

    def close(self) -> None:
        self.closed.set()


class _Events:
    def __init__(self, newest: int | None) -> None:
        self.newest = newest
        self.watched: list[tuple[common_pb2.EventFilter, int]] = []

    def list(self, flt: common_pb2.EventFilter | None = None, *,
             limit: int | None = None) -> Any:
        assert limit == 1
        return SimpleNamespace(events=[] if self.newest is None
                               else [SimpleNamespace(id=self.newest)])

    def watch(self, flt: common_pb2.EventFilter, *, backlog: int = 0) -> _Stream:
        self.watched.append((flt, backlog))
        return _Stream()


def test_a_subscription_watches_after_the_newest_event_with_a_backlog() -> None:
    events = _Events(newest=41)
    subs = live.Subscriptions(SimpleNamespace(events=events), capacity=8)  # type: ignore[arg-type]
    flt = common_pb2.EventFilter(task_id="t-1")
    sub = subs.open(flt, uri="parhelia://tasks/t-1", notify=lambda s: None)
    try:
        [(watched, backlog)] = events.watched
        assert (watched.task_id, watched.after_id, backlog) == ("t-1", 41, 8)
        assert sub.filter.after_id == 0  # the subscription's own filter is unchanged
        assert sub.after_id == 41
    finally:
        subs.close_all()


def test_on_an_empty_log_it_watches_from_the_start() -> None:
    events = _Events(newest=None)
    subs = live.Subscriptions(SimpleNamespace(events=events), capacity=8)  # type: ignore[arg-type]
    subs.open(common_pb2.EventFilter())
    try:
        assert [(f.after_id, b) for f, b in events.watched] == [(0, 8)]
    finally:
        subs.close_all()
