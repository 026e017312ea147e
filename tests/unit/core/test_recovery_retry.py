"""Recovery never gives up silently: a dispatch that raises is tried again."""

from __future__ import annotations

import asyncio

from parheliad.config import Config
from parheliad.core import recovery


class FlakyDispatcher:
    def __init__(self) -> None:
        self.calls = 0

    async def dispatch_task(self, task_id: str) -> bool:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("store hiccup")
        return True


async def test_a_failed_recovery_dispatch_is_retried(monkeypatch) -> None:
    monkeypatch.setattr(recovery, "_ERROR_RETRY_SECONDS", 0.05)
    dispatcher = FlakyDispatcher()
    r = recovery.Recovery(store=None, dispatcher=dispatcher,  # type: ignore[arg-type]
                          config=lambda: Config())
    r._schedule("t-1", 0)
    for _ in range(100):
        if dispatcher.calls >= 2:
            break
        await asyncio.sleep(0.02)
    assert dispatcher.calls == 2
    await r.stop()
