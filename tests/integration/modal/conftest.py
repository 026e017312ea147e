from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest


@pytest.fixture(autouse=True)
async def _close_tails() -> AsyncIterator[None]:
    """Backends follow channels in background tasks: stop them within the test's loop."""
    yield
    tails = [t for t in asyncio.all_tasks() if t.get_name().startswith("modal-tail-")]
    for task in tails:
        task.cancel()
    await asyncio.gather(*tails, return_exceptions=True)
